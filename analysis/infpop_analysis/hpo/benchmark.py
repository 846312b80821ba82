"""What each optimizer costs until it stops by itself, and how good its pick is.

Every method searches every published landscape (engine, model, hardware) once per seed, with
failures scoring worst, and runs until its own stopping rule ends it (:mod:`.stopping`):
``ours*`` when no untried configuration can plausibly beat the incumbent, the baselines after
``PATIENCE`` consecutive trials without improvement (TPE also at the study's 100 proposals).
Per run: ``trials_to_stop`` (distinct configurations evaluated: each is a trial), whether the
final pick is within ``tolerance`` (1 %) of the landscape's best successful throughput
(``final_hit``), and the GPU-hours as a cluster bills them: every trial's GPU-seconds plus one
model load per stretch of consecutive trials at one GPU count (the live search keeps the model
loaded across the batch sizes it tries at one GPU count; a sweep loads once per GPU count).
The published data records no load times, so loads follow :data:`LOAD_MODEL`, stated in the
output. ``sweep`` is the full grid at one load per GPU count: what a sweep costs.

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
from infpop_analysis.hpo.oom import EFFICIENCIES, calibrate, calibrate_efficiency, family, outcomes, physics_for
from infpop_analysis.hpo.optimizers import DETERMINISTIC, FAILURE_LOSS, METHODS, PRIOR_METHODS, TPE, Observation, make
from infpop_analysis.hpo.prior import LEAVE_MODEL_OUT, Prior, leave_model_out
from infpop_analysis.hpo.stopping import PATIENCE, TOLERANCE, Physics, no_improvement

#: TPE's budget of proposals, as in the study.
TPE_PROPOSALS = 100
#: Slack values the stopping rule may use; cross-validation chooses among them per fold.
SLACKS: tuple[float, ...] = (0.0, 0.05, 0.1)
#: Final hit rate a tuned setting must keep while it minimises trials.
HIT_TARGET = 0.95

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
HISTORY = "ours+history: physics, plus a prior from the same (engine, model) on the other GPU (none: physics only)"


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


def load_seconds(land: Landscape, n_gpus: int, weights_bytes: float | None) -> float:
    """Billed GPU-seconds of one model load on ``n_gpus`` (:data:`LOAD_MODEL`)."""
    start = LOAD_START_S.get(land.engine, LOAD_START_S["hf"])
    return n_gpus * (start + (weights_bytes or 0.0) / (LOAD_BANDWIDTH_GBS * 1e9))


def billed_seconds(land: Landscape, order: Sequence[Config], weights_bytes: float | None) -> tuple[float, int]:
    """GPU-seconds of the trials in ``order`` plus a load per stretch at one GPU count."""
    loads = [c.n_gpus for i, c in enumerate(order) if i == 0 or order[i - 1].n_gpus != c.n_gpus]
    total = sum(land.gpu_seconds(c) for c in order) + sum(load_seconds(land, g, weights_bytes) for g in loads)
    return total, len(loads)


def sweep_seconds(land: Landscape, weights_bytes: float | None) -> float:
    """A sweep of the whole grid: every trial, one load per GPU count."""
    return billed_seconds(land, land.space, weights_bytes)[0]


def run_one(
    method: str,
    land: Landscape,
    seed: int,
    tolerance: float = TOLERANCE,
    prior: Prior | None = None,
    physics: Physics | None = None,
    slack: float | None = None,
    weights_bytes: float | None = None,
) -> Run:
    """One search of ``land`` by ``method``, until its stopping rule ends it."""
    optimum = land.optimum("strict")
    if optimum is None:
        raise ValueError(f"landscape {land.key} has no successful trial")
    target = optimum * (1 - tolerance)
    space = land.space
    history: list[Observation] = []
    calls: list[Config] = []
    reason = ""

    def evaluate(config: Config) -> float | None:
        value = land.score(config, "strict")
        history.append(Observation(config, value))
        return value

    def stalled() -> bool:
        return no_improvement([o.value for o in history], PATIENCE, tolerance)

    if method == "tpe":
        tpe = TPE(tuple(sorted({c.batch_size for c in space})), tuple(sorted({c.n_gpus for c in space})), seed=seed)
        known: dict[Config, float | None] = {}

        def loss(config: Config) -> float:
            calls.append(config)
            if config not in land.points:
                return FAILURE_LOSS
            if config not in known:
                known[config] = evaluate(config)
            value = known[config]
            return FAILURE_LOSS if value is None else -value

        tpe.minimize(loss, TPE_PROPOSALS, stop=stalled)
        reason = f"{PATIENCE} trials without improvement" if stalled() else f"the study's {TPE_PROPOSALS} proposals"
    else:
        if method in PRIOR_METHODS and prior is None:
            optimizer = make("ours+physics", seed, [], [], physics=physics, slack=slack)
        else:
            optimizer = make(method, seed, [], [], prior=prior, physics=physics, slack=slack)
        baseline = method in ("random", "grid")
        while True:
            if baseline and stalled():
                reason = f"{PATIENCE} trials without improvement"
                break
            config = optimizer.propose(space, history)
            if config is None:
                reason = getattr(optimizer, "stop_reason", lambda *_: None)(space, history) or "space exhausted"
                break
            calls.append(config)
            evaluate(config)
    ok = [o for o in history if o.value is not None]
    pick = max(ok, key=lambda o: o.value, default=None)
    first = next((i for i, o in enumerate(history) if o.value is not None and o.value >= target), None)
    to_hit = history if first is None else history[: first + 1]
    billed, loads = billed_seconds(land, [o.config for o in history], weights_bytes)
    return Run(
        method,
        *land.key,
        seed=seed,
        hit=first is not None,
        evaluations=len(to_hit),
        proposals=len(calls),
        gpu_seconds=sum(land.gpu_seconds(o.config) for o in to_hit),
        trials_to_stop=len(history),
        stop_reason=reason,
        pick=str(pick.config) if pick else "",
        pick_throughput=pick.value if pick else None,
        final_hit=pick is not None and pick.value >= target,
        gpu_hours=billed / 3600,
        loads=loads,
        trace=[str(o.config) for o in history],
    )


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


def twin_prior(lands: Sequence[Landscape], land: Landscape) -> Prior | None:
    """The same (engine, model) on another GPU, as a prior for ``land``; None when not measured."""
    twins = [o for o in lands if (o.engine, o.model) == (land.engine, land.model) and o.hardware != land.hardware]
    prior = Prior.learn(twins, land.engine, land.hardware, provenance="the same model on the other GPU")
    return prior if prior.surfaces else None


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
    once and the run is copied per seed, so every method has the same number of runs)."""
    context = context or Context({}, None)
    runs = []
    for land in lands:
        if land.optimum("strict") is None:
            continue
        physics = context.physics(land)
        for m in methods:
            prior = (
                leave_model_out(lands, land)
                if m == "ours+prior"
                else twin_prior(lands, land)
                if m == "ours+history"
                else None
            )
            run: Run | None = None
            for s in seeds:
                if run is None or m not in DETERMINISTIC:
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


