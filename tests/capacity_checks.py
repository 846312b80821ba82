"""What the real capacity tests (HF in tests/toolkit/test_capacity.py, vLLM in
tests/toolkit/test_vllm_engine.py) share: a search set from a run on this machine, and the
property a user relies on in its result."""

from __future__ import annotations

from typing import Any

from infpop.capacity import Capacity
from infpop.results import TrialResult

#: The calibration's rate and every probe's window: seed 0 gives three requests at the lowest rate.
LOW_RATE, WINDOW_S = 2.0, 2.0
#: A stall a busy machine may add to one request (seconds), allowed for in the SLO.
STALL_S = 1.0
#: The online calibration run: the search's lowest rate, served as the search will serve it.
CALIBRATION = {
    "kind": "online",
    "request_rates": [LOW_RATE],
    "duration_s": WINDOW_S,
    "min_duration_s": 0,
    "min_requests": 0,
}


def calibrated_fields(calibration: TrialResult, concurrency: int) -> dict[str, Any]:
    """The machine and its neighbours set the latencies (a busy CI machine stalls a request for
    a second or more, and a short offline run by as much), so the search is set from the online
    run :data:`CALIBRATION` of the same configuration. The SLO is four times its p99 end-to-end
    latency plus :data:`STALL_S`, so the lowest rate meets it. By Little's law the engine serves
    at most ``concurrency`` requests per its fastest request's latency; the highest rate is
    sixteen times that, so requests queue for some fifteen windows, far beyond the SLO. The
    tolerance is a 32nd of the range (five bisection steps). ``trial_timeout_s`` ends a probe whose
    queue outlasts the window by three SLOs: it failed (status timeout), however long it would drain."""
    latency = calibration.online.latency_s
    fastest = min(r.latency_s for r in calibration.online.requests)
    slo = round(4 * latency.p99 + STALL_S, 3)
    top = round(16 * concurrency / fastest, 2)
    return {
        "scenario": {
            "kind": "online",
            "duration_s": WINDOW_S,
            "min_duration_s": 0,
            "min_requests": 0,
            "slo": {"e2e_p99_s": slo},
            "capacity": {"min_rate": LOW_RATE, "max_rate": top, "tolerance": round((top - LOW_RATE) / 32, 2) + 0.01},
        },
        "trial_timeout_s": WINDOW_S + 3 * slo,
    }


def assert_bracketed(found: Capacity, tolerance: float) -> None:
    """The capacity met the SLO, a rate at most one tolerance above it failed, and both are among
    the recorded probes."""
    by_rate = {p.rate: p for p in found.probes}
    assert by_rate[found.capacity_rps].met and not by_rate[found.violated_rps].met
    assert 0 < found.violated_rps - found.capacity_rps <= tolerance
    assert found.capacity_tokens_s == by_rate[found.capacity_rps].throughput
