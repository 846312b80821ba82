"""Sweeps against a real SLURM cluster (slurm/testcluster): GRES requests, GPU accounting,
requeue on timeout, cancellation and resubmission, all with the tiny model on CPU.

The cluster comes from ``$INFPOP_TEST_SLURM_CONF`` (CI starts it in .ci/run); without it, the
session starts its own when SLURM is installed. Tests skip only where SLURM is not installed.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest import wait_finished
from infpop.cli import main
from infpop.executors.slurm import ACTIVE_STATES, job_states
from infpop.manifest import load_manifest
from infpop.plan import GroupSpec, plan
from infpop.profile import load_profile
from infpop.results import ResultStore, TrialResult
from infpop.status import study_status
from infpop.sweep import submit_arrays

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture
def cluster_profile(tmp_path: Path, slurm_conf: str):
    """The testcluster profile with per-test overrides of one partition, written to a file."""

    def _write(partition: str = "a100", **overrides) -> Path:
        data = yaml.safe_load((REPO / "slurm" / "profiles" / "testcluster.yaml").read_text())
        data["partitions"][partition].update(overrides)
        path = tmp_path / "profile.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return _write


def _groups(manifest: Path, profile: Path, partition: str = "a100") -> list[GroupSpec]:
    return plan(load_manifest(manifest), partition, load_profile(profile).partition(partition))


def alloc_tres(job_id: str) -> str:
    """What SLURM accounted to a job (``sacct AllocTRES``): proof of the GPUs it held."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,AllocTRES"], capture_output=True, text=True, check=True
    ).stdout
    rows = dict(line.split("|", 1) for line in out.splitlines() if line)
    return rows[job_id]


def results_of(groups: Sequence[GroupSpec]) -> dict[str, TrialResult]:
    store = ResultStore(groups[0].output_root)
    return {t.trial_id: r for g in groups for t in g.trials if (r := store.read(t)) is not None}


def timed_trials(humaneval_path: Path, n: int, seconds: float) -> dict:
    """Manifest fields for ``n`` trials per group that each stop after ~``seconds`` of inference
    (``trial_timeout_s``), so a group's duration does not depend on how busy the CPU is."""
    return {
        "batch_sizes": [1],
        "repetitions": n,
        "max_new_tokens": [32],
        "trial_timeout_s": seconds,
        "workload": {"path": str(humaneval_path)},
        "warmup": {"trial_batches": 0},  # untimed work would escape the timeout that sizes the trials
    }


