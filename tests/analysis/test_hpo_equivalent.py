"""``infpop hpo search --require-equivalent`` on synthetic landscapes: the search's own decision
loop (:func:`~infpop_analysis.hpo.search.next_step`, the one the driver and its jobs ask) over
result files on disk, each trial's outputs written as fingerprints; only the trial jobs are left
out (the live search with the tiny model is in tests/integration/test_hpo_search.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from infpop.errors import InputError
from infpop.fingerprints import fingerprint
from infpop.manifest import ModelSpec, WorkloadSpec
from infpop.plan import TrialSpec
from infpop.results import Provenance, ResultStore, TrialResult
from infpop.search_state import SearchState
from infpop_analysis.hpo.equivalent import RequireEquivalent
from infpop_analysis.hpo.landscape import Config
from infpop_analysis.hpo.methods import METHODS
from infpop_analysis.hpo.objective import THROUGHPUT
from infpop_analysis.hpo.optimizers import Observation
from infpop_analysis.hpo.search import Target, conclude, judge, next_step, observe
from infpop_analysis.hpo.stopping import plausible

BATCHES = (1, 2, 4, 8, 16)
GPUS = (1, 2)
#: Throughput rising with batch to a peak at batch 8, higher on two GPUs.
LANDSCAPE = {
    Config(g, b): v
    for g, row in ((1, (10.0, 19.0, 35.0, 60.0, 55.0)), (2, (12.0, 23.0, 42.0, 80.0, 70.0)))
    for b, v in zip(BATCHES, row)
}
#: What each prompt generates at the reference; a diverging configuration changes one token of one prompt.
REFERENCE_IDS = [list(range(p * 10, p * 10 + 8)) for p in range(4)]


def _outputs(diverges: bool) -> list[str]:
    ids = [list(x) for x in REFERENCE_IDS]
    if diverges:
        ids[2][5] = 9999
    return [fingerprint(x) for x in ids]


def _spec(c: Config) -> TrialSpec:
    return TrialSpec(study="s", hardware="cpu", partition="local", engine="hf", model=ModelSpec(name="m", source="org/m"),
                     n_gpus=c.n_gpus, batch_size=c.batch_size, max_new_tokens=8, repetition=0, dtype="bfloat16",
                     workload=WorkloadSpec(path="p.jsonl"))  # fmt: skip


def search(
    root: Path, diverging: set[Config], share: float | None = 1.0, failed: dict[Config, str] | None = None
) -> tuple[SearchState, list[str]]:
    """Run ``ours`` to its stop on :data:`LANDSCAPE`, writing each trial's result as it is proposed;
    the state it concludes with and the configurations in the order they ran."""
    failed = failed or {}
    store = ResultStore(root)
    target = Target({}, {c: _spec(c) for c in LANDSCAPE}, THROUGHPUT)
    space = sorted(target.trials)
    constraint = None if share is None else RequireEquivalent.of(space, share)
    method = METHODS["ours"]
    optimizer, stopping = method.build(0, BATCHES, GPUS), method.stopping()
    ran: list[str] = []
    while True:
        history = observe(store, target)
        judged = judge(history, constraint)  # once per reading, as the driver does
        step = next_step(stopping, optimizer, space, history, constraint, judged)
        if not isinstance(step, Config):
            break
        at = f"2026-01-01T00:{len(ran):02d}:00"
        prov = Provenance(host="h", gpus=["cpu"], versions={}, manifest_sha256="0" * 64, started_at=at, finished_at=at)
        status = failed.get(step, "ok")
        ok = status == "ok"
        store.write(
            TrialResult(
                trial=target.trials[step],
                status=status,
                throughput=LANDSCAPE[step] if ok else None,
                outputs=_outputs(step in diverging) if ok else None,
                provenance=prov,
            )  # fmt: skip
        )
        ran.append(str(step))
    state = SearchState(target="t", method="ours", seed=0, budget=None, prior=None, physics=False, stop_reason=step)
    conclude(state, history, judged, store, target, 1, constraint)
    return state, ran


def test_the_pick_is_the_best_equivalent_configuration_and_the_cost_is_reported(tmp_path: Path) -> None:
    """Batches of 4 and more change a prompt's output, and so does g1_b2 (equivalence need not be
    monotone): the fastest configuration (g2_b8) is not equivalent. The unconstrained search stops
    before it tries any batch below 4 (nothing there beats g2_b8); the constrained one goes on until
    nothing untried can beat the best equivalent configuration, g2_b2, and reports what it cost."""
    diverging = {c for c in LANDSCAPE if c.batch_size >= 4} | {Config(1, 2)}
    free, ran_free = search(tmp_path / "free", diverging, share=None)
    assert free.pick.config == "g2_b8" and free.equivalence is None and "g2_b2" not in ran_free

    state, ran = search(tmp_path / "constrained", diverging)
    assert ran[0] == "g1_b1", "the reference runs first"
    assert "g2_b8" in ran, "non-equivalent trials are still measured"
    assert state.pick.config == "g2_b2" and state.pick.value == 23.0
    eq = state.equivalence
    assert eq.reference == "g1_b1" and eq.unconstrained.config == "g2_b8"
    assert eq.value_ratio == pytest.approx(23.0 / 80.0)
    assert "every prompt" in eq.definition and "repetition 0" in eq.basis
    assert "29% of the best measured, g2_b8 80 tok/s, whose outputs differ" in eq.outcome(state.pick, "tok/s")

    # Where the fastest is equivalent, the constraint costs nothing.
    same, _ = search(tmp_path / "same", {Config(1, 8)})
    assert same.pick.config == "g2_b8" and same.equivalence.value_ratio == 1.0
    assert "the constraint cost nothing" in same.equivalence.outcome(same.pick, "tok/s")


def test_a_share_below_one_admits_a_configuration_with_few_differing_prompts(tmp_path: Path) -> None:
    """g2_b8 differs on 1 prompt of 4: equivalent at a required share of 0.75, not at 0.8."""
    diverging = {Config(1, 8), Config(2, 8)}
    assert search(tmp_path / "a", diverging, share=0.75)[0].pick.config == "g2_b8"
    assert search(tmp_path / "b", diverging, share=0.8)[0].pick.config == "g2_b16"  # 70 tok/s, the next best
    for bad in (0.0, -1.0, 1.5, float("nan"), float("inf")):
        with pytest.raises(InputError, match="share of identical prompts"):
            RequireEquivalent.of([Config(1, 1)], bad)


def test_a_failed_reference_stops_the_search_without_a_pick(tmp_path: Path) -> None:
    state, ran = search(tmp_path, set(), failed={Config(1, 1): "oom"})
    assert ran == ["g1_b1"] and state.pick is None
    assert state.stop_reason.startswith("the reference g1_b1 ended oom: no configuration can be judged equivalent")
    assert "nothing picked" in state.equivalence.outcome(None, "tok/s")


def test_a_falling_trend_of_non_equivalent_trials_leaves_open_what_could_beat_the_equivalent_incumbent() -> None:
    """b2 and b4 fall away from each other, so b8 is below b4 (60): below the best measured (b2),
    but possibly above the equivalent incumbent b1 (20)."""
    space = [Config(1, b) for b in (1, 2, 4, 8)]
    seen = {Config(1, 1): 20.0, Config(1, 2): 100.0, Config(1, 4): 60.0}
    assert plausible(space, seen) == []
    assert plausible(space, seen, eligible={Config(1, 1)}) == [Config(1, 8)]
    # Nothing eligible measured yet: nothing to beat, so everything untried stays open.
    assert plausible(space, seen, eligible=set()) == [Config(1, 8)]


def test_a_gpu_count_below_the_equivalent_incumbent_stays_open_where_its_own_gpu_count_peaks_higher() -> None:
    """The incumbent g2_b1 (20) is equivalent, g2_b2 (100) is not. g1_b1 (15) is below the incumbent,
    but the batch profile keeps its shape across GPU counts: g1 may reach about 75 at batch 2."""
    space = [Config(g, b) for g in (1, 2) for b in (1, 2, 4)]
    seen = {Config(2, 1): 20.0, Config(2, 2): 100.0, Config(1, 1): 15.0}
    assert Config(1, 2) in plausible(space, seen, eligible={Config(2, 1), Config(1, 1)})


def test_the_climb_centres_on_the_best_equivalent_configuration_not_a_faster_one_ruled_out(tmp_path: Path) -> None:
    """Two GPUs split the reductions, so none of their outputs match the single-GPU reference,
    yet they are the fastest. Once g2_b16 (70) outruns the equivalent incumbent g1_b16 (55), the
    search keeps climbing around g1_b16 and reaches g1_b8, the best equivalent configuration, at
    its fifth trial, with no trial spent refining g2's peak (g2_b4, g2_b8) before it."""
    state, ran = search(tmp_path, {c for c in LANDSCAPE if c.n_gpus == 2})
    assert state.pick.config == "g1_b8" and state.pick.value == 60.0
    assert ran[:5] == ["g1_b1", "g1_b4", "g1_b16", "g2_b16", "g1_b8"]
    assert len(ran) <= 7, "no more trials than a climb around g2_b16 takes"


def test_with_every_success_ruled_out_the_search_walks_down_towards_the_reference() -> None:
    """No measured configuration may be picked (e.g. the reference ran but the objective gave it
    no value): from the fastest, g2_b8, the search steps one batch level down at a time, then to
    fewer GPUs at that batch, where outputs are likeliest to match the reference, instead of
    climbing around a configuration it cannot pick."""
    optimizer = METHODS["ours"].build(0, BATCHES, GPUS)
    space = sorted(LANDSCAPE)
    history = [Observation(c, LANDSCAPE[c], eligible=False) for c in (Config(2, 8), Config(2, 16))]
    walked = []
    for _ in range(4):
        step = optimizer.propose(space, history)
        walked.append(str(step))
        history.append(Observation(step, LANDSCAPE[step], eligible=False))
    assert walked == ["g2_b4", "g2_b2", "g2_b1", "g1_b8"]
    # Once one is equivalent, it is the incumbent and the climb leads from it again.
    history[-1] = history[-1]._replace(eligible=True)
    assert optimizer.propose(space, history) == Config(1, 2)
