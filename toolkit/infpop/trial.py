"""The trial runner: what a job executes on a compute node.

It loads the engine once for a group, runs the group's trials in order (batch size ascending
within each series), and writes one result per trial as soon as it finishes. Trials that
already have a result are skipped, so a requeued or rerun job resumes where it stopped. An
out-of-memory error ends a trial with status ``oom`` and, with pruning on, larger batches of
the same series (online: and the same batch at its other request rates) are recorded
``skipped_oom`` without running; a rerun without pruning runs them. A trial runs through its
scenario's runner (:mod:`infpop.scenarios`), looked up by the scenario's kind, after the
trial's untimed warm-up batches (:mod:`infpop.warmup`); a library warning repeated on every
batch is logged once per trial (:mod:`infpop.trialwarnings`). With adaptive repetitions, a
repetition whose configuration is already measured precisely enough is recorded
``skipped_enough`` instead (:mod:`infpop.adaptive`), and the results where that was decided say
why the configuration stopped (``stop_reason``). A trial recorded without running carries the
engine's settings as the trials that ran do (:class:`~infpop.scenarios.base.Recorder`),
so an analysis sees it as a repetition of its configuration.

Only light imports here: the engine module brings torch when the group actually runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from infpop.adaptive import enough
from infpop.bounds import architecture
from infpop.engines import engine_class
from infpop.engines.base import Engine
from infpop.filemodes import share_with_group
from infpop.plan import GroupSpec, TrialSpec
from infpop.results import ResultStore, TrialResult, utcnow
from infpop.scenarios.base import Recorder, batching, error_text, runner
from infpop.trialwarnings import once_per_trial
from infpop.warmup import warm_up, warm_up_group
from infpop.workloads import Prompt, load_prompts, with_reference_tokens

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
        deterministic=bool(t.deterministic),
    )


def _oom_batches(store: ResultStore, trials: list[TrialSpec]) -> dict[tuple[int, int], int]:
    """Smallest OOM batch per series among results already on disk (for pruning on resume)."""
    found: dict[tuple[int, int], int] = {}
    for t in trials:
        done = store.done(t)
        if done is not None and done.status == "oom":
            found[t.series] = min(found.get(t.series, t.batch_size), t.batch_size)
    return found


def pruned_by(trial: TrialSpec, oom_at: dict[tuple[int, int], int]) -> int | None:
    """The OOM batch size that prunes ``trial``, or None when it runs.

    An OOM at batch b prunes b and every larger batch of its series. Offline that is the larger
    batches (the trial at b is the OOM itself, never pending again); online it is also batch b
    at the request rates not yet run, since a server that cannot hold b requests at once fails
    whenever a burst fills the batch, at any rate (see :attr:`TrialSpec.series`)."""
    limit = oom_at.get(trial.series)
    return limit if limit is not None and trial.batch_size >= limit else None


def _measured(store: ResultStore, trial: TrialSpec) -> list[float]:
    """The ok throughputs of the repetitions of ``trial``'s configuration before it, on disk."""
    earlier = (store.done(trial.model_copy(update={"repetition": r})) for r in range(trial.repetition))
    return [x.throughput for x in earlier if x is not None and x.status == "ok" and x.throughput]


def _enough(store: ResultStore, group: GroupSpec, trial: TrialSpec) -> str | None:
    """Why ``trial``'s repetition is not needed (its configuration's earlier repetitions, on
    disk, are precise enough), or None: always None without adaptive repetitions."""
    rule = group.adaptive
    if rule is None or trial.repetition < rule.min:
        return None
    return enough(_measured(store, trial), rule.min, rule.target_rel_halfwidth)


def _stopped_at_max(store: ResultStore, group: GroupSpec, result: TrialResult) -> None:
    """On the last planned repetition of an adaptive configuration, say whether it ended at the
    target (its interval, this repetition included, is narrow enough) or at ``max``."""
    rule = group.adaptive
    if rule is None or result.trial.repetition != rule.max - 1:
        return
    values = _measured(store, result.trial)
    if result.status == "ok" and result.throughput:
        values.append(result.throughput)
    result.stop_reason = "max" if enough(values, rule.min, rule.target_rel_halfwidth) is None else "target"


def _prompt_tokens(engine: Engine, prompts: list[Prompt]) -> list[int] | str:
    """Each prompt's length in the engine's tokens (what the physical bound reads), or why not."""
    try:
        return engine.count_tokens([p.text for p in prompts])
    except NotImplementedError as exc:
        return str(exc)


def run_group(
    group: GroupSpec, engine_factory: EngineFactory = default_engine, *, telemetry: bool = True
) -> list[TrialResult]:
    """Run the group's missing trials; return the results written by this call. ``telemetry``
    off runs the timed loops unsampled (the overhead benchmark's other side)."""
    if group.group_shared:
        share_with_group()
    store = ResultStore(group.output_root)
    pending = [t for t in group.trials if store.done(t, prune_oom=group.prune_oom) is None]
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
        engine.expect([p.text for p in prompts])
        t0 = time.perf_counter()
        engine.load()
        if any(t.output_length == "reference" for t in pending):
            prompts = with_reference_tokens(prompts, engine.count_tokens)
    except Exception as exc:
        # The model could not start: every pending trial gets the reason (OOM at load included).
        rec = Recorder(group, ["unknown"], None, batching=batching(engine))
        status = "oom" if engine.is_oom(exc) else "error"
        for t in pending:
            record(rec.result(t, started_at, status=status, error=error_text(exc)))
        engine.close()  # a failed start may hold memory and worker processes too
        return written
    load_s = time.perf_counter() - t0
    rec = Recorder(
        group,
        engine.devices(),
        load_s,
        engine.kv_cache_blocks(),
        engine.resolved(),
        engine.unmeasured(),
        batching=batching(engine),
        deterministic=engine.deterministic_on(),
        arch=architecture(group.first.model, group.model_path),
        prompt_tokens=_prompt_tokens(engine, prompts),
        telemetry=telemetry,
    )
    try:
        with once_per_trial():
            rec.group_warmup_s = warm_up_group(engine, pending[0], prompts, group.warmup_batches)
        for trial in pending:
            limit = pruned_by(trial, oom_at)
            if limit is not None:
                record(rec.result(trial, utcnow(), status="skipped_oom", error=f"OOM at batch {limit} in this series"))
                continue
            why = _enough(store, group, trial)
            if why is not None:
                record(rec.result(trial, utcnow(), status="skipped_enough", error=why, stop_reason="target"))
                continue
            with once_per_trial():  # a library's per-batch warning, once in the job's log
                try:
                    warmup_s = warm_up(engine, trial, prompts, trial.warmup_batches)
                except Exception as exc:  # the timed loop would fail alike: the failure is the trial's outcome
                    engine.recover()
                    status = "oom" if engine.is_oom(exc) else "error"
                    result = rec.result(trial, utcnow(), status=status, error="in warm-up: " + error_text(exc))
                else:
                    result = runner(trial.scenario.kind)(engine, trial, prompts, rec, group.trial_timeout_s)
                    result.warmup_s = warmup_s
            _stopped_at_max(store, group, result)
            record(result)
            if result.status == "oom" and group.prune_oom:
                oom_at[trial.series] = min(oom_at.get(trial.series, trial.batch_size), trial.batch_size)
    finally:
        engine.close()
    return written
