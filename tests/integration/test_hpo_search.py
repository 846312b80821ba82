"""Live search with the tiny model: trials run through the executors, and a rerun resumes from the
results on disk without running any finished trial again."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from infpop.cli import main
from infpop.results import iter_results
from infpop.status import status_report

pytestmark = pytest.mark.slow


def _results(root: Path) -> dict[str, float]:
    """trial id -> file mtime of every result under ``root``."""
    return {r.trial.trial_id: os.path.getmtime(root / r.trial.relpath) for r in iter_results(root)}


def test_local_search_stops_by_itself_loads_once_per_gpu_count_and_resumes(
    write_manifest, tmp_path: Path, capsys
) -> None:
    manifest = write_manifest(gpu_counts=[1, 2], batch_sizes=[1, 2, 4])
    root = tmp_path / "runs"
    assert main(["hpo", "search", str(manifest), "--partition", "local"]) == 0
    first = _results(root)
    state = json.loads(next((root / "t" / ".infpop" / "search").glob("*.json")).read_text())
    # It stopped by its own rule, before trying the whole grid, and names its pick and why.
    assert state["stop_reason"] and "budget" not in state["stop_reason"]
    assert 1 <= len(first) == len(state["trials"]) <= 6
    assert state["pick"]["value"] > 0 and state["pick"]["interval"] is None
    assert (state["objective"], state["unit"]) == ("throughput", "tok/s")
    assert "pick g" in capsys.readouterr().out
    # One job (one model load) per stretch of trials at one GPU count, not one per trial.
    gpus = [t["config"].split("_")[0] for t in state["trials"]]
    stretches = 1 + sum(a != b for a, b in zip(gpus, gpus[1:]))
    jobs = [p for p in (root / "t" / ".infpop" / "search" / "logs").iterdir() if p.name.isdigit()]
    assert len(jobs) == stretches
    loads = [t["load_s"] for t in state["trials"]]
    assert sum(v > 0.1 * max(loads) for v in loads) == stretches  # later trials of a job reuse the model

    # A rerun finds the search finished: nothing runs again.
    assert main(["hpo", "search", str(manifest), "--partition", "local"]) == 0
    assert _results(root) == first

    # A prior table (another model's landscape of the same engine) switches the search to ours+history.
    prior = tmp_path / "prior.csv"
    rows = [
        {"hardware": "v100", "engine": "hf", "model": "other", "n_gpus": g, "batch_size": b, "max_new_tokens": 3}
        | {"status": "ok", "throughput": 10.0 * g + b}
        for g in (1, 2)
        for b in (1, 2, 4, 8)
    ]
    pd.DataFrame(rows).to_csv(prior, index=False)
    argv = ["hpo", "search", str(manifest), "--partition", "local", "--prior", str(prior)]
    assert main(argv) == 0
    state = json.loads(next((root / "t" / ".infpop" / "search").glob("*.json")).read_text())
    assert state["method"] == "ours+history" and "prior.csv" in state["prior"]
    assert {k: _results(root)[k] for k in first} == first


def test_a_search_leaves_the_sweeps_group_files_alone(write_manifest, tmp_path: Path) -> None:
    """A search and a sweep of one study coexist: the sweep's group file keeps every trial, so
    ``infpop status`` counts the whole plan and a requeued sweep task runs the whole group."""
    from infpop.jobs import group_file, write_group
    from infpop.manifest import load_manifest
    from infpop.plan import plan
    from infpop.profile import load_profile

    manifest = write_manifest(gpu_counts=[1], batch_sizes=[1, 2, 4])
    loaded = load_manifest(manifest)
    groups = plan(loaded, "local", load_profile(None).partition("local"))
    paths = [write_group(g) for g in groups]  # what `infpop sweep` writes when it submits
    before = {p: p.read_text() for p in paths}
    assert main(["hpo", "search", str(manifest), "--partition", "local", "--budget", "1"]) == 0
    assert len(_results(tmp_path / "runs")) == 1
    assert {p: p.read_text() for p in paths} == before
    assert all(group_file(g).exists() for g in groups)


@pytest.mark.slurm
def test_search_on_the_slurm_test_cluster(write_manifest, tmp_path: Path, slurm_conf: str) -> None:
    """On the real test cluster (the session's ``slurm_conf`` fixture): trials are SLURM jobs."""
    repo = Path(__file__).resolve().parents[2]
    profile = yaml.safe_load((repo / "slurm" / "profiles" / "testcluster.yaml").read_text())
    profile_path = tmp_path / "profile.yaml"
    profile_path.write_text(yaml.safe_dump(profile))
    manifest = write_manifest(gpu_counts=[1, 2], batch_sizes=[1, 4], partitions=["a100"])
    argv = ["hpo", "search", str(manifest), "--partition", "a100", "--profile", str(profile_path), "--budget", "2"]
    # `infpop status` shows the search's job in flight with its SLURM state while the search runs.
    study = tmp_path / "runs" / "t"
    search = threading.Thread(target=lambda: codes.append(main(argv)))
    codes: list[int] = []
    seen: set[str] = set()
    search.start()
    while search.is_alive():
        if (study / ".infpop" / "search").is_dir():
            seen.update(line for line in status_report([study]).splitlines() if line.startswith("  search "))
        time.sleep(0.2)
    search.join()
    assert codes == [0]
    assert any(re.search(r"; job \d+ on a100 (PENDING|CONFIGURING|RUNNING|COMPLETING): ", line) for line in seen), seen
    done = status_report([study])
    assert re.search(
        r"search \S+ \(ours[^)]*\): 2 trial\(s\); stopped: budget of 2 trials reached; pick g\d_b\d", done
    ), done
    first = _results(tmp_path / "runs")
    assert len(first) == 2 and all("/a100/" in k for k in first)
    assert main(argv) == 0
    assert _results(tmp_path / "runs") == first


def test_the_pick_carries_the_interval_configs_csv_gives_and_ties_by_it(write_manifest, tmp_path: Path) -> None:
    """With repetitions on disk, the pick's interval is the 95% bootstrap interval of the mean (as in
    configs.csv), and a configuration more than 1% below whose interval overlaps it is a tie."""
    from infpop.manifest import load_manifest
    from infpop.plan import plan
    from infpop.profile import EMBEDDED_DEFAULT
    from infpop.results import Provenance, ResultStore, TrialResult, utcnow
    from infpop.search_state import Pick
    from infpop_analysis.hpo.search import observe, pick, targets

    loaded = load_manifest(write_manifest(repetitions=5))
    now = utcnow()
    prov = Provenance(host="h", gpus=["cpu"], versions={}, manifest_sha256="x", started_at=now, finished_at=now)

    def picked(values: dict[int, list[float]], root: Path) -> Pick:
        groups = plan(loaded, "local", EMBEDDED_DEFAULT.partitions["local"], output_root=root)
        store = ResultStore(groups[0].output_root)
        for t in (t for g in groups for t in g.trials):
            store.write(
                TrialResult(trial=t, status="ok", throughput=values[t.batch_size][t.repetition], provenance=prov)
            )
        (target,) = targets(groups, 3)
        return pick(observe(store, target), store, target, 5)

    wide = picked({1: [100.0, 120.0, 80.0, 110.0, 90.0], 4: [95.0, 97.0, 93.0, 96.0, 94.0]}, tmp_path / "a")
    assert wide.config == "g1_b1" and "bootstrap interval of the mean" in wide.interval_note
    low, high = wide.interval
    assert 80 < low < 100 < high < 120, "narrower than the repetitions' spread, around their mean"
    assert wide.tied_with == ["g1_b4"], "5% below, but within the noise"
    apart = picked({1: [100.0, 101.0, 99.0, 100.5, 99.5], 4: [95.0, 95.5, 94.5, 95.2, 94.8]}, tmp_path / "b")
    assert apart.tied_with == [], "5% below and well outside the interval"


def test_require_equivalent_runs_the_reference_first_and_picks_only_what_says_the_same(
    write_manifest, humaneval_path: Path, tmp_path: Path, capsys
) -> None:
    """The real case of tests/analysis/test_equivalence.py: the tiny model in bfloat16 with left
    padding, where batch 8 changes a prompt's output. The search runs the reference (batch 1)
    first, judges each trial by its recorded fingerprints, picks only an equivalent configuration,
    and the state, the log and `infpop status` say what the constraint cost."""
    workload = {"path": str(humaneval_path), "limit": 8}
    manifest = write_manifest(dtype="bfloat16", batch_sizes=[1, 8], max_new_tokens=[16], workload=workload)
    assert main(["hpo", "search", str(manifest), "--partition", "local", "--require-equivalent"]) == 0
    study = tmp_path / "runs" / "t"
    state = json.loads(next((study / ".infpop" / "search").glob("*.json")).read_text())
    eq = state["equivalence"]
    assert eq["reference"] == "g1_b1" and state["trials"][0]["config"] == "g1_b1"
    # Each trial's recorded judgement is what its result file's fingerprints say.
    results = {f"g{r.trial.n_gpus}_b{r.trial.batch_size}": r for r in iter_results(tmp_path / "runs")}
    reference = results["g1_b1"].outputs
    for trial in state["trials"]:
        pairs = [(a, b) for a, b in zip(results[trial["config"]].outputs, reference) if a and b]
        assert trial["identical"] == sum(a == b for a, b in pairs) / len(pairs)
        assert trial["equivalent"] == (trial["status"] == "ok" and all(a == b for a, b in pairs))
    assert [t["equivalent"] for t in state["trials"]] == [True, False], "batch 8 diverges, as in test_equivalence"
    # The pick is the best equivalent trial; the unconstrained best and the ratio beside it.
    ok = [t for t in state["trials"] if t["status"] == "ok"]
    best = max(ok, key=lambda t: t["value"])
    assert state["pick"]["config"] == "g1_b1"
    assert eq["unconstrained"]["config"] == best["config"]
    assert eq["value_ratio"] == pytest.approx(state["pick"]["value"] / best["value"])
    out = capsys.readouterr().out
    assert "g1_b8: ok" in out and "NOT equivalent to the reference g1_b1" in out
    cost = "the constraint cost nothing" if best["config"] == "g1_b1" else f"{eq['value_ratio']:.0%} of the best"
    assert cost in out
    line = status_report([study])
    assert "2 trial(s), 1 equivalent to the reference g1_b1" in line and "pick g1_b1" in line and cost in line


def test_require_equivalent_refuses_a_share_that_is_no_share(write_manifest, tmp_path: Path, capsys) -> None:
    manifest = str(write_manifest())
    for bad in ("nan", "inf", "0", "-0.5", "1.5"):
        assert (
            main(["hpo", "search", manifest, "--partition", "local", "--require-equivalent", "--min-identical", bad])
            == 2
        )
        assert "share of identical prompts must be in (0, 1]" in capsys.readouterr().err
    assert main(["hpo", "search", manifest, "--partition", "local", "--min-identical", "0.9"]) == 2
    assert "--min-identical is a condition of --require-equivalent" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists(), "nothing planned or written"
