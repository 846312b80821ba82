"""The online scenario: requests arrive as a Poisson process and are served as they come.

Real time, on the real engine: a server loop takes up to ``batch_size`` requests that have
arrived and not started, runs them as one batch (dynamic batching, as HF serving does
without continuous batching), and sleeps until the next arrival when nothing waits. Every
request is timed from its arrival, so queueing shows in its latency. Every request that
arrives within ``duration_s`` is served; the trial lasts the window or, when requests are still queued at its
end, until the last one finishes (or until ``trial_timeout_s``, status ``timeout``).

The load is reproducible: the arrival times depend only on (rate, duration_s, seed), and
request i sends the workload's prompt ``i mod n`` in the workload's order.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from infpop.engines.base import Engine
from infpop.plan import TrialSpec
from infpop.results import TrialResult, utcnow
from infpop.scenarios.metrics import RequestTiming, summarise
from infpop.trial import _error_text
from infpop.workloads import Prompt, new_tokens

if TYPE_CHECKING:
    from infpop.trial import _Run


def poisson_arrivals(rate: float, duration_s: float, seed: int) -> list[float]:
    """Arrival times (s) of a Poisson process of ``rate`` per second within ``duration_s``.

    Exponential gaps from one seeded stream: the same seed at another rate gives the same
    draws scaled by the rate, so trials at different rates see comparable load patterns."""
    rng = random.Random(seed)
    arrivals, t = [], rng.expovariate(rate)
    while t < duration_s:
        arrivals.append(t)
        t += rng.expovariate(rate)
    return arrivals


def run_online(
    engine: Engine, trial: TrialSpec, prompts: list[Prompt], run: _Run, timeout_s: float | None
) -> TrialResult:
    """Serve the trial's arrivals with dynamic batching up to ``trial.batch_size``."""
    assert trial.scenario.kind == "online" and trial.request_rate is not None, "run_online needs an online trial"
    started_at = utcnow()
    arrivals = poisson_arrivals(trial.request_rate, trial.scenario.duration_s, trial.scenario.seed)
    b = trial.batch_size
    timings: list[RequestTiming] = []
    batch_latencies: list[float] = []
    prompt_tokens = generated = 0
    status, error = "ok", None
    clock0 = time.perf_counter()
    nxt = 0
    while nxt < len(arrivals):
        now = time.perf_counter() - clock0
        if arrivals[nxt] > now:
            time.sleep(arrivals[nxt] - now)
            continue
        end = nxt
        while end < len(arrivals) and end - nxt < b and arrivals[end] <= now:
            end += 1
        batch = [prompts[i % len(prompts)] for i in range(nxt, end)]
        asked = new_tokens(batch, trial.output_length, trial.max_new_tokens)
        try:
            out = engine.generate_timed([p.text for p in batch], b, asked)
        except Exception as exc:  # an engine failure is an outcome to record, not a crash
            status = "oom" if engine.is_oom(exc) else "error"
            error = _error_text(exc)
            engine.recover()
            break
        finish = time.perf_counter() - clock0
        batch_latencies.append(finish - now)
        prompt_tokens += out.prompt_tokens
        generated += out.generated_tokens
        per_prompt = out.per_prompt or ([asked] * len(batch) if isinstance(asked, int) else asked)
        first = None if out.first_token_at is None else out.first_token_at - clock0
        timings += [
            RequestTiming(
                prompt_index=i % len(prompts),
                arrival_s=arrivals[i],
                start_s=now,
                first_token_s=first,
                finish_s=finish,
                output_tokens=n,
            )
            for i, n in zip(range(nxt, end), per_prompt)
        ]
        nxt = end
        if timeout_s is not None and finish > timeout_s and nxt < len(arrivals):
            status, error = "timeout", f"trial_timeout_s={timeout_s} reached after {nxt} of {len(arrivals)} requests"
            break
    # The server was up for the whole arrival window, even when the last request came early in it.
    wall = max(time.perf_counter() - clock0, trial.scenario.duration_s if status == "ok" else 0.0)
    return run.measured(
        trial,
        started_at,
        status=status,
        error=error,
        n_prompts=len(timings),
        prompt_tokens=prompt_tokens,
        generated_tokens=generated,
        wall_s=wall,
        batch_latencies_s=batch_latencies,
        online=summarise(timings, len(arrivals), wall, trial.scenario.goodput),
    )
