"""The benchmark's typed summaries: per method, per tuned constant, per landscape, and whole.

Each is a frozen dataclass; :func:`plain` turns one into the JSON the benchmark writes
(:mod:`.benchmark_output`), leaving out what a run did not compute (None).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from infpop_analysis.hpo.runs import ANYTIME, Run
from infpop_analysis.hpo.stopping import TOLERANCE

TPE_STARTUP = (
    "hyperopt's TPE proposes its first 20 trials at random (n_startup_jobs), so a TPE that stops after 5 trials "
    "without improvement is mostly random search"
)
NOISE = (
    "the published data holds one repetition per configuration, so no interval is known: configurations within "
    f"{TOLERANCE:.0%} of each other are tied; with repetitions, a live search treats overlapping intervals as tied"
)


@dataclass(frozen=True)
class Share:
    """A method's billed hours as a share of a sweep's, over landscapes."""

    median: float
    p90: float


@dataclass(frozen=True)
class Brief:
    """Trials to stop and final hit rate: a patience's or a landscape's line."""

    median_trials_to_stop: float
    final_hit_rate: float


@dataclass(frozen=True)
class Outline(Brief):
    """Trials to stop (median and p95), final hit rate and billed GPU-hours: an ablation's line."""

    p95_trials_to_stop: float
    median_gpu_hours: float


@dataclass(frozen=True)
class MethodSummary(Outline):
    """Trials to stop, final hit rate, billed GPU-hours (with the share that is an upper bound),
    the anytime shortfall and the first-hit figures of a set of runs."""

    median_evaluations: float
    median_proposals: float
    median_gpu_seconds: float
    hit_rate: float
    #: Mean shortfall of the incumbent from the optimum after each of :data:`~.runs.ANYTIME` trials.
    anytime_shortfall: dict[str, float]
    upper_bound_share: float
    runs: int
    share_of_sweep: Share | None = None
    share_of_pruned_sweep: Share | None = None
    note: str | None = None


@dataclass(frozen=True)
class ChosenSummary(MethodSummary):
    """A method's summary at constants chosen by :func:`~.crossval.choose`: the choice
    in-sample, or per held-out fold (``chosen_per_fold``) when cross-validated."""

    patience: int | None = None
    slack: float | None = None
    hf_efficiency: float | None = None
    vllm_efficiency: float | None = None
    chosen_per_fold: dict[str, Any] | None = None


@dataclass(frozen=True)
class Tuned:
    """One method at its tuned constants, in-sample and cross-validated."""

    in_sample: ChosenSummary
    leave_one_family_out: ChosenSummary | None = None
    leave_one_gpu_out: ChosenSummary | None = None
    #: A baseline's figures at every patience it was tuned among.
    per_patience: dict[str, Brief] | None = None

    def folds(self) -> dict[str, ChosenSummary]:
        """In-sample and each cross-validation that ran, by name."""
        names = ("in_sample", "leave_one_family_out", "leave_one_gpu_out")
        return {n: s for n in names if (s := getattr(self, n)) is not None}


@dataclass(frozen=True)
class TunedBaselines:
    """Baselines at the patience chosen by the rule that tunes the slack."""

    patiences: list[int]
    hit_target: float
    methods: dict[str, Tuned]


@dataclass(frozen=True)
class CrossValidation:
    """Every tuned constant chosen without the landscapes it is scored on (:func:`~.crossval.cross_validate`)."""

    slacks: list[float]
    efficiencies: list[float]
    hit_target: float
    methods: dict[str, Tuned]


@dataclass(frozen=True)
class Ablations:
    """``method`` with each part of its start and stopping rule removed in turn, in-sample."""

    method: str
    #: By part removed ("none": the full rule).
    parts: dict[str, Outline]


@dataclass(frozen=True)
class SweepSummary:
    median_gpu_hours: float
    landscapes: int
    upper_bound_share: float


@dataclass(frozen=True)
class LandscapeSummary(Brief):
    """One method on one landscape: medians over seeds, and its most common pick and stop."""

    median_gpu_hours: float
    pick: str
    stop_reason: str


