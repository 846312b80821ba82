"""One search: a method on a landscape until its stopping rule ends it, and what it cost.

Per run: ``trials_to_stop`` (distinct configurations evaluated: each is a trial), whether the
final pick is within the tolerance (1 %) of the landscape's best successful throughput
(``final_hit``), the GPU-hours as a cluster bills them (:mod:`.cost`), and ``anytime_shortfall``:
the shortfall of the incumbent from the optimum after 1, 2, 3 and 5 trials (a stopped search
keeps its pick). ``evaluations`` / ``gpu_seconds`` / ``hit`` count until the best-so-far first
falls within the tolerance (what only someone who knows the optimum can see).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from infpop.physics import DEFAULT_CALIBRATION, Architecture, Calibration, Workload

from infpop_analysis.hpo.cost import billed_seconds, upper_bound_seconds
from infpop_analysis.hpo.landscape import Config, Landscape
from infpop_analysis.hpo.methods import METHODS
from infpop_analysis.hpo.oom import physics_for
from infpop_analysis.hpo.optimizers import FAILURE_LOSS, TPE, Observation
from infpop_analysis.hpo.prior import Prior
from infpop_analysis.hpo.stopping import PATIENCE, PATIENCES, TOLERANCE, Physics

#: TPE's budget of proposals, as in the study.
TPE_PROPOSALS = 100
#: Trials after which the anytime shortfall is measured.
ANYTIME: tuple[int, ...] = (1, 2, 3, 5)


@dataclass(frozen=True)
class Run:
    method: str
    engine: str
    model: str
    hardware: str
    seed: int
    hit: bool
    evaluations: int
    proposals: int
    gpu_seconds: float
    trials_to_stop: int
    stop_reason: str
    pick: str
    pick_throughput: float | None
    final_hit: bool
    gpu_hours: float
    loads: int
    trace: list[str]
    #: Shortfall of the incumbent from the optimum after each of :data:`ANYTIME` trials.
    anytime_shortfall: tuple[float, ...] = ()
    #: Billed GPU-hours of failed trials with a partial throughput: upper bounds (:data:`~.cost.FAILED_TRIAL_COST`).
    upper_bound_gpu_hours: float = 0.0
    #: The baseline's patience (None: a method that stops by its own rule).
    patience: int | None = None


def _search(
    name: str,
    land: Landscape,
    seed: int,
    tolerance: float,
    prior: Prior | None,
    physics: Physics | None,
    slack: float | None,
    patience: int | None,
    without: frozenset[str],
) -> tuple[list[Observation], list[int], int, str]:
    """The trials of one search in order, the proposals made up to each, all proposals made, and
    why it stopped."""
    space = land.space
    stopping = METHODS[name].stopping(patience=patience, tolerance=tolerance)
    history: list[Observation] = []
    calls: list[Config] = []
    at: list[int] = []

    def evaluate(config: Config) -> float | None:
        value = land.score(config, "strict")
        history.append(Observation(config, value))
        at.append(len(calls))
        return value

    def stalled() -> bool:
        return stopping.reason(history) is not None

    batch_sizes, gpu_counts = sorted({c.batch_size for c in space}), sorted({c.n_gpus for c in space})
    chosen = METHODS[name].resolve(prior, physics)
    optimizer = chosen.build(seed, batch_sizes, gpu_counts, prior=prior, physics=physics, slack=slack)
    if isinstance(optimizer, TPE):
        # Driven through hyperopt's own loop: replaying the history at each proposal costs the square.
        known: dict[Config, float | None] = {}

        def loss(config: Config) -> float:
            calls.append(config)
            if config not in land.points:
                return FAILURE_LOSS
            if config not in known:
                known[config] = evaluate(config)
            value = known[config]
            return FAILURE_LOSS if value is None else -value

        optimizer.minimize(loss, TPE_PROPOSALS, stop=stalled)
        reason = stopping.reason(history) or f"the study's {TPE_PROPOSALS} proposals"
    else:
        if without:
            optimizer = replace(optimizer, without=without)
        while isinstance(step := stopping.next(optimizer, space, history), Config):
            calls.append(step)
            evaluate(step)
        reason = step
    return history, at, len(calls), reason


def _record(
    method: str,
    land: Landscape,
    seed: int,
    history: Sequence[Observation],
    proposals: int,
    reason: str,
    tolerance: float,
    weights_bytes: float | None,
    patience: int | None,
) -> Run:
    optimum = land.optimum("strict")
    target = optimum * (1 - tolerance)
    ok = [o for o in history if o.value is not None]
    pick = max(ok, key=lambda o: o.value, default=None)
    first = next((i for i, o in enumerate(history) if o.value is not None and o.value >= target), None)
    to_hit = history if first is None else history[: first + 1]
    billed, loads = billed_seconds(land, [o.config for o in history], weights_bytes)
    anytime = tuple(
        1 - max((o.value for o in history[:k] if o.value is not None), default=0.0) / optimum for k in ANYTIME
    )
    return Run(
        method,
        *land.key,
        seed=seed,
        hit=first is not None,
        evaluations=len(to_hit),
        proposals=proposals,
        gpu_seconds=sum(land.gpu_seconds(o.config) for o in to_hit),
        trials_to_stop=len(history),
        stop_reason=reason,
        pick=str(pick.config) if pick else "",
        pick_throughput=pick.value if pick else None,
        final_hit=pick is not None and pick.value >= target,
        gpu_hours=billed / 3600,
        loads=loads,
        trace=[str(o.config) for o in history],
        anytime_shortfall=anytime,
        upper_bound_gpu_hours=upper_bound_seconds(land, [o.config for o in history]) / 3600,
        patience=patience,
    )


def run_one(
    method: str,
    land: Landscape,
    seed: int,
    tolerance: float = TOLERANCE,
    prior: Prior | None = None,
    physics: Physics | None = None,
    slack: float | None = None,
    weights_bytes: float | None = None,
    patience: int | None = None,
    without: frozenset[str] = frozenset(),
) -> Run:
    """One search of ``land`` by ``method``, until its stopping rule ends it; ``without``: the
    parts of ``ours*``' start and rule left out (:data:`~infpop_analysis.hpo.stopping.PARTS`)."""
    if land.optimum("strict") is None:
        raise ValueError(f"landscape {land.key} has no successful trial")
    history, _, proposals, reason = _search(method, land, seed, tolerance, prior, physics, slack, patience, without)
    return _record(
        method,
        land,
        seed,
        history,
        proposals,
        reason,
        tolerance,
        weights_bytes,
        METHODS[method].stopping(patience=patience).patience,
    )


