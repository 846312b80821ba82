"""The whole path on the embedded default: local submitit jobs, resume after kill -9, table, figure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from infpop.results import TrialResult, iter_results

INFPOP = [sys.executable, "-m", "infpop"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*INFPOP, *args], capture_output=True, text=True, timeout=600)


def _results(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*.json") if ".infpop" not in p.parts}


def test_sweep_aggregate_figure_and_a_rerun_runs_nothing(write_manifest, tmp_path: Path) -> None:
    manifest = write_manifest(gpu_counts=[1, 2], batch_sizes=[1, 4, 8])
    first = _run("sweep", str(manifest))
    assert first.returncode == 0, first.stderr
    assert "ran 2 jobs; trials now 6 ok" in first.stdout
    runs = tmp_path / "runs"
    results = [r for r in iter_results(runs) if isinstance(r, TrialResult)]
    assert len(results) == 6 and {r.status for r in results} == {"ok"}
    assert {r.trial.n_gpus for r in results} == {1, 2}

    again = _run("sweep", str(manifest))
    assert again.returncode == 0 and "nothing to run" in again.stdout

    assert _run("aggregate", str(runs / "t"), "-o", str(tmp_path / "table.parquet")).returncode == 0
    table = pd.read_parquet(tmp_path / "table.parquet")
    assert len(table) == 6 and (table["generated_tokens"] == 12 * 3).all()
    # Energy where this machine lets RAPL/NVML be read, else not measured (missing, never zero);
    # a roofline fraction for every ok trial (the tiny model's config.json, the nominal CPU socket).
    measured = table["energy_parts"].notna()
    assert (table["energy_j_per_token"].notna() == measured).all() and (table["energy_j_per_token"] > 0)[measured].all()
    assert (table["roofline_fraction"] > 0).all() and table["bound_by"].isin(["compute", "bandwidth"]).all()
    figs = _run("figures", str(tmp_path / "table.parquet"), "-o", str(tmp_path / "figs"))
    assert figs.returncode == 0, figs.stderr
    pngs = list((tmp_path / "figs").rglob("*.png"))
    assert pngs and all(p.stat().st_size > 10_000 for p in pngs)


def test_kill_9_mid_group_then_rerun_completes_only_the_missing(write_manifest, humaneval_path, tmp_path: Path) -> None:
    manifest = write_manifest(batch_sizes=[1, 2, 3, 4, 5, 6, 7, 8], workload={"path": str(humaneval_path), "limit": 40})
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [*INFPOP, "sweep", str(manifest)], start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while len(_results(runs)) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its job, mid-group
    proc.wait()
    before = _results(runs)
    assert 2 <= len(before) < 8, "the kill must land mid-group"

    rerun = _run("sweep", str(manifest))
    assert rerun.returncode == 0, rerun.stderr
    assert "ran 1 jobs; trials now 8 ok" in rerun.stdout
    after = _results(runs)
    assert len(after) == 8
    assert {k: after[k] for k in before} == before, "completed results are untouched"