def _ts(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def test_grid_on_a100_requests_exact_gpus_and_aggregates(
    write_manifest, cluster_profile, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(partitions=["a100"], gpu_counts=[1, 2], batch_sizes=[1, 2, 4])
    profile = cluster_profile()
    args = ["--partition", "a100", "--profile", str(profile)]
    assert main(["sweep", str(manifest), *args]) == 0
    assert "submitted 6 trials in 2 jobs" in capsys.readouterr().out
    groups = _groups(manifest, profile)
    log = [json.loads(line) for line in (tmp_path / "runs/t/.infpop/submissions.jsonl").read_text().splitlines()]
    job_of = {e["group"]: e["job_id"] for e in log}
    states = wait_finished(list(job_of.values()), 180)
    assert set(states.values()) == {"COMPLETED"}, states
    for g in groups:
        tres = alloc_tres(job_of[g.group_id])
        assert f"gres/gpu:a100={g.n_gpus}" in tres and f"gres/gpu={g.n_gpus}" in tres, tres
    results = results_of(groups)
    assert len(results) == 6 and {r.status for r in results.values()} == {"ok"}
    for r in results.values():
        assert r.provenance.slurm["job_partition"] == "a100"
        assert r.provenance.slurm["gpus_on_node"] == str(r.trial.n_gpus)
        assert len(r.provenance.slurm["cuda_visible_devices"].split(",")) == r.trial.n_gpus
    pytest.importorskip("pandas")
    table = tmp_path / "table.csv"
    assert main(["aggregate", str(tmp_path / "runs" / "t"), "-o", str(table)]) == 0
    import pandas as pd

    df = pd.read_csv(table)
    assert len(df) == 6 and set(df["n_gpus"]) == {1, 2} and set(df["batch_size"]) == {1, 2, 4}
    assert main(["status", str(tmp_path / "runs" / "t")]) == 0
    out = capsys.readouterr().out
    assert "6 trials: 6 done (6 ok" in out and "0 pending" in out


def test_gpu_accounting_runs_four_two_gpu_groups_and_queues_the_fifth(
    write_manifest, cluster_profile, tiny_model: Path, humaneval_path: Path
) -> None:
    models = [{"name": f"m{i}", "source": str(tiny_model)} for i in range(5)]
    manifest = write_manifest(gpu_counts=[2], models=models, **timed_trials(humaneval_path, n=3, seconds=5))
    profile = cluster_profile()
    groups = _groups(manifest, profile)
    report = submit_arrays(groups, "a100", load_profile(profile).partition("a100"))
    assert len(report.job_ids) == 5 and len({j.split("_")[0] for j in report.job_ids}) == 1, "one array"
    states = wait_finished(report.job_ids, 300)
    assert set(states.values()) == {"COMPLETED"}, states
    results = results_of(groups)
    spans = []
    for g in groups:
        rs = [results[t.trial_id] for t in g.trials]
        spans.append((min(_ts(r.provenance.started_at) for r in rs), max(_ts(r.provenance.finished_at) for r in rs)))
        assert all(r.provenance.slurm["gpus_on_node"] == "2" for r in rs)
    spans.sort()
    # At the moment the fourth group to start began, the first three were still running ...
    concurrent = [s for s in spans[:4] if s[0] <= spans[3][0] < s[1]]
    assert len(concurrent) == 4, spans
    # ... and the fifth only started once one of them had finished: 8 GPUs hold four 2-GPU jobs.
    assert spans[4][0] >= min(end for _, end in spans[:4]), spans
    for job_id in report.job_ids:
        assert "gres/gpu:a100=2" in alloc_tres(job_id)


def test_time_limit_requeues_the_group_which_finishes_without_rerunning_trials(
    write_manifest, cluster_profile, humaneval_path: Path
) -> None:
    # Six ~10 s trials cannot fit in a 1-minute job: USR2 comes after ~30-60 s, submitit
    # checkpoints and requeues, and the rerun starts at the first trial without a result.
    manifest = write_manifest(**timed_trials(humaneval_path, n=6, seconds=10))
    profile = cluster_profile(time_min=1)
    groups = _groups(manifest, profile)
    report = submit_arrays(groups, "a100", load_profile(profile).partition("a100"))
    [job_id] = report.job_ids
    first_seen: dict[str, str] = {}
    deadline = time.monotonic() + 420
    ended_since: float | None = None  # a requeue passes through an ended state: believe it after 15 s
    while ended_since is None or time.monotonic() - ended_since < 15:
        for tid, r in results_of(groups).items():
            first_seen.setdefault(tid, r.model_dump_json())
        assert time.monotonic() < deadline, "requeued group did not finish in 7 minutes"
        if job_states([job_id])[job_id] in ACTIVE_STATES | {"UNKNOWN"}:
            ended_since = None
        elif ended_since is None:
            ended_since = time.monotonic()
        time.sleep(1)
    log = Path(json.loads((Path(groups[0].output_root) / "t/.infpop/submissions.jsonl").read_text())["log"])
    assert job_states([job_id])[job_id] == "COMPLETED", log.read_text()[-3000:]
    results = results_of(groups)
    assert len(results) == 6
    restarts = {tid: int(r.provenance.slurm.get("restart_count", "0")) for tid, r in results.items()}
    assert 0 in restarts.values() and max(restarts.values()) >= 1, restarts
    # A trial finished before the requeue is the same record afterwards: it never ran again.
    for tid, record in first_seen.items():
        assert results[tid].model_dump_json() == record, f"{tid} was rewritten"
    runs = subprocess.run(
        ["sacct", "-n", "-X", "-D", "-P", "-j", job_id, "-o", "JobID,State"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert f"{job_id}|REQUEUED" in runs and runs[-1] == f"{job_id}|COMPLETED", runs


def test_scancel_keeps_results_status_shows_cancelled_tasks_and_rerun_completes(
    write_manifest,
    cluster_profile,
    tiny_model: Path,
    humaneval_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = [{"name": f"m{i}", "source": str(tiny_model)} for i in range(3)]
    manifest = write_manifest(models=models, **timed_trials(humaneval_path, n=2, seconds=3))
    profile = cluster_profile(array_parallelism=1)
    groups = _groups(manifest, profile)
    report = submit_arrays(groups, "a100", load_profile(profile).partition("a100"))
    first, *rest = report.job_ids
    deadline = time.monotonic() + 180
    while job_states([first])[first] != "COMPLETED":
        assert time.monotonic() < deadline, job_states(report.job_ids)
        time.sleep(0.5)
    subprocess.run(["scancel", first.split("_")[0]], check=True)
    kept = {tid: r.model_dump_json() for tid, r in results_of(groups[:1]).items()}
    assert len(kept) == 2
    states = wait_finished(report.job_ids, 60)
    assert [states[j] for j in rest] == ["CANCELLED", "CANCELLED"], states

    study = tmp_path / "runs" / "t"
    st = study_status(study)
    assert st.counts["done"] == len(results_of(groups)) and st.counts["pending"] == 6 - st.counts["done"] > 0
    assert main(["status", str(study)]) == 0
    out = capsys.readouterr().out
    assert f"{first} COMPLETED" in " ".join(out.split())
    for job_id in rest:
        assert f"{job_id} CANCELLED" in out, out
    assert "failed tasks (cause, from the log):" in out

    # A cancelled task may still have finished its trials before it stopped: what is missing on
    # disk, and only that, is submitted again.
    missing = sorted(g.group_id for g in groups if len(results_of([g])) < len(g.trials))
    assert missing and groups[0].group_id not in missing
    assert main(["sweep", str(manifest), "--partition", "a100", "--profile", str(profile)]) == 0
    log = [json.loads(line) for line in (study / ".infpop" / "submissions.jsonl").read_text().splitlines()]
    resubmitted = log[3:]
    assert sorted(e["group"] for e in resubmitted) == missing
    wait_finished([e["job_id"] for e in resubmitted], 180)
    assert len(results_of(groups)) == 6
    assert {tid: r.model_dump_json() for tid, r in results_of(groups[:1]).items()} == kept


def test_v100_requests_v100_gpus_and_submits_what_dry_run_printed(
    write_manifest, cluster_profile, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(partitions=["v100"], gpu_counts=[2], batch_sizes=[2])
    profile = cluster_profile("v100")
    args = [str(manifest), "--partition", "v100", "--profile", str(profile)]
    assert main(["sweep", *args, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "#SBATCH --gres=gpu:v100:2" in printed and "#SBATCH --partition=v100" in printed
    assert main(["sweep", *args]) == 0
    [entry] = [json.loads(line) for line in (Path(manifest).parent / "runs/t/.infpop/submissions.jsonl").open()]
    job_id = entry["job_id"]
    assert wait_finished([job_id], 120)[job_id] == "COMPLETED"
    assert "gres/gpu:v100=2" in alloc_tres(job_id)
    [result] = results_of(_groups(manifest, profile, "v100")).values()
    assert result.status == "ok" and result.trial.hardware == "v100"
    submitted = (Path(entry["log"]).parent / f"{job_id}_submission.sh").read_text()
    script = printed[printed.index("#!/bin/bash") :]
    assert script.rstrip() == submitted.rstrip(), "dry run and submission differ"
    # More GPUs than a v100 node has: refused before anything is submitted.
    bigger = write_manifest(name="big.yaml", partitions=["v100"], gpu_counts=[16], batch_sizes=[2])
    assert main(["sweep", str(bigger), "--partition", "v100", "--profile", str(profile)]) == 2
    assert "gpu_counts: 16 GPUs requested, but a node of partition 'v100' has 8" in capsys.readouterr().err
