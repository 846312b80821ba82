"""Adaptive repetitions: a configuration is measured again only while its interval is too wide.

The engine is a stand-in for a GPU's timing: it generates nothing and takes a fixed time per
batch at batch size 4 (a quiet configuration, as a GPU's usually is) and a widely varying one at
batch size 6 (a noisy one). A real model's compute time on this shared 2-core machine would add
the machine's load to both, and which configuration is quiet would depend on it. The planning,
the trial loop, the result files and the rerun are the real ones. About 10 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from infpop.adaptive import t975
from infpop.engines.base import BatchOutput, Engine
from infpop.errors import InputError
from infpop.manifest import load_manifest
from infpop.plan import GroupSpec, plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.results import ResultStore
from infpop.trial import run_group
from scipy import stats as sps

ADAPTIVE = {"min": 3, "max": 8, "target_rel_halfwidth": 0.15}


class NoisyAtBatch6(Engine):
    """Every batch takes 0.15 s at batch size 4, and 0.02-0.5 s (log-normal, seeded) at batch
    size 6; one token per prompt and new token. The quiet one stops below max even if sleeping
    jitters by a CV of 16% (the interval's half-width at 7 values is 0.92 CV), the noisy one (CV
    near 50%) cannot reach the target by 8 (0.84 CV)."""

    name = "standin"
    rng = np.random.default_rng(6)

    def load(self) -> None:
        pass

    def generate(self, prompts, batch_size, max_new_tokens) -> BatchOutput:
        time.sleep(0.15 if batch_size == 4 else float(np.clip(0.1 * self.rng.lognormal(0, 0.8), 0.02, 0.5)))
        return BatchOutput(prompt_tokens=len(prompts), generated_tokens=len(prompts) * max_new_tokens)


def _group(manifest: Path) -> GroupSpec:
    (group,) = plan(load_manifest(manifest), "local", EMBEDDED_DEFAULT.partitions["local"])
    return group


def test_the_quiet_configuration_stops_at_the_target_and_the_noisy_one_at_max(write_manifest) -> None:
    group = _group(write_manifest(batch_sizes=[4, 6], max_new_tokens=[2], repetitions=ADAPTIVE))
    assert len(group.trials) == 2 * 8, "max repetitions are planned"

    def engine(g: GroupSpec) -> NoisyAtBatch6:
        return NoisyAtBatch6(g.first.model, model_path=g.model_path, n_gpus=1, dtype=g.first.dtype, options={})

    results = run_group(group, engine)
    by_batch = {
        b: sorted((r for r in results if r.trial.batch_size == b), key=lambda r: r.trial.repetition) for b in (4, 6)
    }
    quiet = [r.status for r in by_batch[4]]
    ran = quiet.count("ok")
    assert 3 <= ran < 8 and quiet == ["ok"] * ran + ["skipped_enough"] * (8 - ran), quiet
    assert f"enough after {ran} repetitions" in by_batch[4][ran].error and "target 15.00%" in by_batch[4][ran].error
    assert [r.stop_reason for r in by_batch[4]] == [None] * ran + ["target"] * (8 - ran)
    assert [r.status for r in by_batch[6]] == ["ok"] * 8, "the noisy configuration runs to max"
    assert [r.stop_reason for r in by_batch[6]] == [None] * 7 + ["max"], "and says so on its last repetition"
    assert run_group(group, engine) == [], "a rerun keeps the stops and runs nothing"
    store = ResultStore(group.output_root)
    assert all(store.done(t) is not None for t in group.trials)


def test_an_integer_keeps_its_meaning_and_a_bad_rule_is_named(write_manifest) -> None:
    assert len(_group(write_manifest(batch_sizes=[1], repetitions=3)).trials) == 3
    assert _group(write_manifest(batch_sizes=[1], repetitions=3)).adaptive is None
    for bad, said in (({**ADAPTIVE, "max": 2}, "max (2) is below min (3)"), ({**ADAPTIVE, "min": 1}, "min")):
        with pytest.raises(InputError, match="repetitions") as info:
            load_manifest(write_manifest(repetitions=bad))
        assert said in str(info.value)


def test_students_quantile_without_scipy_matches_scipy() -> None:
    for df in (1, 2, 5, 30, 31, 50, 200):
        assert t975(df) == pytest.approx(sps.t.ppf(0.975, df), abs=2e-4), df