def method_summary(rs: Sequence[Run]) -> dict:
    return {
        "median_trials_to_stop": statistics.median(r.trials_to_stop for r in rs),
        "p95_trials_to_stop": _p95([r.trials_to_stop for r in rs]),
        "final_hit_rate": sum(r.final_hit for r in rs) / len(rs),
        "median_gpu_hours": statistics.median(r.gpu_hours for r in rs),
        "median_evaluations": statistics.median(r.evaluations for r in rs),
        "median_proposals": statistics.median(r.proposals for r in rs),
        "median_gpu_seconds": statistics.median(r.gpu_seconds for r in rs),
        "hit_rate": sum(r.hit for r in rs) / len(rs),
        "runs": len(rs),
    }


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
    named = (("ours+prior", f"physics, plus a prior by {LEAVE_MODEL_OUT}"), ("ours+history", HISTORY))
    priors = {m: how for m, how in named if m in methods}
    if priors:
        out["prior"] = priors
    out["methods"] = {m: method_summary([r for r in runs if r.method == m]) for m in methods}
    if lands:
        context = context or Context({}, None)
        keys = {(r.engine, r.model, r.hardware) for r in runs}
        hours = [sweep_seconds(land, context.weights(land)) / 3600 for land in lands if land.key in keys]
        out["sweep"] = {"median_gpu_hours": statistics.median(hours), "landscapes": len(hours)}
    per: dict[str, dict] = {}
    for r in runs:
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


