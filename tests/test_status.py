"""`infpop status`: trials by outcome from result files, tasks from the submission log."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from infpop.cli import main
from infpop.status import StudyStatus, Task, classify, format_status, latest_entries


def test_classify_counts_outcomes_running_and_pending() -> None:
    planned = {"a": "g1", "b": "g1", "c": "g2", "d": "g2", "e": "g3", "f": "g3"}
    results = {"a": "ok", "b": "oom", "c": "error", "e": "skipped_oom"}
    counts = classify(planned, results, {"g1": "COMPLETED", "g2": "RUNNING", "g3": "CANCELLED"})
    # c failed with an error and its group is running again (an error is retried): running.
    assert counts == Counter(done=3, ok=1, oom=1, skipped_oom=1, error=0, running=2, pending=1, timeout=0)


def test_a_rerun_supersedes_earlier_submissions() -> None:
    entries = [{"group": "g1", "job_id": "5_0"}, {"group": "g2", "job_id": "5_1"}, {"group": "g2", "job_id": "9"}]
    assert {g: e["job_id"] for g, e in latest_entries(entries).items()} == {"g1": "5_0", "g2": "9"}


def test_report_lists_arrays_and_logs_of_failed_tasks(tmp_path: Path) -> None:
    log = tmp_path / "7_1_0_log.err"
    log.write_text(
        "Traceback (most recent call last):\n  File 'x.py', line 1\nOSError: [Errno 28] No space left on device\n"
    )
    tasks = [
        Task("7_0", "s/a100/hf/m/g1", "a100", "slurm", "COMPLETED", str(tmp_path / "7_0_0_log.err")),
        Task("7_1", "s/a100/hf/n/g1", "a100", "slurm", "FAILED", str(log)),
        Task("7_2", "s/a100/hf/o/g1", "a100", "slurm", "CANCELLED", str(tmp_path / "7_2_0_log.err")),
    ]
    counts = classify({"x": "s/a100/hf/m/g1", "y": "s/a100/hf/n/g1", "z": "s/a100/hf/o/g1"}, {"x": "ok"}, {})
    text = format_status(StudyStatus("s", tmp_path, counts, 3, tasks))
    assert text.splitlines()[0] == (
        "s: 3 trials: 1 done (1 ok, 0 oom, 0 timeout, 0 skipped_oom), 0 error, 0 running, 2 pending"
    )
    assert "array 7 on a100: 3 task(s): 1 CANCELLED, 1 COMPLETED, 1 FAILED" in text
    assert f"7_1 FAILED: OSError: [Errno 28] No space left on device (traceback in {log})\n" in text + "\n"
    assert "7_2 CANCELLED: " in text and "never started" in text
    assert "7_0 COMPLETED:" not in text


def test_status_of_a_local_sweep(write_manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest()
    assert main(["sweep", str(manifest)]) == 0
    capsys.readouterr()
    assert main(["status", "--output-root", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("t: 2 trials: 2 done (2 ok,") and "0 pending" in out


def test_status_names_a_folder_without_a_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path)]) == 2
    assert "no study here" in capsys.readouterr().err
