"""The trial runner: what a job executes on a compute node.

It loads the engine once for a group, runs the group's trials in order (batch size ascending
within each series), and writes one result per trial as soon as it finishes. Trials that
already have a result are skipped, so a requeued or rerun job resumes where it stopped. An
out-of-memory error ends a trial with status ``oom`` and, with pruning on, larger batches of
the same series (online: and the same batch at its other request rates) are recorded
``skipped_oom`` without running; a rerun without pruning runs them. A trial runs through its
scenario's runner: :func:`run_trial` here (offline, the study's protocol), or
:func:`infpop.scenarios.online.run_online`, after the trial's untimed warm-up batches
(:mod:`infpop.warmup`).

Only light imports here: the engine module brings torch when the group actually runs.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path

from infpop import provenance
from infpop.engines import engine_class
from infpop.engines.base import Engine
from infpop.filemodes import share_with_group
from infpop.plan import GroupSpec, TrialSpec
from infpop.results import Provenance, ResultStore, TrialResult, utcnow
from infpop.scenarios.metrics import validity
from infpop.warmup import warm_up, warm_up_group
from infpop.workloads import Prompt, load_prompts, new_tokens, with_reference_tokens

EngineFactory = Callable[[GroupSpec], Engine]


def default_engine(group: GroupSpec) -> Engine:
    t = group.first
    return engine_class(t.engine)(
        t.model, model_path=group.model_path, n_gpus=t.n_gpus, dtype=t.dtype, options=t.engine_options
    )


def _error_text(exc: BaseException) -> str:
    """The exception and the innermost frames: enough to act on, bounded in size."""
    tail = traceback.format_exception(exc)[-4:]
    return "".join(tail)[-4000:]


class _Run:
    """State shared by the trials of one group run."""

    def __init__(self, group: GroupSpec, gpus: list[str], load_s: float | None):
        self.group = group
        self.gpus = gpus
        self.load_s = load_s
        self.group_warmup_s: float | None = None
        self.versions = provenance.library_versions()
        self.image, self.image_sha = provenance.container()

    def result(self, trial: TrialSpec, started_at: str, **fields) -> TrialResult:
        prov = Provenance(
            host=provenance.host(),
            gpus=self.gpus,
            versions=self.versions,
            manifest_sha256=self.group.manifest_sha256,
            slurm=provenance.slurm_ids(),
            container_image=self.image,
            container_sha256=self.image_sha,
            started_at=started_at,
            finished_at=utcnow(),
        )
        return TrialResult(
            trial=trial, provenance=prov, load_s=self.load_s, group_warmup_s=self.group_warmup_s, **fields
        )

    def measured(
        self,
        trial: TrialSpec,
        started_at: str,
        *,
        status: str,
        n_prompts: int,
        generated_tokens: int,
        wall_s: float,
        **fields,
    ) -> TrialResult:
        """The result of a trial that ran, in any scenario: throughput and validity are decided
        here once. A trial that generated nothing has no throughput (never a zero)."""
        valid, why = validity(trial.scenario, status, wall_s, n_prompts)
        return self.result(
            trial,
            started_at,
            status=status,
            n_prompts=n_prompts,
            generated_tokens=generated_tokens,
            wall_s=wall_s,
            throughput=generated_tokens / wall_s if generated_tokens else None,
            valid=valid,
            invalid_reason=why,
            **fields,
        )


def run_trial(
    engine: Engine, trial: TrialSpec, prompts: list[Prompt], run: _Run, timeout_s: float | None
) -> TrialResult:
    """Send every prompt in batches of ``trial.batch_size``; time only the inference loop."""
    started_at = utcnow()
    latencies: list[float] = []
    prompt_tokens = generated = 0
    status, error = "ok", None
    texts = [p.text for p in prompts]
    b = trial.batch_size
    loop_start = time.perf_counter()
    for i in range(0, len(texts), b):
        t0 = time.perf_counter()
        try:
            asked = new_tokens(prompts[i : i + b], trial.output_length, trial.max_new_tokens)
            out = engine.generate(texts[i : i + b], b, asked)
        except Exception as exc:  # an engine failure is an outcome to record, not a crash
            status = "oom" if engine.is_oom(exc) else "error"
            error = _error_text(exc)
            engine.recover()
            break
        latencies.append(time.perf_counter() - t0)
        prompt_tokens += out.prompt_tokens
        generated += out.generated_tokens
        if timeout_s is not None and time.perf_counter() - loop_start > timeout_s and i + b < len(texts):
            status, error = "timeout", f"trial_timeout_s={timeout_s} reached after {i + b} of {len(texts)} prompts"
            break
    # The whole loop, bookkeeping between batches included: what a user of the engine would see.
    wall = time.perf_counter() - loop_start
    return run.measured(
        trial,
        started_at,
        status=status,
        error=error,
        n_prompts=len(texts),
        prompt_tokens=prompt_tokens,
        generated_tokens=generated,
        wall_s=wall,
        batch_latencies_s=latencies,
    )


def _runner(trial: TrialSpec) -> Callable[[Engine, TrialSpec, list[Prompt], _Run, float | None], TrialResult]:
    """The trial's scenario runner; the online one is imported only when a trial needs it."""
    if trial.scenario.kind == "online":
        from infpop.scenarios.online import run_online

        return run_online
    return run_trial


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


def run_group(group: GroupSpec, engine_factory: EngineFactory = default_engine) -> list[TrialResult]:
    """Run the group's missing trials; return the results written by this call."""
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
        t0 = time.perf_counter()
        engine.load()
        if any(t.output_length == "reference" for t in pending):
            prompts = with_reference_tokens(prompts, engine.count_tokens)
    except Exception as exc:
        # The model could not start: every pending trial gets the reason (OOM at load included).
        run = _Run(group, ["unknown"], None)
        status = "oom" if engine.is_oom(exc) else "error"
        for t in pending:
            record(run.result(t, started_at, status=status, error=_error_text(exc)))
        return written
    run = _Run(group, engine.devices(), time.perf_counter() - t0)
    try:
        run.group_warmup_s = warm_up_group(engine, pending[0], prompts, group.warmup_batches)
        for trial in pending:
            limit = pruned_by(trial, oom_at)
            if limit is not None:
                record(run.result(trial, utcnow(), status="skipped_oom", error=f"OOM at batch {limit} in this series"))
                continue
            try:
                warmup_s = warm_up(engine, trial, prompts, trial.warmup_batches)
            except Exception as exc:  # the timed loop would fail alike: the failure is the trial's outcome
                engine.recover()
                status = "oom" if engine.is_oom(exc) else "error"
                result = run.result(trial, utcnow(), status=status, error="in warm-up: " + _error_text(exc))
            else:
                result = _runner(trial)(engine, trial, prompts, run, group.trial_timeout_s)
                result.warmup_s = warmup_s
            record(result)
            if result.status == "oom" and group.prune_oom:
                oom_at[trial.series] = min(oom_at.get(trial.series, trial.batch_size), trial.batch_size)
    finally:
        engine.close()
    return written