def patience_runs(
    method: str,
    land: Landscape,
    seed: int,
    patiences: Sequence[int] = PATIENCES,
    tolerance: float = TOLERANCE,
    weights_bytes: float | None = None,
) -> dict[int, Run]:
    """A baseline's run at every patience, from one search at the largest: its proposals do not
    depend on when it stops, so each smaller patience's run is a prefix of that one."""
    if land.optimum("strict") is None:
        raise ValueError(f"landscape {land.key} has no successful trial")
    history, at, proposals, reason = _search(
        method, land, seed, tolerance, None, None, None, max(patiences), frozenset()
    )
    out = {}
    for p in patiences:
        stopping = METHODS[method].stopping(patience=p, tolerance=tolerance)
        cut = next((i for i in range(1, len(history) + 1) if stopping.reason(history[:i]) is not None), None)
        if cut is None:
            kept, calls, why = history, proposals, reason
        else:
            kept, calls, why = history[:cut], at[cut - 1], f"{p} trials without improvement"
        out[p] = _record(method, land, seed, kept, calls, why, tolerance, weights_bytes, p)
    return out


@dataclass(frozen=True)
class Context:
    """What the physics and history settings may know about each landscape."""

    archs: Mapping[str, Architecture]
    workload: Workload | None
    calibration: Calibration = DEFAULT_CALIBRATION
    #: The stopping rule's slack for every structured method; None: each setting's own.
    slack: float | None = None

    def physics(self, land: Landscape) -> Physics | None:
        if self.workload is None:
            return None
        return physics_for(land, self.archs.get(land.model), self.workload, self.calibration)

    def weights(self, land: Landscape) -> float | None:
        arch = self.archs.get(land.model)
        return arch.params * 2 if arch is not None else None


def run_all(
    lands: Sequence[Landscape],
    methods: Sequence[str] = tuple(METHODS),
    seeds: Sequence[int] = range(10),
    context: Context | None = None,
) -> list[Run]:
    """Every method on every landscape with a success, once per seed (deterministic methods search
    once and the run is copied per seed, so every method has the same number of runs). The
    baselines that stop by patience run at every patience of :data:`PATIENCES` (:func:`patience_runs`)."""
    context = context or Context({}, None)
    runs = []
    for land in lands:
        if land.optimum("strict") is None:
            continue
        physics = context.physics(land)
        for m in methods:
            record = METHODS[m]
            prior = record.prior.learn(lands, land) if record.prior is not None else None
            run: Run | None = None
            if record.patience is not None:
                for s in seeds:
                    if run is None or not record.deterministic:
                        by_patience = patience_runs(m, land, s, weights_bytes=context.weights(land))
                        run = by_patience[PATIENCE]
                    runs += [replace(r, seed=s) for r in by_patience.values()]
                continue
            for s in seeds:
                if run is None or not record.deterministic:
                    run = run_one(
                        m,
                        land,
                        s,
                        prior=prior,
                        physics=physics,
                        slack=context.slack,
                        weights_bytes=context.weights(land),
                    )
                runs.append(replace(run, seed=s))
    return runs
