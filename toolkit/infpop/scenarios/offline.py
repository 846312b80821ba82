"""The offline scenario, the study's protocol: every prompt, in static batches of the trial's
batch size, one engine call per batch; only the inference loop is timed."""

from __future__ import annotations

import time

from infpop.engines.base import Engine
from infpop.fingerprints import by_prompt
from infpop.plan import TrialSpec
from infpop.results import TrialResult, utcnow
from infpop.scenarios.base import Recorder, error_text, preempted_since
from infpop.workloads import Prompt, new_tokens


def run_offline(
    engine: Engine, trial: TrialSpec, prompts: list[Prompt], rec: Recorder, timeout_s: float | None
) -> TrialResult:
    """Send every prompt in batches of ``trial.batch_size``; time only the inference loop."""
    started_at = utcnow()
    latencies: list[float] = []
    prompt_tokens = generated = 0
    cached: int | None = 0
    # Token ids kept as the engine returned them; hashed after the timed loop.
    served: list[tuple[int, tuple[int, ...]]] | None = []
    status, error = "ok", None
    texts = [p.text for p in prompts]
    b = trial.batch_size
    preempted = engine.preemptions()
    with rec.timed_loop():
        loop_start = time.perf_counter()
        for i in range(0, len(texts), b):
            t0 = time.perf_counter()
            try:
                asked = new_tokens(prompts[i : i + b], trial.output_length, trial.max_new_tokens)
                out = engine.generate(texts[i : i + b], b, asked)
            except Exception as exc:  # an engine failure is an outcome to record, not a crash
                status = "oom" if engine.is_oom(exc) else "error"
                error = error_text(exc)
                engine.recover()
                break
            latencies.append(time.perf_counter() - t0)
            prompt_tokens += out.prompt_tokens
            generated += out.generated_tokens
            cached = None if cached is None or out.cached_tokens is None else cached + out.cached_tokens
            if out.token_ids is None:
                served = None
            elif served is not None:
                served += enumerate(out.token_ids, i)
            if timeout_s is not None and time.perf_counter() - loop_start > timeout_s and i + b < len(texts):
                status, error = "timeout", f"trial_timeout_s={timeout_s} reached after {i + b} of {len(texts)} prompts"
                break
        # The whole loop, bookkeeping between batches included: what a user of the engine would see.
        wall = time.perf_counter() - loop_start
    return rec.measured(
        trial,
        started_at,
        status=status,
        error=error,
        n_prompts=len(texts),
        prompt_tokens=prompt_tokens,
        generated_tokens=generated,
        wall_s=wall,
        batch_latencies_s=latencies,
        num_preemptions=preempted_since(engine, preempted),
        cached_prompt_tokens=cached,
        outputs=None if served is None else by_prompt(len(texts), served),
    )
