"""Live search with the tiny model: trials run through the executors, and a rerun resumes from the
results on disk without running any finished trial again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from infpop.cli import main
from infpop.results import iter_results

pytestmark = pytest.mark.slow


def _results(root: Path) -> dict[str, float]:
    """trial id -> file mtime of every result under ``root``."""
    return {r.trial.trial_id: os.path.getmtime(root / r.trial.relpath) for r in iter_results(root)}


def test_local_search_runs_proposed_trials_and_resumes_without_rerunning(
    write_manifest, tmp_path: Path, capsys
) -> None:
    manifest = write_manifest(gpu_counts=[1, 2], batch_sizes=[1, 2, 4, 8])
    root = tmp_path / "runs"
    assert main(["hpo", "search", str(manifest), "--partition", "local", "--budget", "1"]) == 0
    first = _results(root)
    assert len(first) == 1
    out = capsys.readouterr().out
    assert "best so far" in out and "best g" in out

    assert main(["hpo", "search", str(manifest), "--partition", "local", "--budget", "2"]) == 0
    second = _results(root)
    assert len(second) == 2
    assert {k: second[k] for k in first} == first  # finished trials were not run again

    state = json.loads(next((root / "t" / ".infpop" / "hpo").glob("*.json")).read_text())
    assert len(state["trials"]) == 2 and state["best"]["throughput"] > 0

    # A prior table (another model's landscape of the same engine) switches the search to ours+prior.
    prior = tmp_path / "prior.csv"
    rows = [
        {"hardware": "v100", "engine": "hf", "model": "other", "n_gpus": g, "batch_size": b, "max_new_tokens": 3}
        | {"status": "ok", "throughput": 10.0 * g + b}
        for g in (1, 2)
        for b in (1, 2, 4, 8)
    ]
    pd.DataFrame(rows).to_csv(prior, index=False)
    argv = ["hpo", "search", str(manifest), "--partition", "local", "--budget", "3", "--prior", str(prior)]
    assert main(argv) == 0
    state = json.loads(next((root / "t" / ".infpop" / "hpo").glob("*.json")).read_text())
    assert state["method"] == "ours+prior" and state["prior"]["references"] == 1
    assert len(state["trials"]) == 3 and {k: _results(root)[k] for k in second} == second


@pytest.mark.slurm
def test_search_on_the_slurm_test_cluster(write_manifest, tmp_path: Path, slurm_conf: str) -> None:
    """On the real test cluster (the session's ``slurm_conf`` fixture): trials are SLURM jobs."""
    repo = Path(__file__).resolve().parents[1]
    profile = yaml.safe_load((repo / "slurm" / "profiles" / "testcluster.yaml").read_text())
    profile_path = tmp_path / "profile.yaml"
    profile_path.write_text(yaml.safe_dump(profile))
    manifest = write_manifest(gpu_counts=[1, 2], batch_sizes=[1, 4], partitions=["a100"])
    argv = ["hpo", "search", str(manifest), "--partition", "a100", "--profile", str(profile_path), "--budget", "2"]
    assert main(argv) == 0
    first = _results(tmp_path / "runs")
    assert len(first) == 2 and all("/a100/" in k for k in first)
    assert main(argv) == 0
    assert _results(tmp_path / "runs") == first
