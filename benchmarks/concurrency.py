"""Do eight 1-GPU trial groups share an 8-GPU node? Makespan of eight over the time of one.

Runs on the SLURM test cluster (slurm/testcluster): first one 1-GPU group alone, then eight
1-GPU groups as one array on the 8-GPU a100 node, each timed from submission until SLURM
reports every task COMPLETED. If GPU accounting lets all eight run at once, the ratio stays
near 1 (target <= 1.5); run one after another it would be 8.

Trials are time-boxed (``trial_timeout_s``) so a group's inference lasts the same on a busy
CPU; process start-up (Python, torch, model load) still competes for this machine's cores,
which is what moves the ratio above 1 on a small machine.

    python benchmarks/concurrency.py              # uses $SLURM_CONF, else starts its own cluster
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import yaml
from infpop.executors.slurm import ACTIVE_STATES, job_states
from infpop.manifest import load_manifest
from infpop.plan import plan
from infpop.profile import load_profile
from infpop.results import ResultStore
from infpop.sweep import submit_arrays

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "slurm" / "profiles" / "testcluster.yaml"


@contextmanager
def cluster():
    """$SLURM_CONF's cluster if set, else a fresh test cluster stopped on exit."""
    if os.environ.get("SLURM_CONF"):
        yield
        return
    work = tempfile.mkdtemp(prefix="infpop-bench-slurm-", dir="/tmp")
    try:
        conf = subprocess.run([str(REPO / "slurm/testcluster/up.sh"), work], capture_output=True, text=True, check=True)
        os.environ["SLURM_CONF"] = conf.stdout.split()[-1]
        yield
    finally:
        subprocess.run([str(REPO / "slurm/testcluster/down.sh"), work], check=False)
        shutil.rmtree(work, ignore_errors=True)


def write_manifest(folder: Path, study: str, n_models: int, model: Path, data: Path, seconds: float) -> Path:
    manifest = {
        "study": study,
        "output_root": str(folder / "runs"),
        "models": [{"name": f"m{i}", "source": str(model)} for i in range(n_models)],
        "engines": ["hf"],
        "gpu_counts": [1],
        "batch_sizes": [1],
        "repetitions": 2,
        "max_new_tokens": [32],
        "dtype": "float32",
        "trial_timeout_s": seconds,
        "workload": {"path": str(data)},
    }
    path = folder / f"{study}.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def run(manifest: Path) -> tuple[float, int]:
    """Submit, wait until SLURM reports every task finished; wall seconds and peak concurrency."""
    part = load_profile(PROFILE).partition("a100")
    groups = plan(load_manifest(manifest), "a100", part)
    t0 = time.monotonic()
    report = submit_arrays(groups, "a100", part)
    while any(s in ACTIVE_STATES | {"UNKNOWN"} for s in job_states(report.job_ids).values()):
        time.sleep(0.5)
    wall = time.monotonic() - t0
    bad = {j: s for j, s in job_states(report.job_ids).items() if s != "COMPLETED"}
    if bad:
        sys.exit(f"jobs did not complete: {bad}")
    store = ResultStore(groups[0].output_root)
    spans = []
    for g in groups:
        rs = [store.read(t) for t in g.trials]
        spans.append((min(_ts(r.provenance.started_at) for r in rs), max(_ts(r.provenance.finished_at) for r in rs)))
    peak = max(sum(s <= start < e for s, e in spans) for start, _ in spans)
    return wall, peak


def _ts(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="inference seconds per trial (2 trials per group)")
    ap.add_argument("--data", type=Path, default=REPO / "data" / "HumanEval-SingleLineInfilling.jsonl.gz")
    args = ap.parse_args()
    if not args.data.exists():
        sys.exit(f"--data {args.data}: not found (make data)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="infpop-bench-") as tmp, cluster():
        folder = Path(tmp)
        from infpop.tinymodel import build_tiny_model

        model = build_tiny_model(folder / "tiny")
        one, _ = run(write_manifest(folder, "solo", 1, model, args.data, args.seconds))
        eight, peak = run(write_manifest(folder, "eight", 8, model, args.data, args.seconds))
    ratio = eight / one
    print(f"machine: {os.cpu_count()} CPU cores; groups: 2 trials x {args.seconds:g} s of inference, 1 GPU each")
    print(f"one group alone:          {one:6.1f} s (submission to COMPLETED)")
    print(f"eight groups, one array:  {eight:6.1f} s makespan; at most {peak} groups ran at once")
    print(f"makespan / one group:     {ratio:6.2f}  (target <= 1.5; serial would be ~8)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
