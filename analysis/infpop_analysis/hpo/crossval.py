"""Every tuned constant scored on landscapes it was not chosen on: folds and refits.

A constant (the stopping rule's slack, a baseline's patience, the memory model's and the
engines' efficiencies) is chosen by one rule (:func:`choose`: the fewest median trials to stop
keeping the final hit rate at :data:`HIT_TARGET`) on the landscapes of all folds but one, and
scored on the held-out fold: one model family, or one GPU type (:data:`FOLDS`). ``in_sample``
chooses it on every landscape.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from infpop.physics import DEFAULT_CALIBRATION, Architecture, Calibration, Workload

from infpop_analysis.hpo.landscape import Landscape
from infpop_analysis.hpo.methods import METHODS
from infpop_analysis.hpo.oom import EFFICIENCIES, calibrate, calibrate_efficiency, family, outcomes
from infpop_analysis.hpo.runs import Context, Run, run_one
from infpop_analysis.hpo.stopping import PATIENCES
from infpop_analysis.hpo.summary import (
    ChosenSummary,
    CrossValidation,
    Tuned,
    TunedBaselines,
    brief,
    method_summary,
)

#: Slack values the stopping rule may use; cross-validation chooses among them per fold.
SLACKS: tuple[float, ...] = (0.0, 0.05, 0.1)
#: Final hit rate a tuned setting must keep while it minimises trials.
HIT_TARGET = 0.95


def _group_family(r: Run | Landscape) -> str:
    return family(r.model)


def _group_gpu(r: Run | Landscape) -> str:
    return r.hardware


#: The cross-validation folds: one model family, or one GPU type, held out.
FOLDS = (("leave_one_family_out", _group_family), ("leave_one_gpu_out", _group_gpu))


def tune_patience(runs: Sequence[Run], sweeps: Mapping[str, Mapping[tuple, float]] | None = None) -> TunedBaselines:
    """Each baseline that stops by patience at the patience chosen by ``ours``' rule (:func:`choose`),
    in-sample and cross-validated as the slack is (chosen on the other folds' runs, every seed)."""
    by: dict[str, dict[int, list[Run]]] = {}
    for r in runs:
        if r.patience is not None:
            by.setdefault(r.method, {}).setdefault(r.patience, []).append(r)
    out = TunedBaselines(list(PATIENCES), HIT_TARGET, {})
    for method, per in by.items():
        chosen = choose(per)
        res: dict = {
            "in_sample": method_summary(per[chosen], sweeps, ChosenSummary, patience=chosen),
            "per_patience": {str(p): brief(rs) for p, rs in per.items()},
        }
        for name, group in FOLDS:
            held: list[Run] = []
            folds = {}
            groups = sorted({group(r) for r in per[chosen]})
            if len(groups) < 2:
                continue  # nothing to train on with that group held out
            for g in groups:
                folds[g] = choose({p: [r for r in rs if group(r) != g] for p, rs in per.items()})
                held += [r for r in per[folds[g]] if group(r) == g]
            res[name] = method_summary(held, sweeps, ChosenSummary, chosen_per_fold=folds)
        out.methods[method] = Tuned(**res)
    return out


def choose(runs_by_value: Mapping, target: float = HIT_TARGET):
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
) -> CrossValidation:
    """Every tuned constant chosen without the landscapes it is scored on.

    ``ours+prior``'s prior is leave-one-model-out among the training fold's landscapes only (the
    held-out family's other models and the held-out GPU stay out of it).
    Per fold (one model family, or one GPU type, held out): the memory model is calibrated on
    the other landscapes' outcomes, the engines' efficiencies (where a search starts) on their
    starts (:func:`~infpop_analysis.hpo.oom.calibrate_efficiency`), the stopping rule's slack
    chosen on their searches (:func:`choose`), and the held-out landscapes searched with
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
        slack = choose({s: searches(cal, s, train, method, train) for s in SLACKS})
        chosen = {"slack": slack, "hf_efficiency": cal.hf_efficiency, "vllm_efficiency": cal.vllm_efficiency}
        return searches(cal, slack, test, method, train), chosen

    out = CrossValidation(list(SLACKS), list(EFFICIENCIES), HIT_TARGET, {})
    for method in methods:
        res: dict = {}
        runs, chosen = fold(lands, lands, method)
        res["in_sample"] = method_summary(runs, kind=ChosenSummary, **chosen)
        for name, group in FOLDS:
            held: list[Run] = []
            chosen = {}
            for g in sorted({group(land) for land in lands}):
                test = [land for land in lands if group(land) == g]
                train = [land for land in lands if group(land) != g]
                runs, chosen[g] = fold(train, test, method)
                held += runs
            res[name] = method_summary(held, kind=ChosenSummary, chosen_per_fold=chosen)
        out.methods[method] = Tuned(**res)
    return out
