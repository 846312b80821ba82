"""Warm-up: untimed batches before a measurement.

The first batches after a model load, or at a batch shape not seen before, pay for kernel
selection and autotuning, allocator growth and cold caches. A server pays that once; a trial
that times it measures its own start-up, which inflates the first timed batch and, for short
workloads, lowers throughput by an amount that depends on the trial's position in its job.
The trial runner calls :func:`warm_up` before a trial's timed loop (the manifest's
``warmup.trial_batches``) and :func:`warm_up_group` once after the model loads
(``warmup.group_batches``); the time spent is recorded in the result (``warmup_s``,
``group_warmup_s``) and never counted in throughput.
"""

from __future__ import annotations

import time

from infpop.engines.base import Engine
from infpop.plan import TrialSpec
from infpop.workloads import Prompt, new_tokens


def warm_up(engine: Engine, trial: TrialSpec, prompts: list[Prompt], n_batches: int) -> float | None:
    """Run ``n_batches`` batches of ``trial.batch_size`` prompts; their wall seconds, or None
    when there are none to run.

    The batches are the workload's first ones (wrapping around a short workload), with the
    trial's output lengths: the shapes its timed loop starts with. Whatever the engine raises
    propagates: a warm-up that runs out of memory means the trial's own batches would too."""
    if n_batches == 0:
        return None
    b = trial.batch_size
    start = time.perf_counter()
    for k in range(n_batches):
        first = (k * b) % len(prompts)
        batch = prompts[first : first + b]
        engine.generate([p.text for p in batch], b, new_tokens(batch, trial.output_length, trial.max_new_tokens))
    return time.perf_counter() - start


def warm_up_group(engine: Engine, first: TrialSpec, prompts: list[Prompt], n_batches: int) -> float | None:
    """The job's warm-up after the model loads, at its first trial's shapes; its seconds, or
    None when there are none to run. A failure is released and not raised: it belongs to no
    trial, and the trials meet it in their own batches and record it there."""
    if n_batches == 0:
        return None
    start = time.perf_counter()
    try:
        warm_up(engine, first, prompts, n_batches)
    except Exception:
        engine.recover()
    return time.perf_counter() - start
