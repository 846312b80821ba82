"""What each optimizer costs until it stops by itself, and how good its pick is.

Every method searches every published landscape (engine, model, hardware) once per seed, with
failures scoring worst, and runs until its own stopping rule ends it (:mod:`.stopping`):
``ours*`` when its rule finds no untried configuration that could beat the incumbent, the
hill-climbs when no neighbour of the incumbent is left, the other baselines after ``patience``
consecutive trials without improvement (TPE also at the study's 100 proposals). The baselines'
patience is tuned by the rule that tunes ``ours``' slack (:func:`~.crossval.tune_patience`); at the common
``PATIENCE`` of 5, TPE mostly stops inside hyperopt's 20 random start-up proposals.
Per run: ``trials_to_stop`` (distinct configurations evaluated: each is a trial), whether the
final pick is within ``tolerance`` (1 %) of the landscape's best successful throughput
(``final_hit``), and the GPU-hours as a cluster bills them: every trial's GPU-seconds plus one
model load per stretch of consecutive trials at one GPU count (the live search keeps the model
loaded across the batch sizes it tries at one GPU count; a sweep loads once per GPU count).
The published data records no load times, so loads follow :data:`~.cost.LOAD_MODEL`, stated in the
output. ``sweep`` is the full grid at one load per GPU count, ``pruned_sweep`` the same skipping
batches above a failure at one GPU count (as infpop's sweep runs); each method's cost is also
given per landscape as a share of either (median and p90 of the shares), beside the ratio of
medians. A failed trial with a partial throughput is billed an upper bound
(:data:`~.cost.FAILED_TRIAL_COST`); ``upper_bound_share`` says how much of the billed hours that is.
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
``slack``) are scored in-sample and cross-validated (:func:`~.crossval.cross_validate`).
Where each part lives: the runs in :mod:`.runs`, what they cost in :mod:`.cost`, the tuned
constants in :mod:`.crossval`, the typed summaries in :mod:`.summary`, the table and the JSON
in :mod:`.benchmark_output`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import fields

from infpop_analysis.hpo.cost import FAILED_TRIAL_COST, LOAD_MODEL, sweep_seconds, sweep_upper_bound
from infpop_analysis.hpo.crossval import tune_patience
from infpop_analysis.hpo.landscape import Landscape
from infpop_analysis.hpo.methods import METHODS
from infpop_analysis.hpo.prior import twin_prior
from infpop_analysis.hpo.runs import TPE_PROPOSALS, Context, Run, run_one
from infpop_analysis.hpo.stopping import PARTS, PATIENCE, TOLERANCE
from infpop_analysis.hpo.summary import (
    NOISE,
    TPE_STARTUP,
    Ablations,
    Agreement,
    BenchmarkSummary,
    LandscapeSummary,
    Outline,
    SweepSummary,
    TwinTopK,
    method_summary,
)

#: How closely the other GPU's best configurations, measured here, must keep its shape for a
#: search to stop after them (:func:`twin_top_k`): the agreement a stopping rule could trust.
AGREEMENTS: tuple[float, ...] = (0.01, 0.05)


def twin_top_k(
    lands: Sequence[Landscape], context: Context, ks: Sequence[int] = (1, 3), agreements: Sequence[float] = AGREEMENTS
) -> TwinTopK:
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
    return TwinTopK(
        landscapes=n,
        top={str(k): hits[k] / n if n else math.nan for k in ks},
        k=max(ks),
        stop_when_top_k_agree={f"{a:g}": Agreement(s, m) for a, (s, m) in stops.items()},
    )


def summarize(runs: Sequence[Run], lands: Sequence[Landscape] = (), context: Context | None = None) -> BenchmarkSummary:
    """Per method: trials to stop (median, p95), final hit rate, billed GPU-hours, and the
    first-hit figures; per landscape: medians; ``sweep``: the full grid's billed GPU-hours;
    the baselines at their tuned patience; the ratios of ``ours*`` to TPE and the sweeps."""
    methods = list(dict.fromkeys(r.method for r in runs))
    sweeps: dict[str, dict[tuple, float]] = {}
    sweep_summaries: dict[str, SweepSummary] = {}
    if lands:
        context = context or Context({}, None)
        keys = {(r.engine, r.model, r.hardware) for r in runs}
        kept = [land for land in lands if land.key in keys]
        for kind, prune in (("sweep", False), ("pruned_sweep", True)):
            sweeps[kind] = {land.key: sweep_seconds(land, context.weights(land), prune) / 3600 for land in kept}
            sweep_summaries[kind] = SweepSummary(
                median_gpu_hours=statistics.median(sweeps[kind].values()),
                landscapes=len(sweeps[kind]),
                upper_bound_share=sweep_upper_bound(kept, context.weights, prune),
            )
    main = [r for r in runs if r.patience in (None, PATIENCE)]
    per: dict[str, dict] = {}
    for r in main:
        per.setdefault(f"{r.engine}/{r.model}/{r.hardware}", {}).setdefault(r.method, []).append(r)
    summary = BenchmarkSummary(
        tolerance=TOLERANCE,
        patience=PATIENCE,
        tpe_proposals=TPE_PROPOSALS,
        load_model=LOAD_MODEL,
        failed_trial_cost=FAILED_TRIAL_COST,
        noise=NOISE,
        prior={m: source.description for m in methods if (source := METHODS[m].prior) is not None} or None,
        **sweep_summaries,
        methods={
            m: method_summary(
                [r for r in main if r.method == m], sweeps, note=TPE_STARTUP if METHODS[m].optimizer == "tpe" else None
            )
            for m in methods
        },
        tuned_baselines=tune_patience(runs, sweeps) if any(r.patience is not None for r in runs) else None,
        landscapes={
            key: {
                m: LandscapeSummary(
                    median_trials_to_stop=statistics.median(r.trials_to_stop for r in rs),
                    final_hit_rate=sum(r.final_hit for r in rs) / len(rs),
                    median_gpu_hours=statistics.median(r.gpu_hours for r in rs),
                    pick=statistics.mode(r.pick for r in rs),
                    stop_reason=statistics.mode(r.stop_reason for r in rs),
                )
                for m, rs in by_method.items()
            }
            for key, by_method in sorted(per.items())
        },
    )
    summary.ratios = ratios(summary)
    return summary


def ablations(lands: Sequence[Landscape], context: Context, method: str = "ours+physics") -> Ablations:
    """``method`` with each part of its start and stopping rule (:data:`PARTS`) removed in turn,
    in-sample at its shipped constants: trials to stop, final hit rate, billed GPU-hours."""
    parts = {}
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
        parts[part] = Outline(**{f.name: getattr(s, f.name) for f in fields(Outline)})
    return Ablations(method, parts)


def ratios(summary: BenchmarkSummary) -> dict[str, float]:
    """Trials to stop over TPE's (at patience 5 and at its tuned patience), billed GPU-hours over
    the sweep's and the pruned sweep's (ratios of medians), per ``ours*`` setting."""
    m = summary.methods
    tuned = summary.tuned_baselines.methods.get("tpe") if summary.tuned_baselines else None
    sweeps = {"sweep": summary.sweep, "pruned_sweep": summary.pruned_sweep}
    out = {}
    for ours in [k for k in m if METHODS[k].optimizer == "structured"]:
        if "tpe" in m:
            out[f"{ours}_over_tpe_trials_to_stop"] = m[ours].median_trials_to_stop / m["tpe"].median_trials_to_stop
        if tuned:
            out[f"{ours}_over_tuned_tpe_trials_to_stop"] = (
                m[ours].median_trials_to_stop / tuned.in_sample.median_trials_to_stop
            )
        for kind, sweep in sweeps.items():
            if sweep is not None:
                out[f"{ours}_over_{kind}_gpu_hours"] = m[ours].median_gpu_hours / sweep.median_gpu_hours
    return out
