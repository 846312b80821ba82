"""What a search or a sweep costs as a cluster bills it: GPU-hours of trials and model loads.

Every trial's GPU-seconds plus one model load per stretch of consecutive trials at one GPU
count (the live search keeps the model loaded across the batch sizes it tries at one GPU count;
a sweep loads once per GPU count). The published data records no load times, so loads follow
:data:`LOAD_MODEL`, stated in the benchmark's output. A failed trial with a partial throughput
is billed an upper bound (:data:`FAILED_TRIAL_COST`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from infpop_analysis.hpo.landscape import Config, Landscape
from infpop_analysis.hpo.optimizers import Grid, Observation

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


def load_seconds(land: Landscape, n_gpus: int, weights_bytes: float | None) -> float:
    """Billed GPU-seconds of one model load on ``n_gpus`` (:data:`LOAD_MODEL`)."""
    start = LOAD_START_S.get(land.engine, LOAD_START_S["hf"])
    return n_gpus * (start + (weights_bytes or 0.0) / (LOAD_BANDWIDTH_GBS * 1e9))


def billed_seconds(land: Landscape, order: Sequence[Config], weights_bytes: float | None) -> tuple[float, int]:
    """GPU-seconds of the trials in ``order`` plus a load per stretch at one GPU count."""
    loads = [c.n_gpus for i, c in enumerate(order) if i == 0 or order[i - 1].n_gpus != c.n_gpus]
    total = sum(land.gpu_seconds(c) for c in order) + sum(load_seconds(land, g, weights_bytes) for g in loads)
    return total, len(loads)


def upper_bound_seconds(land: Landscape, order: Sequence[Config]) -> float:
    """GPU-seconds of the failed trials in ``order`` billed at a partial throughput: upper bounds."""
    return sum(
        land.gpu_seconds(c)
        for c in order
        if land.score(c, "strict") is None and not math.isnan(land.points[c].throughput)
    )


def sweep_order(land: Landscape, prune_oom: bool = False) -> list[Config]:
    """The trials of a sweep of the whole grid; with ``prune_oom``, batches above a failure at the
    same GPU count are skipped (as infpop's sweep runs)."""
    if not prune_oom:
        return list(land.space)
    grid, history = Grid(), []
    while (config := grid.propose(land.space, history)) is not None:
        history.append(Observation(config, land.score(config, "strict")))
    return [o.config for o in history]


def sweep_seconds(land: Landscape, weights_bytes: float | None, prune_oom: bool = False) -> float:
    """Billed GPU-seconds of a sweep (:func:`sweep_order`), one load per GPU count."""
    return billed_seconds(land, sweep_order(land, prune_oom), weights_bytes)[0]


def sweep_upper_bound(
    lands: Sequence[Landscape], weights: Callable[[Landscape], float | None], prune_oom: bool
) -> float:
    """The share of the sweeps' billed hours spent on failed trials with a partial throughput."""
    total = sum(sweep_seconds(land, weights(land), prune_oom) for land in lands)
    bound = sum(upper_bound_seconds(land, sweep_order(land, prune_oom)) for land in lands)
    return bound / total if total else 0.0
