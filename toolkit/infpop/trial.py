"""The trial runner: what a job executes on a compute node.

It loads the engine once for a group, runs the group's trials in order (batch size ascending
within each series), and writes one result per trial as soon as it finishes. Trials that
already have a result are skipped, so a requeued or rerun job resumes where it stopped. An
out-of-memory error ends a trial with status ``oom`` and, with pruning on, larger batches of
the same series are recorded ``skipped_oom`` without running. A trial runs through its
scenario's runner (:mod:`infpop.scenarios`), looked up by the scenario's kind.

Only light imports here: the engine module brings torch when the group actually runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from infpop.engines import engine_class
from infpop.engines.base import Engine
from infpop.plan import GroupSpec, TrialSpec
from infpop.results import ResultStore, TrialResult, utcnow
from infpop.scenarios import runner
from infpop.scenarios.base import Recorder, error_text
from infpop.workloads import load_prompts, with_reference_tokens

EngineFactory = Callable[[GroupSpec], Engine]


def default_engine(group: GroupSpec) -> Engine:
    t = group.first
    return engine_class(t.engine)(
        t.model,
        model_path=group.model_path,
        n_gpus=t.n_gpus,
        dtype=t.dtype,
        options=t.engine_options,
        scenario=t.scenario.kind,
    )


def _oom_batches(store: ResultStore, trials: list[TrialSpec]) -> dict[tuple[int, int], int]:
    """Smallest OOM batch per series among results already on disk (for pruning on resume)."""
    found: dict[tuple[int, int], int] = {}
    for t in trials:
        done = store.done(t)
        if done is not None and done.status == "oom":
            found[t.series] = min(found.get(t.series, t.batch_size), t.batch_size)
    return found


def run_group(group: GroupSpec, engine_factory: EngineFactory = default_engine) -> list[TrialResult]:
    """Run the group's missing trials; return the results written by this call."""
    store = ResultStore(group.output_root)
    pending = [t for t in group.trials if store.done(t) is None]
    if not pending:
        return []
    oom_at = _oom_batches(store, group.trials) if group.prune_oom else {}
    written: list[TrialResult] = []

    def record(result: TrialResult) -> None:
        store.write(result)
        written.append(result)

    started_at = utcnow()
    engine = engine_factory(group)
    try:
        prompts = load_prompts(
            group.first.workload, Path(group.workload_path) if group.workload_path else None, group.first.workload.url
        )
        t0 = time.perf_counter()
        engine.load()
        if any(t.output_length == "reference" for t in pending):
            prompts = with_reference_tokens(prompts, engine.count_tokens)
    except Exception as exc:
        # The model could not start: every pending trial gets the reason (OOM at load included).
        rec = Recorder(group, ["unknown"], None)
        status = "oom" if engine.is_oom(exc) else "error"
        for t in pending:
            record(rec.result(t, started_at, status=status, error=error_text(exc)))
        engine.close()  # a failed start may hold memory and worker processes too
        return written
    rec = Recorder(group, engine.devices(), time.perf_counter() - t0, engine.kv_cache_blocks())
    try:
        for trial in pending:
            limit = oom_at.get(trial.series)
            if limit is not None and trial.batch_size > limit:
                record(rec.result(trial, utcnow(), status="skipped_oom", error=f"OOM at batch {limit} in this series"))
                continue
            result = runner(trial.scenario.kind)(engine, trial, prompts, rec, group.trial_timeout_s)
            record(result)
            if result.status == "oom" and group.prune_oom:
                oom_at[trial.series] = min(oom_at.get(trial.series, trial.batch_size), trial.batch_size)
    finally:
        engine.close()
    return written
