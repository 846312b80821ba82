"""The physical prior of a landscape, and how well the out-of-memory predictor does on data.

:func:`physics_for` turns a model's architecture, the GPU catalog and the workload's prompt
lengths into what a search knows before its first trial (:class:`~.stopping.Physics`): the
configurations predicted to run out of memory and the roofline bound of every configuration.

The memory model has constants (:class:`infpop.physics.Calibration`). :func:`calibrate`
chooses them on a set of measured outcomes (OOM or success) by the better of precision and
recall of "predicted to fail", from a fixed grid; :func:`evaluate` scores them in-sample and
cross-validated (the constants chosen without one model family, or without one GPU type, then
scored on it), which is what the benchmark prints.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache

import numpy as np
from infpop.physics import (
    DEFAULT_CALIBRATION,
    GB,
    Architecture,
    Calibration,
    TrialShape,
    Workload,
    bound,
    estimate,
    gpu,
    predicts_oom,
)
from infpop.plugins import ENGINES

from infpop_analysis.hpo.landscape import Config, Landscape
from infpop_analysis.hpo.stopping import Physics

#: The candidate values :func:`calibrate` chooses from (fixed before looking at any score).
GRID: dict[str, tuple[float, ...]] = {
    "usable": (0.8, 0.85, 0.9, 0.95),
    "offload_cap": (0.4, 0.5, 0.6, 0.7),
    "kv_copies": (2, 4, 6, 8, 12),
    "hidden_copies": (0, 1, 2, 4, 8),
    "logit_bytes": (2, 3, 4, 5, 6, 8),
}


def family(model: str) -> str:
    """A model's family for cross-validation: the name before its size (Codellama, Phi, ...)."""
    return model.split("-")[0].rstrip("0123456789").rstrip("_") or model


@lru_cache(maxsize=65536)
def _bound(arch: Architecture, engine: str, hardware: str, config: Config, workload: Workload) -> float:
    return bound(TrialShape(arch, engine, gpu(hardware), config.n_gpus, config.batch_size, workload))


@lru_cache(maxsize=65536)
def _estimate(
    arch: Architecture, engine: str, hardware: str, config: Config, workload: Workload, cal: Calibration
) -> float:
    return estimate(TrialShape(arch, engine, gpu(hardware), config.n_gpus, config.batch_size, workload), cal)


def physics_for(
    land: Landscape, arch: Architecture | None, workload: Workload, cal: Calibration = DEFAULT_CALIBRATION
) -> Physics | None:
    """The physical prior of ``land``; None when its model or GPU is not in the catalog. For an
    objective per GPU the estimate is per GPU; for one that is no rate of tokens there is no
    bound (:mod:`.objective`)."""
    device = gpu(land.hardware)
    if arch is None or device is None:
        return None
    oom = frozenset(
        c
        for c in land.points
        if predicts_oom(TrialShape(arch, land.engine, device, c.n_gpus, c.batch_size, workload), cal)
    )
    ceiling = {c: _bound(arch, land.engine, land.hardware, c, workload) for c in land.points}
    # Only these constants move the estimate: folds that share them share its cache.
    key = replace(
        DEFAULT_CALIBRATION,
        offload_cap=cal.offload_cap,
        hf_efficiency=cal.hf_efficiency,
        vllm_efficiency=cal.vllm_efficiency,
    )
    expected = {c: _estimate(arch, land.engine, land.hardware, c, workload, key) for c in land.points}
    if land.objective.per_gpu:
        expected = {c: v / c.n_gpus for c, v in expected.items()}
    return Physics(oom=oom, bound=ceiling if land.objective.tokens_per_s else {}, estimate=expected)


@dataclass(frozen=True)
class Outcomes:
    """Every measured OOM and success of some landscapes, as arrays for the memory model."""

    weights: np.ndarray  # bytes per GPU
    memory: np.ndarray  # bytes of one GPU
    n_gpus: np.ndarray
    tokens: np.ndarray  # padded tokens of the worst batch
    split: np.ndarray  # kv bytes per token, and layers x hidden x dtype bytes
    layer_hidden: np.ndarray
    vocab: np.ndarray
    vllm: np.ndarray  # bool: a memory-sized engine (vLLM)
    vllm_need: np.ndarray  # bytes a vLLM trial needs before calibration of its floor
    failed: np.ndarray  # bool: the measured outcome
    model: np.ndarray
    hardware: np.ndarray

    def __len__(self) -> int:
        return len(self.failed)


