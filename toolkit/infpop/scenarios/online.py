"""The online scenario: requests arrive as a Poisson process and are served as they come.

Real time, on the real engine, in one of two batching disciplines, recorded in each result:

- ``continuous`` (engines that stream, i.e. vLLM's async engine): each request is submitted
  at its arrival and joins the running batch at the engine's next step; the engine's
  concurrency cap (vLLM's ``max_num_seqs``, set from the trial's batch size by the planner)
  plays batch size's role. Its output streams back token by token, so time to first token,
  inter-token latency and time per output token are seen per request at the client.
- ``dynamic`` (the others, e.g. HF): a server loop takes up to ``batch_size`` requests that
  have arrived and not started, runs them as one batch (as HF serving does without continuous
  batching), and sleeps until the next arrival when nothing waits.

Every request is timed from its arrival, so queueing shows in its latency. Where the client
sends each request itself (continuous), how late it sent each one after its arrival is recorded
(``send_lateness_s``): the client shares its event loop with vLLM's front end, and a run whose
client fell behind offered another load and is marked invalid (:func:`~infpop.scenarios.metrics.validity`).
docs/metrics.md maps each measure to ``vllm bench serve``'s. Every request that
arrives within ``duration_s`` is served; the trial lasts the window or, when requests are still
queued at its end, until the last one finishes (or until ``trial_timeout_s``, status ``timeout``).

The load is reproducible: the arrival times depend only on (rate, duration_s, seed), and
request i sends the workload's prompt ``i mod n`` in the workload's order.
"""

from __future__ import annotations

import asyncio
import random
import time

from infpop.capacity import Probe, probe_record, search
from infpop.engines.base import Engine
from infpop.fingerprints import by_prompt
from infpop.plan import TrialSpec
from infpop.results import TrialResult, utcnow
from infpop.scenarios.base import Recorder, batching, error_text, preempted_since
from infpop.scenarios.metrics import RequestTiming, summarise
from infpop.workloads import Prompt, new_tokens


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
    engine: Engine, trial: TrialSpec, prompts: list[Prompt], rec: Recorder, timeout_s: float | None
) -> TrialResult:
    """Serve the trial's arrivals at its rate, or search its capacity where the scenario asks."""
    assert trial.scenario.kind == "online", "run_online needs an online trial"
    if trial.scenario.capacity is not None:
        return _run_capacity(engine, trial, prompts, rec, timeout_s)
    return _run_rate(engine, trial, prompts, rec, timeout_s)


def _run_capacity(
    engine: Engine, trial: TrialSpec, prompts: list[Prompt], rec: Recorder, timeout_s: float | None
) -> TrialResult:
    """The capacity search (:func:`infpop.capacity.search`), each probe measured by :func:`_run_rate`
    as a trial at that rate, in this one loaded engine. The record returned is the probe at the
    capacity (else the last one), under the configuration's own trial spec, with the search in it."""
    scenario = trial.scenario
    assert scenario.kind == "online" and scenario.capacity is not None and scenario.slo is not None
    measured: dict[float, TrialResult] = {}

    def probe(rate: float) -> Probe:
        result = _run_rate(engine, trial.model_copy(update={"request_rate": rate}), prompts, rec, timeout_s)
        measured[rate] = result
        online = result.online
        return probe_record(
            rate, result.status, online, result.throughput, result.valid, result.invalid_reason, scenario.slo
        )

    found = search(scenario.capacity, scenario.slo, probe)
    chosen = measured[found.capacity_rps if found.capacity_rps is not None else found.probes[-1].rate]
    return chosen.model_copy(update={"trial": trial, "capacity": found})


def _run_rate(
    engine: Engine, trial: TrialSpec, prompts: list[Prompt], rec: Recorder, timeout_s: float | None
) -> TrialResult:
    """Serve the trial's arrivals: continuously where the engine streams, else in dynamic batches."""
    assert trial.scenario.kind == "online" and trial.request_rate is not None, "a rate to serve"
    started_at = utcnow()
    arrivals = poisson_arrivals(trial.request_rate, trial.scenario.duration_s, trial.scenario.seed)
    preempted = engine.preemptions()
    serve = _serve_continuous if batching(engine) == "continuous" else _serve_dynamic
    with rec.timed_loop():
        served = serve(engine, trial, prompts, arrivals, timeout_s)
    # The server was up for the whole arrival window, even when the last request came early in it.
    wall = max(served.wall_s, trial.scenario.duration_s if served.status == "ok" else 0.0)
    return rec.measured(
        trial,
        started_at,
        status=served.status,
        error=served.error,
        n_prompts=len(served.timings),
        prompt_tokens=served.prompt_tokens,
        generated_tokens=sum(t.output_tokens for t in served.timings),
        wall_s=wall,
        batch_latencies_s=served.batch_latencies,
        online=summarise(served.timings, len(arrivals), wall, trial.scenario.goodput, served.itl, served.lateness),
        num_preemptions=preempted_since(engine, preempted),
        cached_prompt_tokens=served.cached_tokens,
        outputs=served.fingerprints(len(prompts)),
    )


