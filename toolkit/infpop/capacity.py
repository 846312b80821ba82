"""Serving capacity under a latency SLO: the highest request rate a loaded engine sustains.

An operator asks how many requests per second a configuration serves while its p99 latencies
stay under targets (:class:`~infpop.manifest.Slo`), not its peak tokens per second. The search
(:func:`search`) probes ``min_rate`` and ``max_rate`` first: where the SLO fails even at the
lowest rate, or holds even at the highest, there is no bracket and it says which and stops.
Otherwise it keeps a bracket ``[met, violated]`` and bisects it until it is no wider than the
tolerance, so the result holds both ends: a rate that met the SLO (the capacity) and one at
most one tolerance above it that did not.

Bisection, not interpolation (as vLLM's ``bench sweep serve_sla`` does): a probe's p99 is noisy,
and an interpolated root follows the noise, while a bisection step needs only the probe's
verdict, and its number of probes is known in advance (log2 of the range over the tolerance).
Latency need not rise monotonically with the rate in a short noisy probe; the bracket stays
valid regardless (its lower end met, its upper end failed), but where the SLO fails at some
rate and holds again above it, the search finds one crossing, not necessarily the highest:
bisection never probes above a rate that failed. The search is pure: the probe (a function of the rate) is the
online scenario's measurement (:mod:`infpop.scenarios.online`), so it is tested without an engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from infpop.manifest import CapacitySearch, Slo
from infpop.scenarios.metrics import OnlineMetrics, Percentiles

#: Why the search stopped: the bracket is within tolerance; no bracket (the SLO held at
#: ``max_rate``, or failed at ``min_rate``); ``max_probes`` ran; a probe did not finish (error, OOM).
Stop = Literal["converged", "met_at_max_rate", "violated_at_min_rate", "max_probes", "probe_failed"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Probe(_Record):
    """One rate tried: its status, latencies and the SLO's verdict."""

    rate: float
    status: str
    met: bool
    #: The SLO terms it missed, readable ("ttft p99 1.3 s > 1 s"), or why it could not be judged.
    violations: list[str]
    ttft_s: Percentiles | None
    tpot_s: Percentiles | None
    latency_s: Percentiles | None
    n_requests: int
    completed: int
    #: Generated tokens per second of the probe's wall time.
    throughput: float | None
    valid: bool | None
    invalid_reason: str | None = None


class Capacity(_Record):
    """A configuration's capacity search: every probe in the order tried, and the outcome."""

    slo: Slo
    search: CapacitySearch
    probes: list[Probe]
    #: The highest rate that met the SLO below the lowest that failed (requests/s); ``None``
    #: where none met. With ``met_at_max_rate`` it is a lower bound.
    capacity_rps: float | None
    #: Generated tokens/s measured at ``capacity_rps``.
    capacity_tokens_s: float | None
    #: The lowest rate above the capacity that failed the SLO: the bracket's upper end.
    violated_rps: float | None
    stopped: Stop
    why: str

    def rps_per_gpu(self, n_gpus: int) -> float | None:
        """``capacity_rps`` per GPU of a configuration of ``n_gpus``: what compares configurations of
        different GPU counts (the table's column, the report's ranking, the capacity search's
        objective). The one place that divides, so the live search and the table cannot disagree."""
        return None if self.capacity_rps is None else self.capacity_rps / n_gpus

    def tokens_s_per_gpu(self, n_gpus: int) -> float | None:
        """``capacity_tokens_s`` per GPU of a configuration of ``n_gpus``."""
        return None if self.capacity_tokens_s is None else self.capacity_tokens_s / n_gpus


def violations(slo: Slo, online: OnlineMetrics | None) -> list[str]:
    """The SLO's terms that ``online``'s p99s miss; a term whose measure is missing is missed too
    (an SLO on time to first token cannot be judged without one), and so is a probe in whose
    window no request arrived."""
    if online is None or not online.completed:
        return ["no request completed: raise the rate or duration_s"]
    terms = (
        ("ttft", slo.ttft_p99_s, "ttft_s"),
        ("tpot", slo.tpot_p99_s, "tpot_s"),
        ("e2e", slo.e2e_p99_s, "latency_s"),
    )
    missed = []
    for name, target, field in terms:
        if target is None:
            continue
        pct = getattr(online, field)
        if pct is None:
            missed.append(f"{name} p99 not measured")
        elif pct.p99 > target:
            missed.append(f"{name} p99 {pct.p99:.3g} s > {target:g} s")
    return missed


def probe_record(
    rate: float,
    status: str,
    online: OnlineMetrics | None,
    throughput: float | None,
    valid: bool | None,
    invalid_reason: str | None,
    slo: Slo,
) -> Probe:
    """A probe's record from its measurement. A probe that did not finish in ``trial_timeout_s``
    failed the SLO: its queue outgrew the time a user would wait."""
    missed = violations(slo, online) if status == "ok" else [f"status {status}"]
    return Probe(
        rate=rate,
        status=status,
        met=not missed,
        violations=missed,
        ttft_s=online.ttft_s if online else None,
        tpot_s=online.tpot_s if online else None,
        latency_s=online.latency_s if online else None,
        n_requests=online.n_requests if online else 0,
        completed=online.completed if online else 0,
        throughput=throughput,
        valid=valid,
        invalid_reason=invalid_reason,
    )


def search(spec: CapacitySearch, slo: Slo, probe: Callable[[float], Probe]) -> Capacity:
    """Bracket, then bisect (see the module docstring); ``probe(rate)`` measures one rate."""
    probes: list[Probe] = []

    def run(rate: float) -> Probe | None:
        """The probe, or ``None`` when it did not finish (the search stops)."""
        found = probe(rate)
        probes.append(found)
        return None if found.status not in ("ok", "timeout") else found

    def done(stopped: Stop, why: str, met: Probe | None, violated: Probe | None) -> Capacity:
        return Capacity(
            slo=slo,
            search=spec,
            probes=probes,
            capacity_rps=met.rate if met else None,
            capacity_tokens_s=met.throughput if met else None,
            violated_rps=violated.rate if violated else None,
            stopped=stopped,
            why=why,
        )

    low = run(spec.min_rate)
    if low is None:
        return done("probe_failed", f"the probe at min_rate {spec.min_rate:g}/s ended {probes[-1].status}", None, None)
    if not low.met:
        return done("violated_at_min_rate", f"the SLO fails at min_rate {spec.min_rate:g}/s: lower it", None, low)
    high = run(spec.max_rate)
    if high is None:
        return done("probe_failed", f"the probe at max_rate {spec.max_rate:g}/s ended {probes[-1].status}", low, None)
    if high.met:
        return done("met_at_max_rate", f"the SLO holds at max_rate {spec.max_rate:g}/s: raise it", high, None)
    met, violated = low, high
    while violated.rate - met.rate > spec.tolerance:
        if len(probes) >= spec.max_probes:
            return done(
                "max_probes",
                f"{spec.max_probes} probes ran; the bracket [{met.rate:g}, {violated.rate:g}]/s is wider than "
                f"the tolerance {spec.tolerance:g}",
                met,
                violated,
            )
        mid = run((met.rate + violated.rate) / 2)
        if mid is None:
            return done("probe_failed", f"the probe at {probes[-1].rate:g}/s ended {probes[-1].status}", met, violated)
        met, violated = (mid, violated) if mid.met else (met, mid)
    return done(
        "converged",
        f"the bracket [{met.rate:g}, {violated.rate:g}]/s is within the tolerance {spec.tolerance:g}",
        met,
        violated,
    )
