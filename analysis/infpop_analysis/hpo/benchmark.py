"""How many GPU jobs does each optimizer need to find a landscape's optimum?

Every method searches every published landscape (engine, model, hardware) once per seed, with
failures scoring worst. A run *hits* when it has evaluated a configuration within ``tolerance``
(1 %) of the landscape's best successful throughput. Its cost is the number of distinct
configurations evaluated up to and including the hit (each is a trial job; a repeated proposal
is answered from the result already on disk) and their GPU-seconds
(:meth:`Landscape.gpu_seconds`). ``proposals`` also counts repeats: what the search costs when
every objective call is a job, as with hyperopt's fmin (only TPE repeats itself). A run that
never hits is counted at what it spent: TPE gets the study's 100 proposals, the other methods run
until they have tried the whole grid.

``ours+prior`` searches each landscape with a prior learned leave-one-model-out
(:func:`~infpop_analysis.hpo.prior.leave_model_out`): from the engine's landscapes of every other
model, so neither the landscape searched nor its twin on the other GPU informs the search.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from infpop_analysis.hpo.landscape import Config, Landscape
from infpop_analysis.hpo.optimizers import DETERMINISTIC, FAILURE_LOSS, METHODS, TPE, Observation, make
from infpop_analysis.hpo.prior import LEAVE_MODEL_OUT, Prior, leave_model_out

#: TPE's budget of proposals, as in the study.
TPE_PROPOSALS = 100
TOLERANCE = 0.01

FAILED_TRIAL_COST = (
    "a failed trial with a recorded partial throughput costs the whole workload at that rate (an "
    "upper bound: prompts run shortest first, so OOM strikes late); one without costs a single "
    "batch at the best successful rate of its GPU count; model loading is excluded throughout, "
    "as in throughput"
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
    #: Objective calls up to the hit, repeats included: what hyperopt's fmin runs when every call is a job.
    proposals: int
    gpu_seconds: float
    trace: list[str]


def run_one(method: str, land: Landscape, seed: int, tolerance: float = TOLERANCE, prior: Prior | None = None) -> Run:
    """One search of ``land`` by ``method`` (``ours+prior`` searches with ``prior``); stops at the first hit."""
    optimum = land.optimum("strict")
    if optimum is None:
        raise ValueError(f"landscape {land.key} has no successful trial")
    target = optimum * (1 - tolerance)
    space = land.space
    history: list[Observation] = []
    calls: list[Config] = []

    def evaluate(config: Config) -> float | None:
        value = land.score(config, "strict")
        history.append(Observation(config, value))
        return value

    def hit() -> bool:
        return any(o.value is not None and o.value >= target for o in history)

    if method == "tpe":
        tpe = TPE(tuple(sorted({c.batch_size for c in space})), tuple(sorted({c.n_gpus for c in space})), seed=seed)
        known: dict[Config, float | None] = {}

        def loss(config: Config) -> float:
            if not hit():
                calls.append(config)
            if config not in land.points:
                return FAILURE_LOSS
            if config not in known:
                known[config] = evaluate(config)
            value = known[config]
            return FAILURE_LOSS if value is None else -value

        tpe.minimize(loss, TPE_PROPOSALS, stop=hit)
    else:
        optimizer = make(method, seed, [], [], prior=prior)
        while not hit() and (config := optimizer.propose(space, history)) is not None:
            calls.append(config)
            evaluate(config)
    reached = hit()
    spent = history
    if reached:
        first = next(i for i, o in enumerate(history) if o.value is not None and o.value >= target)
        spent = history[: first + 1]
    return Run(
        method,
        *land.key,
        seed=seed,
        hit=reached,
        evaluations=len(spent),
        proposals=len(calls),
        gpu_seconds=sum(land.gpu_seconds(o.config) for o in spent),
        trace=[str(o.config) for o in spent],
    )


def benchmark(
    lands: Sequence[Landscape], methods: Sequence[str] = METHODS, seeds: Sequence[int] = range(10)
) -> list[Run]:
    """Every method on every landscape with a success, once per seed (deterministic methods too,
    so each method has the same number of runs; they search once and the run is copied per seed).

    ``ours+prior`` gets, per landscape, the prior of :func:`leave_model_out` over ``lands``.
    """
    runs = []
    for land in lands:
        if land.optimum("strict") is None:
            continue
        for m in methods:
            prior = leave_model_out(lands, land) if m == "ours+prior" else None
            run: Run | None = None
            for s in seeds:
                if run is None or m not in DETERMINISTIC:
                    run = run_one(m, land, s, prior=prior)
                runs.append(replace(run, seed=s))
    return runs


def summarize(runs: Sequence[Run]) -> dict:
    """Per method: median evaluations and GPU-seconds over all runs, hit rate; per landscape: medians."""
    methods = list(dict.fromkeys(r.method for r in runs))
    out: dict = {"tolerance": TOLERANCE, "tpe_proposals": TPE_PROPOSALS, "failed_trial_cost": FAILED_TRIAL_COST}
    if "ours+prior" in methods:
        out["prior"] = {"ours+prior": LEAVE_MODEL_OUT}
    out["methods"] = {
        m: {
            "median_evaluations": statistics.median(r.evaluations for r in rs),
            "median_proposals": statistics.median(r.proposals for r in rs),
            "median_gpu_seconds": statistics.median(r.gpu_seconds for r in rs),
            "hit_rate": sum(r.hit for r in rs) / len(rs),
            "runs": len(rs),
        }
        for m in methods
        for rs in [[r for r in runs if r.method == m]]
    }
    per: dict[str, dict] = {}
    for r in runs:
        per.setdefault(f"{r.engine}/{r.model}/{r.hardware}", {}).setdefault(r.method, []).append(r)
    out["landscapes"] = {
        key: {
            m: {
                "median_evaluations": statistics.median(r.evaluations for r in rs),
                "median_gpu_seconds": statistics.median(r.gpu_seconds for r in rs),
                "hit_rate": sum(r.hit for r in rs) / len(rs),
            }
            for m, rs in by_method.items()
        }
        for key, by_method in sorted(per.items())
    }
    return out


def ratios(summary: dict) -> dict[str, float]:
    """The issue's targets as ratios, for ``ours`` and ``ours+prior``: evaluations (and proposals)
    over TPE's, GPU-seconds over grid's."""
    m = summary["methods"]
    out = {}
    for ours in ("ours", "ours+prior"):
        if ours in m and "tpe" in m:
            out[f"{ours}_over_tpe_evaluations"] = m[ours]["median_evaluations"] / m["tpe"]["median_evaluations"]
            out[f"{ours}_over_tpe_proposals"] = m[ours]["median_proposals"] / m["tpe"]["median_proposals"]
        if ours in m and "grid" in m:
            out[f"{ours}_over_grid_gpu_seconds"] = m[ours]["median_gpu_seconds"] / m["grid"]["median_gpu_seconds"]
    return out


def format_table(summary: dict) -> str:
    lines = [f"{'method':10} {'median evals':>13} {'(proposals)':>12} {'median GPU-s':>13} {'hit rate':>9}"]
    for m, s in summary["methods"].items():
        lines.append(
            f"{m:10} {s['median_evaluations']:>13g} {s['median_proposals']:>12g} {s['median_gpu_seconds']:>13.0f} {s['hit_rate']:>9.3f}"
        )
    for name, value in summary.get("ratios", {}).items():
        lines.append(f"{name}: {value:.3f}")
    for method, how in summary.get("prior", {}).items():
        lines.append(f"{method} prior: {how}")
    lines.append(f"failed-trial cost: {summary['failed_trial_cost']}")
    return "\n".join(lines)


def write(summary: dict, runs: Sequence[Run], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "hpo_benchmark.json"
    path.write_text(json.dumps({**summary, "runs": [asdict(r) for r in runs]}, indent=1))
    return path
