"""What a scenario measures beyond throughput, and whether a run counts.

Pure functions over per-request timings, so the statistics are testable without an engine.
Latency is timed from a request's *arrival*, not from when the server picked it up: queueing
is what a user waits through, and what rises with the request rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from infpop.manifest import GoodputTargets, OfflineScenario, OnlineScenario


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RequestTiming(_Record):
    """One online request, in seconds from the start of the trial's arrival clock."""

    prompt_index: int
    arrival_s: float
    start_s: float
    #: When its first token appeared; ``None`` where the engine does not expose it.
    first_token_s: float | None
    finish_s: float
    output_tokens: int

    @property
    def latency_s(self) -> float:
        return self.finish_s - self.arrival_s

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.arrival_s

    @property
    def latency_per_token_s(self) -> float:
        """End-to-end latency over output tokens: the workload study's normalised latency."""
        return self.latency_s / max(self.output_tokens, 1)

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first (vLLM's TPOT); ``None`` for a one-token request
        or without a first-token time."""
        if self.first_token_s is None or self.output_tokens < 2:
            return None
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)


class Percentiles(_Record):
    p50: float
    p90: float
    p99: float


class OnlineMetrics(_Record):
    """The online scenario's part of a result record."""

    #: Requests that arrived during the trial's window (all are served unless it stops early).
    n_requests: int
    completed: int
    #: Completed requests per second of the trial's wall time.
    request_throughput: float | None
    latency_s: Percentiles | None
    ttft_s: Percentiles | None
    latency_per_token_s: Percentiles | None
    #: Time per output token after the first, over requests of two tokens or more.
    tpot_s: Percentiles | None = None
    #: Inter-token latency: gaps between consecutive streamed outputs of a request, over all
    #: requests; only where the engine streams (continuous batching).
    itl_s: Percentiles | None = None
    #: Completed requests per second that met every goodput target; ``None`` without targets,
    #: or when a target needs a measure the engine does not expose (TTFT, TPOT).
    goodput: float | None
    #: How late the client sent each request after its scheduled (Poisson) arrival; only where
    #: a client sends each request itself (continuous batching). ``None`` in older records.
    send_lateness_s: Percentiles | None = None
    requests: list[RequestTiming]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), ``q`` in [0, 100]."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def percentiles(values: Sequence[float | None]) -> Percentiles | None:
    """p50/p90/p99, or ``None`` when any value is missing or there are none."""
    if not values or any(v is None for v in values):
        return None
    return Percentiles(p50=percentile(values, 50), p90=percentile(values, 90), p99=percentile(values, 99))


#: A run whose client sent its requests' 99th percentile later than this share of the mean gap
#: between arrivals (1 / rate) is invalid. The offered load is the Poisson process only while each
#: request leaves near its scheduled time; a client that falls behind sends later and then in
#: bursts, which is another, burstier load. At a tenth of the mean gap, 99% of the requests keep
#: their place among their neighbours' arrivals to within a tenth of a typical gap, and their
#: latencies, timed from arrival, carry at most that much of the client's delay.
MAX_LATENESS_SHARE = 0.1


def _meets(r: RequestTiming, targets: GoodputTargets) -> bool:
    """``vllm bench serve``'s rule: every target met; a one-token request's TPOT counts as 0."""
    return (
        (targets.latency_s is None or r.latency_s <= targets.latency_s)
        and (targets.ttft_s is None or r.ttft_s <= targets.ttft_s)
        and (targets.tpot_s is None or (r.tpot_s or 0.0) <= targets.tpot_s)
        and (targets.latency_per_token_s is None or r.latency_per_token_s <= targets.latency_per_token_s)
    )


def summarise(
    requests: list[RequestTiming],
    n_requests: int,
    wall_s: float,
    targets: GoodputTargets | None,
    itl: Sequence[float] | None = None,
    lateness: Sequence[float] | None = None,
) -> OnlineMetrics:
    """``lateness``: each request's send time minus its scheduled arrival, where a client sent it."""
    first_missing = any(r.first_token_s is None for r in requests)
    needs_first = targets is not None and (targets.ttft_s is not None or targets.tpot_s is not None)
    goodput = None
    if targets is not None and wall_s > 0 and not (needs_first and first_missing):
        goodput = sum(_meets(r, targets) for r in requests) / wall_s
    return OnlineMetrics(
        n_requests=n_requests,
        completed=len(requests),
        request_throughput=len(requests) / wall_s if wall_s > 0 else None,
        latency_s=percentiles([r.latency_s for r in requests]),
        ttft_s=percentiles([r.ttft_s for r in requests]),
        latency_per_token_s=percentiles([r.latency_per_token_s for r in requests]),
        tpot_s=percentiles([r.tpot_s for r in requests if r.tpot_s is not None]),
        itl_s=percentiles(itl) if itl else None,
        goodput=goodput,
        send_lateness_s=percentiles(lateness) if lateness else None,
        requests=requests,
    )


def validity(
    scenario: OfflineScenario | OnlineScenario,
    status: str,
    wall_s: float,
    completed: int,
    online: OnlineMetrics | None = None,
    rate: float | None = None,
) -> tuple[bool, str | None]:
    """MLPerf LoadGen's rule: a run counts only if it finished and was long and large enough;
    online, also only if its client kept up with the arrivals (:data:`MAX_LATENESS_SHARE`).
    Returns (valid, why not)."""
    if status != "ok":
        return False, f"status {status}: the run did not finish"
    if wall_s < scenario.min_duration_s:
        return False, f"ran {wall_s:.3g} s, below min_duration_s {scenario.min_duration_s:g}"
    if completed < scenario.min_requests:
        return False, f"completed {completed} requests, below min_requests {scenario.min_requests}"
    late = online.send_lateness_s if online is not None else None
    if late is not None and rate is not None and late.p99 > MAX_LATENESS_SHARE / rate:
        return False, (
            f"the client fell behind: send lateness p99 {late.p99:.3g} s is above {MAX_LATENESS_SHARE:g} of the "
            f"mean gap between arrivals ({1 / rate:.3g} s), so the load offered was not the Poisson process"
        )
    return True, None
