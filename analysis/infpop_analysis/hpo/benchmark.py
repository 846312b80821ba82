"""What each optimizer costs until it stops by itself, and how good its pick is.

Every method searches every published landscape (engine, model, hardware) once per seed, with
failures scoring worst, and runs until its own stopping rule ends it (:mod:`.stopping`):
``ours*`` when its rule finds no untried configuration that could beat the incumbent, the
hill-climbs when no neighbour of the incumbent is left, the other baselines after ``patience``
consecutive trials without improvement (TPE also at the study's 100 proposals). The baselines'
patience is tuned by the rule that tunes ``ours``' slack (:func:`tune_patience`); at the common
``PATIENCE`` of 5, TPE mostly stops inside hyperopt's 20 random start-up proposals.
Per run: ``trials_to_stop`` (distinct configurations evaluated: each is a trial), whether the
final pick is within ``tolerance`` (1 %) of the landscape's best successful throughput
(``final_hit``), and the GPU-hours as a cluster bills them: every trial's GPU-seconds plus one
model load per stretch of consecutive trials at one GPU count (the live search keeps the model
loaded across the batch sizes it tries at one GPU count; a sweep loads once per GPU count).
The published data records no load times, so loads follow :data:`LOAD_MODEL`, stated in the
output. ``sweep`` is the full grid at one load per GPU count, ``pruned_sweep`` the same skipping
batches above a failure at one GPU count (as infpop's sweep runs); each method's cost is also
given per landscape as a share of either (median and p90 of the shares), beside the ratio of
medians. A failed trial with a partial throughput is billed an upper bound
(:data:`FAILED_TRIAL_COST`); ``upper_bound_share`` says how much of the billed hours that is.
``anytime_shortfall``: the mean shortfall of the incumbent from the optimum after 1, 2, 3 and 5
trials (a stopped search keeps its pick). :func:`ablations` removes each part of ``ours+physics``'
start and stopping rule in turn.

Today's figures stay: ``median_evaluations`` / ``median_gpu_seconds`` / ``hit_rate`` count
until the best-so-far first falls within the tolerance (what only someone who knows the optimum
can see).

Settings: ``ours`` (no physics, no history), ``ours+physics`` (the memory and roofline model
of :mod:`.oom`), ``ours+history`` (physics, plus a prior from the same model on the other GPU:
the study's RQ5 situation), ``ours+prior`` (physics, plus a prior from every other model's
landscapes, leave-one-model-out). The tuned constants (the memory model's, and the stopping rule's
``slack``) are scored in-sample and cross-validated (:func:`cross_validate`).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from infpop.physics import DEFAULT_CALIBRATION, Architecture, Calibration, Workload

from infpop_analysis.hpo.landscape import Config, Landscape
from infpop_analysis.hpo.methods import METHODS
from infpop_analysis.hpo.oom import EFFICIENCIES, calibrate, calibrate_efficiency, family, outcomes, physics_for
from infpop_analysis.hpo.optimizers import FAILURE_LOSS, TPE, Grid, Observation
from infpop_analysis.hpo.prior import Prior, twin_prior
from infpop_analysis.hpo.stopping import PARTS, PATIENCE, PATIENCES, TOLERANCE, Physics

#: TPE's budget of proposals, as in the study.
TPE_PROPOSALS = 100
#: Slack values the stopping rule may use; cross-validation chooses among them per fold.
SLACKS: tuple[float, ...] = (0.0, 0.05, 0.1)
#: Final hit rate a tuned setting must keep while it minimises trials.
HIT_TARGET = 0.95
#: Trials after which the anytime shortfall is measured.
ANYTIME: tuple[int, ...] = (1, 2, 3, 5)
TPE_STARTUP = (
    "hyperopt's TPE proposes its first 20 trials at random (n_startup_jobs), so a TPE that stops after 5 trials "
    "without improvement is mostly random search"
)

#: Seconds to load a model: a fixed engine start plus the fp16 weights read from shared storage.
LOAD_START_S = {"hf": 20.0, "vllm": 60.0}
LOAD_BANDWIDTH_GBS = 1.0
LOAD_MODEL = (
    "published data records no load times; a model load is billed at n_gpus x (start + weights / "
    f"{LOAD_BANDWIDTH_GBS:g} GB/s) with start = {LOAD_START_S['hf']:g} s for hf and {LOAD_START_S['vllm']:g} s for "
    "vllm (process, CUDA context, vLLM's profiling and graph capture), once per stretch of consecutive trials at "
    "one GPU count; a sweep loads once per GPU count"
)
FAILED_TRIAL_COST = (
    "a failed trial with a recorded partial throughput costs the whole workload at that rate (an "
    "upper bound: prompts run shortest first, so OOM strikes late); one without costs a single "
    "batch at the best successful rate of its GPU count"
)
NOISE = (
    "the published data holds one repetition per configuration, so no interval is known: configurations within "
    f"{TOLERANCE:.0%} of each other are tied; with repetitions, a live search treats overlapping intervals as tied"
)


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
    #: Billed GPU-hours of failed trials with a partial throughput: upper bounds (:data:`FAILED_TRIAL_COST`).
    upper_bound_gpu_hours: float = 0.0
    #: The baseline's patience (None: a method that stops by its own rule).
    patience: int | None = None


def load_seconds(land: Landscape, n_gpus: int, weights_bytes: float | None) -> float:
    """Billed GPU-seconds of one model load on ``n_gpus`` (:data:`LOAD_MODEL`)."""
    start = LOAD_START_S.get(land.engine, LOAD_START_S["hf"])
    return n_gpus * (start + (weights_bytes or 0.0) / (LOAD_BANDWIDTH_GBS * 1e9))


def billed_seconds(land: Landscape, order: Sequence[Config], weights_bytes: float | None) -> tuple[float, int]:
    """GPU-seconds of the trials in ``order`` plus a load per stretch at one GPU count."""
    loads = [c.n_gpus for i, c in enumerate(order) if i == 0 or order[i - 1].n_gpus != c.n_gpus]
    total = sum(land.gpu_seconds(c) for c in order) + sum(load_seconds(land, g, weights_bytes) for g in loads)
    return total, len(loads)


def sweep_seconds(land: Landscape, weights_bytes: float | None, prune_oom: bool = False) -> float:
    """A sweep of the whole grid: every trial, one load per GPU count; with ``prune_oom``, batches
    above a failure at the same GPU count are skipped (as infpop's sweep runs)."""
    if not prune_oom:
        return billed_seconds(land, land.space, weights_bytes)[0]
    grid, history = Grid(), []
    while (config := grid.propose(land.space, history)) is not None:
        history.append(Observation(config, land.score(config, "strict")))
    return billed_seconds(land, [o.config for o in history], weights_bytes)[0]


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
    reason = ""

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
    partial = [o.config for o in history if o.value is None and not math.isnan(land.points[o.config].throughput)]
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
        upper_bound_gpu_hours=sum(land.gpu_seconds(c) for c in partial) / 3600,
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


#: How closely the other GPU's best configurations, measured here, must keep its shape for a
#: search to stop after them (``twin_top_k``): the agreement a stopping rule could trust.
AGREEMENTS: tuple[float, ...] = (0.01, 0.05)


def twin_top_k(
    lands: Sequence[Landscape], context: Context, ks: Sequence[int] = (1, 3), agreements: Sequence[float] = AGREEMENTS
) -> dict:
    """How far the same model on the other GPU can lead a search (``ours+history``'s ceiling).

    Per ``k``, the share of landscapes where the other GPU's ``k`` best configurations (those
    predicted to fit here) hold one within the tolerance of this landscape's optimum: a search
    that runs them and stops can hit no more often than this. Per agreement (``agreements``), a
    search that runs the largest ``k`` of them and stops only where they keep the other GPU's
    shape (each throughput relative to the best of them within that fraction of the other
    GPU's, in log terms; none failed): on how many landscapes it stops and how many of those
    stops miss. If agreement told a good stop from a bad one, the misses would be few.
    """
    hits = dict.fromkeys(ks, 0)
    stops = {a: [0, 0] for a in agreements}
    n = 0
    for land in lands:
        optimum = land.optimum("strict")
        prior = twin_prior(lands, land)
        if optimum is None or prior is None:
            continue
        physics = context.physics(land)
        fails = physics.oom if physics is not None else frozenset()
        twin = prior.surfaces[0].shape
        order = sorted((c for c in land.points if twin.get(c) and c not in fails), key=lambda c: -twin[c])
        good = [(v := land.score(c, "strict")) is not None and v >= optimum * (1 - TOLERANCE) for c in order]
        n += 1
        for k in ks:
            hits[k] += any(good[:k])
        top = order[: max(ks)]
        measured = [land.score(c, "strict") for c in top]
        if len(top) < 2 or any(v is None for v in measured):
            continue
        best, twin_best = max(measured), max(twin[c] for c in top)
        gap = max(abs(math.log(v / best) - math.log(twin[c] / twin_best)) for c, v in zip(top, measured))
        for a in agreements:
            if gap <= math.log1p(a):
                stops[a][0] += 1
                stops[a][1] += not any(good[: len(top)])
    return {
        "landscapes": n,
        **{f"top_{k}": hits[k] / n if n else math.nan for k in ks},
        f"stop_when_top_{max(ks)}_agree": {f"{a:g}": {"stops": s, "misses": m} for a, (s, m) in stops.items()},
    }


def benchmark(
    lands: Sequence[Landscape],
    methods: Sequence[str] = METHODS,
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


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


def method_summary(rs: Sequence[Run], sweeps: Mapping[str, Mapping[tuple, float]] | None = None) -> dict:
    """Trials to stop, final hit rate, billed GPU-hours (with the share that is an upper bound),
    the anytime shortfall and today's first-hit figures; with ``sweeps`` (a sweep's billed hours
    per landscape key, per kind of sweep), the per-landscape shares of each sweep's cost."""
    hours = sum(r.gpu_hours for r in rs)
    out = {
        "median_trials_to_stop": statistics.median(r.trials_to_stop for r in rs),
        "p95_trials_to_stop": _p95([r.trials_to_stop for r in rs]),
        "final_hit_rate": sum(r.final_hit for r in rs) / len(rs),
        "median_gpu_hours": statistics.median(r.gpu_hours for r in rs),
        "median_evaluations": statistics.median(r.evaluations for r in rs),
        "median_proposals": statistics.median(r.proposals for r in rs),
        "median_gpu_seconds": statistics.median(r.gpu_seconds for r in rs),
        "hit_rate": sum(r.hit for r in rs) / len(rs),
        "anytime_shortfall": {
            str(k): statistics.fmean(r.anytime_shortfall[i] for r in rs) for i, k in enumerate(ANYTIME)
        },
        "upper_bound_share": sum(r.upper_bound_gpu_hours for r in rs) / hours if hours else 0.0,
        "runs": len(rs),
    }
    for kind, by_key in (sweeps or {}).items():
        per: dict[tuple, list[float]] = {}
        for r in rs:
            per.setdefault((r.engine, r.model, r.hardware), []).append(r.gpu_hours)
        shares = [statistics.median(h) / by_key[k] for k, h in per.items() if by_key.get(k)]
        if shares:
            out[f"share_of_{kind}"] = {"median": statistics.median(shares), "p90": _p90(shares)}
    return out


def summarize(runs: Sequence[Run], lands: Sequence[Landscape] = (), context: Context | None = None) -> dict:
    """Per method: trials to stop (median, p95), final hit rate, billed GPU-hours, and today's
    first-hit figures; per landscape: medians; ``sweep``: the full grid's billed GPU-hours."""
    methods = list(dict.fromkeys(r.method for r in runs))
    out: dict = {
        "tolerance": TOLERANCE,
        "patience": PATIENCE,
        "tpe_proposals": TPE_PROPOSALS,
        "load_model": LOAD_MODEL,
        "failed_trial_cost": FAILED_TRIAL_COST,
        "noise": NOISE,
    }
    priors = {m: METHODS[m].prior.description for m in ("ours+prior", "ours+history") if m in methods}
    if priors:
        out["prior"] = priors
    sweeps: dict[str, dict[tuple, float]] = {}
    if lands:
        context = context or Context({}, None)
        keys = {(r.engine, r.model, r.hardware) for r in runs}
        for kind, prune in (("sweep", False), ("pruned_sweep", True)):
            sweeps[kind] = {
                land.key: sweep_seconds(land, context.weights(land), prune) / 3600 for land in lands if land.key in keys
            }
            out[kind] = {
                "median_gpu_hours": statistics.median(sweeps[kind].values()),
                "landscapes": len(sweeps[kind]),
                "upper_bound_share": _sweep_upper_bound(lands, keys, context, prune),
            }
    main = [r for r in runs if r.patience in (None, PATIENCE)]
    out["methods"] = {m: method_summary([r for r in main if r.method == m], sweeps) for m in methods}
    if "tpe" in methods:
        out["methods"]["tpe"]["note"] = TPE_STARTUP
    if any(r.patience is not None for r in runs):
        out["tuned_baselines"] = tune_patience(runs, sweeps)
    per: dict[str, dict] = {}
    for r in main:
        per.setdefault(f"{r.engine}/{r.model}/{r.hardware}", {}).setdefault(r.method, []).append(r)
    out["landscapes"] = {
        key: {
            m: {
                "median_trials_to_stop": statistics.median(r.trials_to_stop for r in rs),
                "final_hit_rate": sum(r.final_hit for r in rs) / len(rs),
                "median_gpu_hours": statistics.median(r.gpu_hours for r in rs),
                "pick": statistics.mode(r.pick for r in rs),
                "stop_reason": statistics.mode(r.stop_reason for r in rs),
            }
            for m, rs in by_method.items()
        }
        for key, by_method in sorted(per.items())
    }
    return out


def _sweep_upper_bound(lands: Sequence[Landscape], keys: set, context: Context, prune: bool) -> float:
    """The share of a sweep's billed hours spent on failed trials with a partial throughput."""
    total = bound = 0.0
    for land in lands:
        if land.key not in keys:
            continue
        total += sweep_seconds(land, context.weights(land), prune)
        order = land.space
        if prune:
            grid, history = Grid(), []
            while (c := grid.propose(land.space, history)) is not None:
                history.append(Observation(c, land.score(c, "strict")))
            order = [o.config for o in history]
        bound += sum(
            land.gpu_seconds(c)
            for c in order
            if land.score(c, "strict") is None and not math.isnan(land.points[c].throughput)
        )
    return bound / total if total else 0.0


def _group_family(r: Run | Landscape) -> str:
    return family(r.model)


def _group_gpu(r: Run | Landscape) -> str:
    return r.hardware


#: The cross-validation folds: one model family, or one GPU type, held out.
FOLDS = (("leave_one_family_out", _group_family), ("leave_one_gpu_out", _group_gpu))


def tune_patience(runs: Sequence[Run], sweeps: Mapping[str, Mapping[tuple, float]] | None = None) -> dict:
    """Each baseline that stops by patience at the patience chosen by ``ours``' rule (:func:`_choose`),
    in-sample and cross-validated as the slack is (chosen on the other folds' runs, every seed)."""
    by: dict[str, dict[int, list[Run]]] = {}
    for r in runs:
        if r.patience is not None:
            by.setdefault(r.method, {}).setdefault(r.patience, []).append(r)
    out: dict = {"patiences": list(PATIENCES), "hit_target": HIT_TARGET}
    for method, per in by.items():
        chosen = _choose(per)
        res: dict = {
            "in_sample": {**method_summary(per[chosen], sweeps), "patience": chosen},
            "per_patience": {
                str(p): {
                    "median_trials_to_stop": statistics.median(r.trials_to_stop for r in rs),
                    "final_hit_rate": sum(r.final_hit for r in rs) / len(rs),
                }
                for p, rs in per.items()
            },
        }
        for name, group in FOLDS:
            held: list[Run] = []
            folds = {}
            groups = sorted({group(r) for r in per[chosen]})
            if len(groups) < 2:
                continue  # nothing to train on with that group held out
            for g in groups:
                folds[g] = _choose({p: [r for r in rs if group(r) != g] for p, rs in per.items()})
                held += [r for r in per[folds[g]] if group(r) == g]
            res[name] = {**method_summary(held, sweeps), "chosen_per_fold": folds}
        out[method] = res
    return out


def ablations(lands: Sequence[Landscape], context: Context, method: str = "ours+physics") -> dict:
    """``method`` with each part of its start and stopping rule (:data:`PARTS`) removed in turn,
    in-sample at its shipped constants: trials to stop, final hit rate, billed GPU-hours."""
    out: dict = {"method": method}
    for part in ("none", *PARTS):
        runs = [
            run_one(
                method,
                land,
                0,
                physics=context.physics(land),
                slack=context.slack,
                weights_bytes=context.weights(land),
                without=frozenset() if part == "none" else frozenset({part}),
            )
            for land in lands
            if land.optimum("strict") is not None
        ]
        s = method_summary(runs)
        out[part] = {
            k: s[k] for k in ("median_trials_to_stop", "p95_trials_to_stop", "final_hit_rate", "median_gpu_hours")
        }
    return out


def ratios(summary: dict) -> dict[str, float]:
    """Trials to stop over TPE's (at patience 5 and at its tuned patience), billed GPU-hours over
    the sweep's and the pruned sweep's (ratios of medians), per ``ours*`` setting."""
    m = summary["methods"]
    tuned = summary.get("tuned_baselines", {}).get("tpe", {}).get("in_sample")
    out = {}
    for ours in [k for k in m if METHODS[k].optimizer == "structured"]:
        if "tpe" in m:
            out[f"{ours}_over_tpe_trials_to_stop"] = (
                m[ours]["median_trials_to_stop"] / m["tpe"]["median_trials_to_stop"]
            )
        if tuned:
            out[f"{ours}_over_tuned_tpe_trials_to_stop"] = (
                m[ours]["median_trials_to_stop"] / tuned["median_trials_to_stop"]
            )
        for kind in ("sweep", "pruned_sweep"):
            if kind in summary:
                out[f"{ours}_over_{kind}_gpu_hours"] = m[ours]["median_gpu_hours"] / summary[kind]["median_gpu_hours"]
    return out


def _choose(runs_by_value: Mapping, target: float = HIT_TARGET):
    """The value (a slack, a patience) with the fewest median trials to stop among those keeping
    the final hit rate at ``target``; else the one with the best hit rate; ties: the smallest."""

    def key(s: float) -> tuple:
        rs = runs_by_value[s]
        rate = sum(r.final_hit for r in rs) / len(rs)
        return (
            rate < target,
            -rate if rate < target else 0,
            statistics.median(r.trials_to_stop for r in rs),
            s,
        )

    return min(runs_by_value, key=key)


def cross_validate(
    lands: Sequence[Landscape], archs: Mapping[str, Architecture], workload: Workload, methods: Sequence[str]
) -> dict:
    """Every tuned constant chosen without the landscapes it is scored on.

    ``ours+prior``'s prior is leave-one-model-out among the training fold's landscapes only (the
    held-out family's other models and the held-out GPU stay out of it).
    Per fold (one model family, or one GPU type, held out): the memory model is calibrated on
    the other landscapes' outcomes, the engines' efficiencies (where a search starts) on their
    starts (:func:`~infpop_analysis.hpo.oom.calibrate_efficiency`), the stopping rule's slack
    chosen on their searches (:func:`_choose`), and the held-out landscapes searched with
    all three. ``in_sample`` chooses them on every landscape. Deterministic methods only (one
    run per landscape).
    """
    methods = [m for m in methods if METHODS[m].optimizer == "structured" or METHODS[m].physics]
    lands = [land for land in lands if land.optimum("strict") is not None]
    observed = outcomes(lands, archs, workload)

    cache: dict[tuple, Run] = {}

    def searches(
        cal: Calibration, slack: float, subset: Sequence[Landscape], method: str, pool: Sequence[Landscape]
    ) -> list[Run]:
        """One run per landscape (``ours+prior``'s prior learnt from ``pool``); folds that choose
        the same constants share their runs."""
        ctx = Context(archs, workload, cal, slack)
        source = METHODS[method].prior
        fold_only = source is not None and source.training_fold_only
        pool_key = frozenset(land.key for land in pool) if fold_only else None
        out = []
        for land in subset:
            key = (land.key, method, slack, cal, pool_key)
            if key not in cache:
                cache[key] = run_one(
                    method,
                    land,
                    0,
                    prior=source.learn(pool if fold_only else lands, land) if source is not None else None,
                    physics=ctx.physics(land),
                    slack=slack,
                    weights_bytes=ctx.weights(land),
                )
            out.append(cache[key])
        return out

    efficiencies: dict[tuple, Calibration] = {}

    def fold(train: list[Landscape], test: list[Landscape], method: str) -> tuple[list[Run], dict]:
        import numpy as np

        keys = {(land.model, land.hardware) for land in train}
        idx = np.array([(m, h) in keys for m, h in zip(observed.model, observed.hardware)])
        cal = calibrate(observed, idx) if idx.any() else DEFAULT_CALIBRATION
        memo = (frozenset(land.key for land in train), cal)
        if memo not in efficiencies:
            efficiencies[memo] = calibrate_efficiency(train, archs, workload, cal)
        cal = efficiencies[memo]
        slack = _choose({s: searches(cal, s, train, method, train) for s in SLACKS})
        chosen = {"slack": slack, "hf_efficiency": cal.hf_efficiency, "vllm_efficiency": cal.vllm_efficiency}
        return searches(cal, slack, test, method, train), chosen

    out: dict = {"slacks": list(SLACKS), "efficiencies": list(EFFICIENCIES), "hit_target": HIT_TARGET}
    for method in methods:
        res: dict = {}
        runs, chosen = fold(lands, lands, method)
        res["in_sample"] = {**method_summary(runs), **chosen}
        for name, group in FOLDS:
            held: list[Run] = []
            chosen = {}
            for g in sorted({group(land) for land in lands}):
                test = [land for land in lands if group(land) == g]
                train = [land for land in lands if group(land) != g]
                runs, chosen[g] = fold(train, test, method)
                held += runs
            res[name] = {**method_summary(held), "chosen_per_fold": chosen}
        out[method] = res
    return out


def _row(name: str, s: dict) -> str:
    shares = " ".join(
        f"{s[k]['median']:>6.2f} {s[k]['p90']:>5.2f}" if k in s else f"{'':>6} {'':>5}"
        for k in ("share_of_sweep", "share_of_pruned_sweep")
    )
    anytime = " ".join(f"{v:>5.3f}" for v in s["anytime_shortfall"].values())
    return (
        f"{name:20} {s['median_trials_to_stop']:>6g} {s['p95_trials_to_stop']:>5g} {s['final_hit_rate']:>6.3f} "
        f"{s['median_gpu_hours']:>6.2f} {shares} {anytime} {s['median_evaluations']:>6g} {s['hit_rate']:>6.3f}"
    )


def format_table(summary: dict) -> str:
    lines = [
        f"{'':20} {'trials to stop':>12} {'final':>6} {'GPU-h':>6} {'share of sweep':>12} {'of pruned sweep':>12}"
        f" {'shortfall after 1/2/3/5 trials':>23} {'first hit':>13}",
        f"{'method':20} {'median':>6} {'p95':>5} {'hit':>6} {'median':>6} {'median':>6} {'p90':>5} {'median':>6}"
        f" {'p90':>5} {'1':>5} {'2':>5} {'3':>5} {'5':>5} {'evals':>6} {'rate':>6}",
    ]
    for m, s in summary["methods"].items():
        label = f"{m} (patience {summary['patience']})" if METHODS[m].patience is not None else m
        lines.append(_row(label, s))
    tuned = summary.get("tuned_baselines")
    if tuned:
        for m, res in tuned.items():
            if isinstance(res, dict) and "in_sample" in res:
                lines.append(_row(f"{m} (tuned, {res['in_sample']['patience']})", res["in_sample"]))
    for kind in ("sweep", "pruned_sweep"):
        if kind in summary:
            lines.append(
                f"{kind:20} {'(grid)':>12} {'1.000':>6} {summary[kind]['median_gpu_hours']:>6.2f}"
                f"   (of which {summary[kind]['upper_bound_share']:.1%} partial-throughput failures: an upper bound)"
            )
    if "tpe" in summary["methods"]:
        lines.append(f"tpe (patience {summary['patience']}): {TPE_STARTUP}")
    if tuned:
        lines.append(
            f"tuned baselines: the patience among {tuned['patiences']} with the fewest median trials to stop at a final"
            f" hit rate >= {tuned['hit_target']} (the rule that tunes the slack); in-sample vs cross-validated:"
        )
        for m, res in tuned.items():
            if not isinstance(res, dict) or "in_sample" not in res:
                continue
            for key in [k for k in ("in_sample", "leave_one_family_out", "leave_one_gpu_out") if k in res]:
                s = res[key]
                chosen = s.get("chosen_per_fold", {"all": s.get("patience")})
                lines.append(
                    f"  {m:8} {key:22} trials to stop {s['median_trials_to_stop']:g} (p95 {s['p95_trials_to_stop']:g})"
                    f"  final hit {s['final_hit_rate']:.3f}  GPU-h {s['median_gpu_hours']:.2f}"
                    f"  patience {','.join(str(v) for v in sorted(set(chosen.values())))}"
                )
    abl = summary.get("ablations")
    if abl:
        lines.append(f"ablations of {abl['method']} (in-sample): each part of the start and stopping rule removed")
        for part, s in abl.items():
            if isinstance(s, dict):
                name = "the full rule" if part == "none" else f"without {part}"
                lines.append(
                    f"  {name:28} trials to stop {s['median_trials_to_stop']:g} (p95 {s['p95_trials_to_stop']:g})"
                    f"  final hit {s['final_hit_rate']:.3f}  GPU-h {s['median_gpu_hours']:.2f}"
                )
    for name, value in summary.get("ratios", {}).items():
        lines.append(f"{name}: {value:.3f}")
    oom = summary.get("oom_predictor")
    if oom:
        lines.append(f"OOM predictor on {oom['outcomes']} published outcomes ({oom['ooms']} OOM), 'predicted to fail':")
        for key in ("shipped", "in_sample", "leave_one_family_out", "leave_one_gpu_out"):
            lines.append(f"  {key:22} precision {oom[key]['precision']:.3f}  recall {oom[key]['recall']:.3f}")
    twin = summary.get("twin_top_k")
    if twin:
        shares = ", ".join(f"top {k.split('_')[1]}: {v:.2f}" for k, v in twin.items() if k.startswith("top_"))
        lines.append(
            f"the other GPU's best configurations (predicted to fit) hold one within {TOLERANCE:.0%} of the optimum"
            f" on {twin['landscapes']} landscapes: {shares}"
        )
        for key, by in twin.items():
            if key.startswith("stop_when_top_"):
                k = key.split("_")[3]
                said = "; ".join(
                    f"within {float(a):.0%}: {r['stops']} stops, {r['misses']} miss" for a, r in by.items()
                )
                lines.append(f"  stopping after its top {k} where they keep its shape here: {said}")
    cv = summary.get("cross_validation")
    if cv:
        lines.append(
            "tuned constants (memory model, engine efficiencies, stopping slack): in-sample vs cross-validated"
        )
        for m, res in cv.items():
            if not isinstance(res, dict) or "in_sample" not in res:
                continue
            for key in ("in_sample", "leave_one_family_out", "leave_one_gpu_out"):
                s = res[key]
                lines.append(
                    f"  {m:13} {key:22} trials to stop {s['median_trials_to_stop']:g} (p95 {s['p95_trials_to_stop']:g})"
                    f"  final hit {s['final_hit_rate']:.3f}  GPU-h {s['median_gpu_hours']:.2f}"
                )
            ins = res["in_sample"]
            lines.append(
                f"  {m:13} in-sample choice: slack {ins['slack']:g}, HF efficiency {ins['hf_efficiency']:g},"
                f" vLLM efficiency {ins['vllm_efficiency']:g}"
            )
    for method, how in summary.get("prior", {}).items():
        lines.append(f"{method} prior: {how}")
    lines += [f"load model: {summary['load_model']}", f"failed-trial cost: {summary['failed_trial_cost']}"]
    lines.append(f"noise: {summary['noise']}")
    return "\n".join(lines)


def write(summary: dict, runs: Sequence[Run], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "hpo_benchmark.json"
    tuned = {
        m: res["in_sample"]["patience"]
        for m, res in summary.get("tuned_baselines", {}).items()
        if isinstance(res, dict)
    }
    # A baseline's runs at the patience of the table and at its tuned one; the others are prefixes.
    kept = [r for r in runs if r.patience in (None, PATIENCE, tuned.get(r.method))]
    path.write_text(json.dumps({**summary, "runs": [asdict(r) for r in kept]}, indent=1))
    return path