def ratios(summary: dict) -> dict[str, float]:
    """Trials to stop over TPE's, billed GPU-hours over the sweep's, per ``ours*`` setting."""
    m = summary["methods"]
    out = {}
    for ours in [k for k in m if k.startswith("ours")]:
        if "tpe" in m:
            out[f"{ours}_over_tpe_trials_to_stop"] = (
                m[ours]["median_trials_to_stop"] / m["tpe"]["median_trials_to_stop"]
            )
        if "sweep" in summary:
            out[f"{ours}_over_sweep_gpu_hours"] = m[ours]["median_gpu_hours"] / summary["sweep"]["median_gpu_hours"]
    return out


def _choose_slack(runs_by_slack: Mapping[float, Sequence[Run]]) -> float:
    """The slack with the fewest median trials to stop among those keeping the final hit rate at
    :data:`HIT_TARGET`; else the one with the best hit rate."""

    def key(s: float) -> tuple:
        rs = runs_by_slack[s]
        rate = sum(r.final_hit for r in rs) / len(rs)
        return (
            rate < HIT_TARGET,
            -rate if rate < HIT_TARGET else 0,
            statistics.median(r.trials_to_stop for r in rs),
            s,
        )

    return min(runs_by_slack, key=key)


def cross_validate(
    lands: Sequence[Landscape], archs: Mapping[str, Architecture], workload: Workload, methods: Sequence[str]
) -> dict:
    """Every tuned constant chosen without the landscapes it is scored on.

    ``ours+prior``'s prior is leave-one-model-out in every fold, as in :func:`benchmark`.
    Per fold (one model family, or one GPU type, held out): the memory model is calibrated on
    the other landscapes' outcomes, the engines' efficiencies (where a search starts) on their
    starts (:func:`~infpop_analysis.hpo.oom.calibrate_efficiency`), the stopping rule's slack
    chosen on their searches (:func:`_choose_slack`), and the held-out landscapes searched with
    all three. ``in_sample`` chooses them on every landscape. Deterministic methods only (one
    run per landscape).
    """
    methods = [m for m in methods if m.startswith("ours")]
    lands = [land for land in lands if land.optimum("strict") is not None]
    observed = outcomes(lands, archs, workload)

    cache: dict[tuple, Run] = {}

    def searches(cal: Calibration, slack: float, subset: Sequence[Landscape], method: str) -> list[Run]:
        """One run per landscape; folds that choose the same constants share their runs."""
        ctx = Context(archs, workload, cal, slack)
        out = []
        for land in subset:
            key = (land.key, method, slack, cal)
            if key not in cache:
                cache[key] = run_one(
                    method,
                    land,
                    0,
                    prior=twin_prior(lands, land)
                    if method == "ours+history"
                    else leave_model_out(lands, land)
                    if method == "ours+prior"
                    else None,
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
        slack = _choose_slack({s: searches(cal, s, train, method) for s in SLACKS})
        chosen = {"slack": slack, "hf_efficiency": cal.hf_efficiency, "vllm_efficiency": cal.vllm_efficiency}
        return searches(cal, slack, test, method), chosen

    out: dict = {"slacks": list(SLACKS), "efficiencies": list(EFFICIENCIES), "hit_target": HIT_TARGET}
    for method in methods:
        res: dict = {}
        runs, chosen = fold(lands, lands, method)
        res["in_sample"] = {**method_summary(runs), **chosen}
        for name, group in (
            ("leave_one_family_out", lambda land: family(land.model)),
            ("leave_one_gpu_out", lambda land: land.hardware),
        ):
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


def format_table(summary: dict) -> str:
    head = f"{'method':13} {'trials to stop':>15} {'p95':>5} {'final hit':>10} {'GPU-h':>8} {'first-hit evals':>16} {'hit rate':>9}"
    lines = [head]
    for m, s in summary["methods"].items():
        lines.append(
            f"{m:13} {s['median_trials_to_stop']:>15g} {s['p95_trials_to_stop']:>5g} {s['final_hit_rate']:>10.3f} "
            f"{s['median_gpu_hours']:>8.2f} {s['median_evaluations']:>16g} {s['hit_rate']:>9.3f}"
        )
    if "sweep" in summary:
        lines.append(
            f"{'sweep':13} {'(full grid)':>15} {'':>5} {'1.000':>10} {summary['sweep']['median_gpu_hours']:>8.2f}"
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
    path.write_text(json.dumps({**summary, "runs": [asdict(r) for r in runs]}, indent=1))
    return path
