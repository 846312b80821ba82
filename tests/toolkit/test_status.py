"""`infpop status`: trials by outcome from result files, tasks from the submission log."""

from __future__ import annotations

import getpass
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import wait_finished
from infpop.cli import main
from infpop.joblogs import cause
from infpop.status import StudyStatus, Task, classify, format_status
from infpop.submissions import Submission, latest


def test_classify_counts_outcomes_running_and_pending() -> None:
    planned = {"a": "g1", "b": "g1", "c": "g2", "d": "g2", "e": "g3", "f": "g3"}
    results = {"a": "ok", "b": "oom", "c": "error", "e": "skipped_oom"}
    counts = classify(planned, results, {"g1": "COMPLETED", "g2": "RUNNING", "g3": "CANCELLED"})
    # c failed with an error and its group is running again (an error is retried): running.
    assert counts == Counter(done=3, ok=1, oom=1, skipped_oom=1, error=0, running=2, pending=1, timeout=0)


def test_a_rerun_supersedes_earlier_submissions() -> None:
    entries = [
        Submission(group=g, job_id=j, partition="a100", submitted_at="t")
        for g, j in [("g1", "5_0"), ("g2", "5_1"), ("g2", "9")]
    ]
    assert {g: e.job_id for g, e in latest(entries).items()} == {"g1": "5_0", "g2": "9"}


#: The stderr log of an array task whose trial failed inside its image, as submitit writes it:
#: the trial's traceback (the container's stderr), then submitit's report of the launcher's exit.
CONTAINER_LOG = """submitit INFO (2026-12-02 00:41:03,112) - Starting with JobEnvironment(job_id=12_0)
Traceback (most recent call last):
  File "/opt/infpop/venv/lib/python3.11/site-packages/infpop/jobs.py", line 41, in read_group
    return GroupSpec.model_validate_json(Path(path).read_text())
FileNotFoundError: [Errno 2] No such file or directory: '/work/runs-ch/demo/.infpop/groups/g1.json'
submitit ERROR (2026-12-02 00:41:05,020) - Submitted job triggered an exception
Traceback (most recent call last):
  File "/usr/lib/python3.11/subprocess.py", line 571, in run
    raise CalledProcessError(retcode, process.args,
subprocess.CalledProcessError: Command '['env', 'ch-run', 'trial', 'g1.json']' returned non-zero exit status 1.
"""


def test_the_cause_of_a_failure_is_the_last_exception_that_is_not_a_wrapper(tmp_path: Path) -> None:
    log = tmp_path / "12_0_0_log.err"
    log.write_text(CONTAINER_LOG)
    assert cause(str(log)) == (
        "FileNotFoundError: [Errno 2] No such file or directory: '/work/runs-ch/demo/.infpop/groups/g1.json'"
    )
    log.write_text("ch-run[81]: error: can't mkdir: /var/tmp/u.ch/mnt/work: Read-only file system (ch_misc.c:409 30)\n"
                   + CONTAINER_LOG.split("submitit ERROR")[1])  # fmt: skip
    assert cause(str(log)).startswith("ch-run[81]: error: can't mkdir: /var/tmp/u.ch/mnt/work")
    log.write_text(CONTAINER_LOG.split("submitit ERROR")[1])
    assert cause(str(log)).startswith("subprocess.CalledProcessError:"), "a wrapper when nothing else"
    assert cause(str(tmp_path / "missing.err")) is None


def test_report_lists_arrays_and_logs_of_failed_tasks(tmp_path: Path) -> None:
    log = tmp_path / "7_1_0_log.err"
    log.write_text(CONTAINER_LOG)
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
    assert (
        f"7_1 FAILED: FileNotFoundError: [Errno 2] No such file or directory: '/work/runs-ch/demo/.infpop/groups/g1.json' (in {log})"
        in text
    )
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


@pytest.mark.slurm
def test_status_of_a_study_whose_jobs_failed_prints_the_cause(
    write_manifest, tmp_path: Path, slurm_conf: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real array job that fails before its first trial: its image is not an image, so ch-run
    refuses it on the compute node. `infpop status` names ch-run's error and that every task
    failed at once, not only the log's path (one short job on the test cluster, a few seconds)."""
    if shutil.which("ch-run") is None:
        pytest.skip("Charliecloud is not installed; .ci/run installs it")
    monkeypatch.setenv("USER", os.environ.get("USER") or getpass.getuser())  # ch-run needs it
    image = tmp_path / "infpop-hf-cpu.sqfs"
    image.write_text("not a SquashFS image\n")
    profile = tmp_path / "profile.yaml"
    part = {"executor": "slurm", "hardware": "cpu", "slurm_partition": "a100", "gpu_type": "a100", "gpus_per_node": 8,
            "cpus_per_gpu": 1, "time_min": 5, "runtime": "charliecloud", "images": {"hf": str(image)}}  # fmt: skip
    profile.write_text(yaml.safe_dump({"name": "broken", "partitions": {"box": part}}))
    manifest = write_manifest(engines=["hf"], partitions=["box"])
    assert main(["sweep", str(manifest), "--profile", str(profile)]) == 0
    log = [json.loads(line) for line in (tmp_path / "runs" / "t/.infpop/submissions.jsonl").read_text().splitlines()]
    assert set(wait_finished([e["job_id"] for e in log], 300).values()) == {"FAILED"}
    capsys.readouterr()
    assert main(["status", str(tmp_path / "runs" / "t")]) == 0
    out = capsys.readouterr().out
    (job,) = [e["job_id"] for e in log]
    assert f"{job} FAILED: ch-run[" in out and f"error: unknown image type: {image}" in out, out
    assert f"every task of job {job} failed within" in out, out  # one group: a plain job, not an array