@dataclass(frozen=True)
class Agreement:
    stops: int
    misses: int


@dataclass(frozen=True)
class TwinTopK:
    """How far the same model on the other GPU can lead a search (:func:`~.runs.twin_top_k`)."""

    landscapes: int
    #: By k: the share of landscapes where the other GPU's k best hold one within the tolerance.
    top: dict[str, float]
    #: The largest k, and by agreement: stops where those k keep the other GPU's shape, and misses.
    k: int
    stop_when_top_k_agree: dict[str, Agreement]


@dataclass
class BenchmarkSummary:
    """Everything ``infpop hpo benchmark`` prints and writes; the CLI fills the optional parts."""

    tolerance: float
    patience: int
    tpe_proposals: int
    load_model: str
    failed_trial_cost: str
    noise: str
    methods: dict[str, MethodSummary]
    landscapes: dict[str, dict[str, LandscapeSummary]]
    #: What the landscapes hold, and its unit (:mod:`.objective`).
    objective: str = "throughput (tok/s)"
    #: How each prior method's prior is made.
    prior: dict[str, str] | None = None
    sweep: SweepSummary | None = None
    pruned_sweep: SweepSummary | None = None
    tuned_baselines: TunedBaselines | None = None
    ratios: dict[str, float] = field(default_factory=dict)
    oom_predictor: dict[str, Any] | None = None
    twin_top_k: TwinTopK | None = None
    ablations: Ablations | None = None
    cross_validation: CrossValidation | None = None


def plain(value: Any) -> Any:
    """``value`` as JSON-ready dicts and lists; a dataclass's None fields left out."""
    if is_dataclass(value):
        return {f.name: plain(v) for f in fields(value) if (v := getattr(value, f.name)) is not None}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def shares(rs: Sequence[Run], sweeps: Mapping[str, Mapping[tuple, float]] | None) -> dict[str, Share]:
    """Per kind of sweep (its billed hours per landscape key), the per-landscape shares of its cost."""
    out = {}
    for kind, by_key in (sweeps or {}).items():
        per: dict[tuple, list[float]] = {}
        for r in rs:
            per.setdefault((r.engine, r.model, r.hardware), []).append(r.gpu_hours)
        found = [statistics.median(h) / by_key[k] for k, h in per.items() if by_key.get(k)]
        if found:
            out[f"share_of_{kind}"] = Share(statistics.median(found), _quantile(found, 0.9))
    return out


def method_summary(
    rs: Sequence[Run], sweeps: Mapping[str, Mapping[tuple, float]] | None = None, kind: type = MethodSummary, **extra
) -> Any:
    """The :class:`MethodSummary` (or ``kind``, with ``extra``) of ``rs``; with ``sweeps``, the
    per-landscape shares of each sweep's cost."""
    hours = sum(r.gpu_hours for r in rs)
    return kind(
        median_trials_to_stop=statistics.median(r.trials_to_stop for r in rs),
        p95_trials_to_stop=_quantile([r.trials_to_stop for r in rs], 0.95),
        final_hit_rate=sum(r.final_hit for r in rs) / len(rs),
        median_gpu_hours=statistics.median(r.gpu_hours for r in rs),
        median_evaluations=statistics.median(r.evaluations for r in rs),
        median_proposals=statistics.median(r.proposals for r in rs),
        median_gpu_seconds=statistics.median(r.gpu_seconds for r in rs),
        hit_rate=sum(r.hit for r in rs) / len(rs),
        anytime_shortfall={str(k): statistics.fmean(r.anytime_shortfall[i] for r in rs) for i, k in enumerate(ANYTIME)},
        upper_bound_share=sum(r.upper_bound_gpu_hours for r in rs) / hours if hours else 0.0,
        runs=len(rs),
        **shares(rs, sweeps),
        **extra,
    )


def brief(rs: Sequence[Run]) -> Brief:
    return Brief(statistics.median(r.trials_to_stop for r in rs), sum(r.final_hit for r in rs) / len(rs))
