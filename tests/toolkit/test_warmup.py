"""Warm-up and repetitions on the compute node: untimed batches before each trial (recorded,
never counted), repetitions run in rounds, and a real sweep whose first timed batch is no
longer its slowest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from infpop.engines.hf import HFPipelineEngine
from infpop.errors import InputError
from infpop.manifest import Warmup, load_manifest
from infpop.plan import GroupSpec, plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.results import TrialResult, iter_results
from infpop.trial import run_group

#: Every prompt the same length, so the batches of a trial are alike and only warm-up effects
#: can single out the first one (the demo's length-ascending prompts would favour it).
FIXED_SHAPE = {
    "name": "synthetic",
    "synthetic": {"n_prompts": 24, "input_tokens": {"kind": "fixed", "tokens": 40},
                  "output_tokens": {"kind": "fixed", "tokens": 4}},
}  # fmt: skip


def _group(manifest: Path) -> GroupSpec:
    (group,) = plan(load_manifest(manifest), "local", EMBEDDED_DEFAULT.partitions["local"])
    return group


class CountingEngine(HFPipelineEngine):
    """The real HF engine, noting the batch size of every generate call."""

    calls: list[int]

    def generate(self, prompts, batch_size, max_new_tokens):
        self.calls.append(len(prompts))
        return super().generate(prompts, batch_size, max_new_tokens)


def _run_counting(group: GroupSpec) -> tuple[list[TrialResult], list[int]]:
    t = group.first
    engine = CountingEngine(t.model, model_path=group.model_path, n_gpus=1, dtype=t.dtype, options={})
    engine.calls = []
    return run_group(group, lambda g: engine), engine.calls


def test_default_is_one_warm_up_batch_per_trial_and_bad_values_are_named(write_manifest) -> None:
    assert load_manifest(write_manifest()).manifest.warmup == Warmup(group_batches=0, trial_batches=1)
    with pytest.raises(
        InputError, match=r"warmup\.trial_batches: Input should be greater than or equal to 0 \(got -1\)"
    ):
        load_manifest(write_manifest(warmup={"trial_batches": -1}))
    with pytest.raises(InputError, match=r"warmup\.per_trial: Extra inputs are not permitted"):
        load_manifest(write_manifest(warmup={"per_trial": 1}))


def test_warm_up_batches_run_untimed_and_are_recorded(write_manifest) -> None:
    group = _group(write_manifest(batch_sizes=[4], max_new_tokens=[3], warmup={"group_batches": 2, "trial_batches": 1}))
    (r,), calls = _run_counting(group)
    assert calls == [4, 4, 4] + [4, 4, 4], (
        "2 after the load, 1 before the trial, then the 12 prompts in 3 timed batches"
    )
    assert r.status == "ok" and len(r.batch_latencies_s) == 3
    assert r.generated_tokens == 12 * 3, "warm-up tokens are not counted"
    assert r.throughput == pytest.approx(r.generated_tokens / r.wall_s)
    assert r.warmup_s > 0 and r.group_warmup_s > 0 and r.trial.warmup_batches == 1


def test_no_warm_up_repeats_the_published_protocol(write_manifest) -> None:
    group = _group(write_manifest(batch_sizes=[4], warmup={"trial_batches": 0}))
    (r,), calls = _run_counting(group)
    assert calls == [4, 4, 4] and r.warmup_s is None and r.group_warmup_s is None
    paper = load_manifest(Path(__file__).resolve().parents[2] / "manifests" / "paper.yaml").manifest
    assert paper.warmup.trial_batches == 0 and paper.warmup.group_batches == 0


def test_repetitions_run_in_rounds_and_keep_their_index(write_manifest) -> None:
    group = _group(write_manifest(batch_sizes=[1, 4], max_new_tokens=[2], repetitions=3))
    assert [(t.repetition, t.batch_size) for t in group.trials] == [(r, b) for r in range(3) for b in (1, 4)]


def test_a_sweep_with_warm_up_no_longer_has_its_first_timed_batch_slowest(write_manifest, tmp_path: Path) -> None:
    """A real local sweep (submitit jobs, a fresh process per job) of the tiny model, 6
    repetitions of batch sizes 1 and 2 over 24 equal-length prompts, with the default warm-up
    (12 trials: with 6, a machine still warming up made half of them look "first slowest").
    Without warm-up the first batch after a load pays the engine's first-call costs; with it,
    the first timed batch is like the others, so it is the slowest of its trial by chance only
    (1 in 24 or 1 in 12 trials), not in half of them."""
    manifest = write_manifest(
        batch_sizes=[1, 2], max_new_tokens=[4], repetitions=6, workload=FIXED_SHAPE,
        engine_options={"hf": {"cpu_threads": 1}},
    )  # fmt: skip
    sweep = subprocess.run([sys.executable, "-m", "infpop", "sweep", str(manifest)], capture_output=True, text=True)
    assert sweep.returncode == 0, sweep.stderr
    results = sorted(
        (r for r in iter_results(tmp_path / "runs") if isinstance(r, TrialResult)),
        key=lambda r: r.provenance.started_at,
    )
    assert [(r.trial.repetition, r.trial.batch_size) for r in results] == [(r, b) for r in range(6) for b in (1, 2)]
    assert all(r.status == "ok" and r.warmup_s > 0 for r in results)
    first_slowest = [r.batch_latencies_s[0] >= max(r.batch_latencies_s[1:]) for r in results]
    assert sum(first_slowest) < len(results) / 2, [r.batch_latencies_s for r in results]

    table = tmp_path / "table.parquet"
    run = [sys.executable, "-m", "infpop"]
    assert subprocess.run([*run, "aggregate", str(tmp_path / "runs" / "t"), "-o", str(table)]).returncode == 0
    assert pd.read_parquet(table)["warmup_s"].gt(0).all()
    assert (
        subprocess.run([*run, "stats", str(table), "-o", str(tmp_path / "stats")], capture_output=True).returncode == 0
    )
    configs = pd.read_csv(tmp_path / "stats" / "configs.csv")
    assert len(configs) == 2 and (configs["n"] == 6).all()
    assert (configs["ci_low"] <= configs["mean"]).all() and (configs["mean"] <= configs["ci_high"]).all()
    assert "## Repetitions: each configuration with its interval" in (tmp_path / "stats" / "report.md").read_text()