class _Served:
    """What serving one trial's arrivals gave, in either discipline."""

    def __init__(self) -> None:
        self.timings: list[RequestTiming] = []
        self.prompt_tokens = 0
        #: Prompt tokens served from the engine's prefix cache; ``None`` where it has none.
        self.cached_tokens: int | None = 0
        self.batch_latencies: list[float] = []
        #: Gaps between a request's consecutive streamed outputs, over all requests (continuous only).
        self.itl: list[float] | None = None
        #: Each request's send time minus its scheduled arrival, where the client sends each
        #: request itself (continuous only; the dynamic server loop's wait is queueing, in latency).
        self.lateness: list[float] | None = None
        self.status, self.error = "ok", None
        self.wall_s = 0.0
        #: ``(request index, generated token ids)`` of each served request, for the fingerprints;
        #: ``None`` once the engine did not report the ids of one.
        self.token_ids: list[tuple[int, tuple[int, ...]]] | None = []

    def fingerprints(self, n_prompts: int) -> list[str | None] | None:
        """One per workload prompt, from its first request (request i sends prompt i mod n)."""
        if self.token_ids is None:
            return None
        return by_prompt(n_prompts, [(i % n_prompts, ids) for i, ids in sorted(self.token_ids)])

    def add_ids(self, request: int, ids: tuple[int, ...] | None) -> None:
        if ids is None:
            self.token_ids = None
        elif self.token_ids is not None:
            self.token_ids.append((request, ids))

    def add_cached(self, tokens: int | None) -> None:
        self.cached_tokens = None if self.cached_tokens is None or tokens is None else self.cached_tokens + tokens


def _serve_dynamic(
    engine: Engine, trial: TrialSpec, prompts: list[Prompt], arrivals: list[float], timeout_s: float | None
) -> _Served:
    """Batches of up to ``trial.batch_size`` requests that have arrived, one engine call each."""
    served = _Served()
    b = trial.batch_size
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
            served.status = "oom" if engine.is_oom(exc) else "error"
            served.error = error_text(exc)
            engine.recover()
            break
        finish = time.perf_counter() - clock0
        served.batch_latencies.append(finish - now)
        served.prompt_tokens += out.prompt_tokens
        served.add_cached(out.cached_tokens)
        per_prompt = out.per_prompt or ([asked] * len(batch) if isinstance(asked, int) else asked)
        first = None if out.first_token_at is None else out.first_token_at - clock0
        served.timings += [
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
        for i, ids in zip(range(nxt, end), out.token_ids or [None] * len(batch)):
            served.add_ids(i, ids)
        nxt = end
        if timeout_s is not None and finish > timeout_s and nxt < len(arrivals):
            served.status = "timeout"
            served.error = f"trial_timeout_s={timeout_s} reached after {nxt} of {len(arrivals)} requests"
            break
    served.wall_s = time.perf_counter() - clock0
    return served


def _serve_continuous(
    engine: Engine, trial: TrialSpec, prompts: list[Prompt], arrivals: list[float], timeout_s: float | None
) -> _Served:
    """Each request submitted to the engine at its arrival, its output streamed back."""
    served = _Served()
    served.itl, served.lateness = [], []
    done: list[tuple[int, RequestTiming]] = []

    async def request(i: int, clock0: float) -> None:
        delay = arrivals[i] - (time.perf_counter() - clock0)
        if delay > 0:
            await asyncio.sleep(delay)
        prompt = prompts[i % len(prompts)]
        asked = new_tokens([prompt], trial.output_length, trial.max_new_tokens)
        start = time.perf_counter() - clock0
        served.lateness.append(start - arrivals[i])
        first = last = None
        produced = prompt_tokens = 0
        cached = None
        ids: list[int] | None = []
        n = asked if isinstance(asked, int) else asked[0]
        async for chunk in engine.stream(prompt.text, n, f"{trial.trial_id}#{i}"):
            now = time.perf_counter() - clock0
            prompt_tokens = chunk.prompt_tokens if chunk.prompt_tokens is not None else prompt_tokens
            cached = chunk.cached_tokens if chunk.cached_tokens is not None else cached
            if chunk.token_ids is None:
                ids = None
            elif ids is not None:
                ids += chunk.token_ids
            if not chunk.new_tokens:
                continue
            if first is None:
                first = now
            else:
                served.itl.append(now - last)
            last = now
            produced += chunk.new_tokens
        served.prompt_tokens += prompt_tokens
        served.add_cached(cached)
        served.add_ids(i, None if ids is None else tuple(ids))
        timing = RequestTiming(
            prompt_index=i % len(prompts),
            arrival_s=arrivals[i],
            start_s=start,
            first_token_s=first,
            finish_s=time.perf_counter() - clock0,
            output_tokens=produced,
        )
        done.append((i, timing))

    async def main() -> None:
        clock0 = time.perf_counter()
        tasks = [asyncio.create_task(request(i, clock0)) for i in range(len(arrivals))]
        if not tasks:  # no arrival in the window: nothing to serve (asyncio.wait refuses an empty set)
            served.wall_s = time.perf_counter() - clock0
            return
        try:
            finished, pending = await asyncio.wait(tasks, timeout=timeout_s, return_when=asyncio.FIRST_EXCEPTION)
            failed = next((t.exception() for t in finished if t.exception() is not None), None)
            if failed is not None:
                served.status = "oom" if engine.is_oom(failed) else "error"
                served.error = error_text(failed)
            elif pending:
                served.status = "timeout"
                served.error = f"trial_timeout_s={timeout_s} reached after {len(done)} of {len(arrivals)} requests"
        finally:
            for t in tasks:  # cancelling a stream aborts its request in the engine
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            served.wall_s = time.perf_counter() - clock0

    engine.run_async(main())
    if served.status != "ok":
        engine.recover()
    served.timings = [timing for _, timing in sorted(done, key=lambda pair: pair[0])]
    return served