def outcomes(lands: Sequence[Landscape], archs: Mapping[str, Architecture], workload: Workload) -> Outcomes:
    """Each ``ok`` or ``oom`` point of ``lands`` whose model and GPU the catalog knows."""
    rows = []
    for land in lands:
        arch, device = archs.get(land.model), gpu(land.hardware)
        if arch is None or device is None:
            continue
        for c, p in land.points.items():
            if p.status not in ("ok", "oom"):
                continue
            tokens = max(n * (length + workload.new_tokens) for n, length in workload.batches(c.batch_size))
            kv = arch.kv_bytes_per_token(2)
            context = max(DEFAULT_CALIBRATION.vllm_min_context, max(workload.prompt_tokens) + workload.new_tokens)
            rows.append(
                (
                    arch.params * 2 / c.n_gpus,
                    device.memory_gb * GB,
                    c.n_gpus,
                    tokens,
                    kv,
                    arch.layers * arch.hidden_size * 2,
                    arch.vocab_size,
                    ENGINES.entry(land.engine).capabilities.memory_sized,
                    arch.params * 2 / c.n_gpus + kv * context / c.n_gpus,
                    p.status == "oom",
                    land.model,
                    land.hardware,
                )
            )
    cols = list(zip(*rows)) if rows else [()] * 12
    return Outcomes(*(np.array(col) for col in cols))


def predict(o: Outcomes, cal: Calibration, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
    """:func:`infpop.physics.predicts_oom` over many outcomes at once (same formula)."""
    w, m = o.weights[idx], o.memory[idx]
    split = (cal.kv_copies * o.split[idx] + cal.hidden_copies * o.layer_hidden[idx]) / o.n_gpus[idx]
    hf = np.minimum(w, cal.offload_cap * m) + o.tokens[idx] * (split + cal.logit_bytes * o.vocab[idx]) > cal.usable * m
    vllm = o.vllm_need[idx] > cal.vllm_utilization * m
    return np.where(o.vllm[idx], vllm, hf)


def precision_recall(predicted: np.ndarray, failed: np.ndarray) -> tuple[float, float]:
    hit = int((predicted & failed).sum())
    return hit / max(int(predicted.sum()), 1), hit / max(int(failed.sum()), 1)


def calibrate(o: Outcomes, idx: np.ndarray | slice = slice(None)) -> Calibration:
    """The grid point with the best min(precision, recall) on the outcomes ``idx``."""
    best: tuple[float, Calibration] | None = None
    for values in itertools.product(*GRID.values()):
        cal = replace(DEFAULT_CALIBRATION, **dict(zip(GRID, values)))
        score = min(precision_recall(predict(o, cal, idx), o.failed[idx]))
        if best is None or score > best[0]:
            best = (score, cal)
    assert best is not None
    return best[1]


#: The engines' shares of peak FLOP/s :func:`calibrate_efficiency` chooses from (fixed before
#: looking at any score).
EFFICIENCIES: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03, 0.01)


def start_quality(
    lands: Sequence[Landscape], archs: Mapping[str, Architecture], workload: Workload, cal: Calibration
) -> float:
    """Mean over ``lands`` of what the physics start (the best estimate predicted to fit)
    measured, as a share of the landscape's optimum (a failure scores 0)."""
    shares = []
    for land in lands:
        physics, optimum = physics_for(land, archs.get(land.model), workload, cal), land.optimum("strict")
        if physics is None or optimum is None:
            continue
        fits = [c for c in land.points if c not in physics.oom] or list(land.points)
        start = max(fits, key=lambda c: (physics.estimate[c], -c.n_gpus, -c.batch_size))
        shares.append((land.score(start, "strict") or 0.0) / optimum)
    return float(np.mean(shares)) if shares else 0.0


def calibrate_efficiency(
    lands: Sequence[Landscape], archs: Mapping[str, Architecture], workload: Workload, cal: Calibration
) -> Calibration:
    """``cal`` with each engine's efficiency chosen from :data:`EFFICIENCIES` to start its
    searches of ``lands`` nearest their optima (:func:`start_quality`; ties to the higher)."""
    chosen = {}
    for engine in ("hf", "vllm"):
        mine = [land for land in lands if land.engine == engine]
        field_ = f"{engine}_efficiency"
        chosen[field_] = max(
            EFFICIENCIES, key=lambda e: (start_quality(mine, archs, workload, replace(cal, **{field_: e})), e)
        )
    return replace(cal, **chosen)


def evaluate(o: Outcomes) -> dict:
    """Precision and recall of "predicted to fail": with the shipped constants, with constants
    chosen in-sample, and cross-validated leaving one model family / one GPU type out."""
    out: dict = {
        "outcomes": len(o),
        "ooms": int(o.failed.sum()),
        "constants": {f.name: getattr(DEFAULT_CALIBRATION, f.name) for f in fields(Calibration)},
    }
    shipped = precision_recall(predict(o, DEFAULT_CALIBRATION), o.failed)
    out["shipped"] = {"precision": shipped[0], "recall": shipped[1]}
    fitted = calibrate(o)
    ins = precision_recall(predict(o, fitted), o.failed)
    out["in_sample"] = {"precision": ins[0], "recall": ins[1], "constants": {k: getattr(fitted, k) for k in GRID}}
    for name, groups in (
        ("leave_one_family_out", np.array([family(m) for m in o.model])),
        ("leave_one_gpu_out", o.hardware),
    ):
        predicted = np.zeros(len(o), dtype=bool)
        for g in np.unique(groups):
            test = groups == g
            predicted[test] = predict(o, calibrate(o, ~test), test)
        p, r = precision_recall(predicted, o.failed)
        out[name] = {"precision": p, "recall": r}
    return out
