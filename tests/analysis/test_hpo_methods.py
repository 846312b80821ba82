"""Search methods as records and their one stopping rule: a method stops after the same trials,
for the same reason, whether the benchmark replays it or a live search runs it."""

from __future__ import annotations

import math

import pytest
from infpop_analysis.hpo.landscape import Config, Landscape, Point
from infpop_analysis.hpo.methods import METHODS, Stopping
from infpop_analysis.hpo.optimizers import Observation
from infpop_analysis.hpo.prior import Prior
from infpop_analysis.hpo.runs import run_one
from infpop_analysis.hpo.stopping import Physics


@pytest.fixture
def land() -> Landscape:
    """Throughput peaking at one batch per GPU count (8 % less per log2 level away), OOM above a
    batch that grows with the GPU count."""
    peak = {1: (16, 50.0), 2: (32, 70.0), 4: (32, 60.0), 8: (64, 40.0)}
    oom = {1: 64, 2: 128, 4: 256, 8: 10**9}
    points = {}
    for g, (best, top) in peak.items():
        for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
            ok = b < oom[g]
            points[Config(g, b)] = (
                Point("ok", top * (1 - 0.08 * abs(math.log2(b / best)))) if ok else Point("oom", math.nan)
            )
    return Landscape("hf", "m", "a100", points)


def _live(name: str, land: Landscape, budget: int | None = None) -> tuple[list[Config], str]:
    """The trials a live search runs and why it stops: its loop, with the landscape answering."""
    method = METHODS[name]
    optimizer = method.build(0, sorted({c.batch_size for c in land.space}), sorted({c.n_gpus for c in land.space}))
    stopping = method.stopping(budget)
    history: list[Observation] = []
    while isinstance(step := stopping.next(optimizer, land.space, history), Config):
        history.append(Observation(step, land.score(step, "strict")))
    return [o.config for o in history], step


@pytest.mark.parametrize("name", ["grid", "random", "hillclimb", "ours"])
def test_a_method_stops_after_the_same_trials_in_the_benchmark_and_a_live_search(name: str, land: Landscape) -> None:
    run = run_one(name, land, 0)
    trials, reason = _live(name, land)
    assert run.trace == [str(c) for c in trials] and run.stop_reason == reason
    assert run.trials_to_stop < len(land.space) or name == "random"


def test_a_budget_or_a_patience_ends_a_search_before_the_optimizers_rule(land: Landscape) -> None:
    trials, reason = _live("ours", land, budget=2)
    assert len(trials) == 2 and reason == "budget of 2 trials reached"
    flat = [Observation(Config(1, 2**i), 10.0) for i in range(5)]
    assert Stopping(patience=4).reason(flat) == "4 trials without improvement"
    assert Stopping(patience=5).reason(flat) is None


def test_a_method_without_its_prior_or_physics_runs_and_is_named_as_the_one_that_needs_neither() -> None:
    physics = Physics()
    prior = Prior.learn([], "hf", "a100")
    # without the other GPU's landscape, history still opens with its other guesses (test_hpo.py)
    assert METHODS["ours+history"].resolve(None, physics).name == "ours+history"
    assert METHODS["ours+prior"].resolve(None, physics).name == "ours+physics"
    assert METHODS["ours+history"].resolve(None, None).name == "ours"
    assert METHODS["ours+history"].resolve(prior, None).name == "ours+history"
    assert METHODS["hillclimb+physics"].resolve(None, None).name == "hillclimb"
    assert METHODS["ours"].resolve(None, None).name == "ours"
