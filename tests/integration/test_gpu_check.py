"""benchmarks/gpu_check.sh --cpu: the GPU check's whole path on the CPU with the tiny model
(builds it, sweeps three batch sizes through the trial runner with telemetry, prints measured
against predicted). About 25 s on an idle two-core machine, most of it the tokenizer's training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infpop.results import TrialResult, iter_results

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_cpu_mode_passes_and_prints_measured_against_predicted(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run(
        ["bash", str(REPO / "benchmarks/gpu_check.sh"), "--cpu", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    table = (tmp_path / "gpu_check.txt").read_text().splitlines()
    assert table[0] == "infpop GPU check on cpu (no GPU)" and "fraction" in table[1] and "J/token" in table[1]
    rows = [row.split()[:3] for row in table[2:5]]
    assert rows == [["tiny", "1", "ok"], ["tiny", "4", "ok"], ["tiny", "16", "ok"]]
    assert table[-1].startswith("ok: 3 trials")
    results = [r for r in iter_results(tmp_path / "runs") if isinstance(r, TrialResult)]
    assert len(results) == 3
    for r in results:  # the fraction printed is measured over this bound
        assert r.bound_tokens_s and r.throughput / r.bound_tokens_s < 1 and r.telemetry is not None
