"""Submitting a plan: the groups with missing trials become jobs of the partition's executor.

This is the one place a sweep decides what to submit: the groups with a trial lacking a result
(the resume rule: a trial with a result on disk is never run again), minus those whose last job
still holds its resources, submitted through the partition's executor (:mod:`infpop.executors`)
and logged (:mod:`infpop.submissions`). A local sweep runs its jobs on this machine, a bounded
number at a time, and shows progress over trials; a SLURM sweep submits its arrays and returns.
A sweep holds its study's lock (:mod:`infpop.sweeplock`) while it decides what is missing and
runs or submits it, so two sweeps of one study never both run a trial.
"""

from __future__ import annotations

import shlex
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import submitit
from tqdm import tqdm

from infpop.binds import describe
from infpop.executors.base import Executor, failure
from infpop.executors.slurm import render_sbatch, split_arrays
from infpop.filemodes import share_study_with_group
from infpop.jobs import group_job, job_argv, study_dir
from infpop.launch import LaunchOptions
from infpop.manifest import LoadedManifest
from infpop.plan import GroupSpec, plan
from infpop.plugins import EXECUTORS
from infpop.profile import ClusterProfile, PartitionProfile
from infpop.results import CorruptResult, ResultStore
from infpop.submissions import JobRecord, latest, log_submission, read_submissions
from infpop.sweeplock import sweep_lock


@dataclass
class SweepReport:
    submitted: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    trials_to_run: int = 0
    #: group id -> job id of groups not submitted again because their last job is still queued.
    queued: dict[str, str] = field(default_factory=dict)


def plan_jobs(
    loaded: LoadedManifest,
    profile: ClusterProfile,
    partition: str,
    *,
    output_root: Path | None = None,
    prune_oom: bool | None = None,
    containers: bool = True,
    strict: bool = False,
) -> list[GroupSpec]:
    """The groups a sweep or a live search of ``partition`` submits, planned with the profile's
    runtime (its images, ``shared_roots`` binds and model cache) and group sharing, so their
    jobs launch alike; ``strict`` also refuses what the jobs would fail on (an unbuilt image)."""
    return plan(
        loaded,
        partition,
        profile.partition(partition),
        output_root=output_root,
        prune_oom=prune_oom,
        launch=LaunchOptions.from_profile(profile, containers=containers, strict=strict),
        group_shared=profile.group_shared,
    )


def pending_groups(groups: Sequence[GroupSpec]) -> list[tuple[GroupSpec, int]]:
    """Groups with at least one trial lacking a finished result, with how many are missing."""
    out = []
    for g in groups:
        store = ResultStore(g.output_root)
        missing = sum(store.done(t, prune_oom=g.prune_oom) is None for t in g.trials)
        if missing:
            out.append((g, missing))
    return out


def count_done(groups: Sequence[GroupSpec]) -> int:
    return sum(ResultStore(g.output_root).done(t, prune_oom=g.prune_oom) is not None for g in groups for t in g.trials)


def status_counts(groups: Sequence[GroupSpec]) -> Counter[str]:
    """Statuses of the groups' trials on disk; ``missing`` where no readable result exists."""
    counts: Counter[str] = Counter()
    for g in groups:
        store = ResultStore(g.output_root)
        for t in g.trials:
            try:
                result = store.read(t)
            except CorruptResult:
                result = None
            counts[result.status if result else "missing"] += 1
    return counts


def log_folder(group: GroupSpec) -> Path:
    """submitit's folder: per-job logs land in ``<root>/<study>/.infpop/logs/<job>/``."""
    return study_dir(group.output_root, group.first.study) / "logs" / "%j"


def executor_for(partition: str, part: PartitionProfile, folder: Path) -> Executor:
    """The executor of the partition's kind (``executor:`` in its profile), logging under ``folder``."""
    return EXECUTORS.load(part.executor)(partition, part, folder)


def record(job: submitit.Job, executor: Executor) -> JobRecord:
    """A submitted job as the submission log and a search's state record it."""
    return JobRecord(
        job_id=str(job.job_id), partition=executor.partition, executor=executor.kind, log=str(job.paths.stderr)
    )


def _submit(executor: Executor, groups: Sequence[GroupSpec], report: SweepReport) -> list[submitit.Job]:
    """Submit ``groups`` in one submission and log each job; a refused submission is reported, not raised."""
    try:
        jobs = executor.submit(groups, [group_job(g, cpu_threads=executor.cpu_threads(groups)) for g in groups])
    except Exception as exc:  # e.g. sbatch refused (bad partition, account, limits): name it, go on
        for g in groups:
            report.failed[g.group_id] = f"{executor.refused}: {str(exc).strip().splitlines()[-1]}"
        return []
    for g, job in zip(groups, jobs):
        log_submission(study_dir(g.output_root, g.first.study), g.group_id, record(job, executor))
        report.submitted.append(g.group_id)
        report.job_ids.append(job.job_id)
    return jobs


def still_active(groups: Sequence[GroupSpec], executor: Executor) -> dict[str, str]:
    """Group id -> job id, for groups whose last job of this executor's kind still holds or waits for resources."""
    wanted = {g.group_id for g in groups}
    last = {}
    for root, study in {(g.output_root, g.first.study) for g in groups}:
        entries = latest(read_submissions(study_dir(root, study)))
        last.update({g: e.job_id for g, e in entries.items() if g in wanted and e.executor == executor.kind})
    active = executor.active(last.values()) if last else set()
    return {g: job_id for g, job_id in last.items() if job_id in active}


def run_local(
    groups: Sequence[GroupSpec], partition: str, part: PartitionProfile, tick: Callable[[], None] = lambda: None
) -> SweepReport:
    """Run the groups' jobs here and wait for them, ``array_parallelism`` at a time (an executor
    whose jobs end with this process); ``tick`` is called while they run (the sweep lock's refresh)."""
    report = SweepReport()
    todo = pending_groups(groups)
    report.trials_to_run = sum(n for _, n in todo)
    if not todo:
        return report
    executor = executor_for(partition, part, log_folder(todo[0][0]))
    paths = [ResultStore(g.output_root).path(t) for g, _ in todo for t in g.trials]
    started = time.time()
    queue = executor.arrays([g for g, _ in todo])
    running: list[tuple[str, submitit.Job]] = []
    with tqdm(total=report.trials_to_run, unit="trial", desc=executor.partition, disable=None) as bar:
        while queue or running:
            while queue and len(running) < executor.part.array_parallelism:
                array = queue.pop(0)
                running += zip([g.group_id for g in array], _submit(executor, array, report))
            time.sleep(0.5)
            tick()
            for group_id, job in [r for r in running if r[1].done()]:
                running.remove((group_id, job))
                if (why := failure(job)) is not None:
                    report.failed[group_id] = why
            bar.n = _written_since(paths, started)
            bar.refresh()
    return report


def submit_arrays(groups: Sequence[GroupSpec], partition: str, part: PartitionProfile) -> SweepReport:
    """Submit the groups with missing trials to a scheduler, except those whose last job is still
    queued or running."""
    report = SweepReport()
    todo = pending_groups(groups)
    if not todo:
        return report
    executor = executor_for(partition, part, log_folder(todo[0][0]))
    report.queued = still_active([g for g, _ in todo], executor)
    todo = [(g, n) for g, n in todo if g.group_id not in report.queued]
    report.trials_to_run = sum(n for _, n in todo)
    for array in executor.arrays([g for g, _ in todo]):
        _submit(executor, array, report)
    return report


def _written_since(paths: Sequence[Path], since: float) -> int:
    """Results written since ``since``: progress from file times, without parsing records (a
    result file is renamed into place only once its trial is over)."""
    count = 0
    for p in paths:
        try:
            count += p.stat().st_mtime >= since
        except FileNotFoundError:
            continue
    return count


def submit(groups: Sequence[GroupSpec], partition: str, part: PartitionProfile) -> SweepReport:
    """Run (local) or submit (SLURM) the groups' missing trials, holding the study's sweep lock:
    raises :class:`infpop.sweeplock.StudyLocked` while another sweep of the study holds it."""
    if not groups:
        return SweepReport()
    if groups[0].group_shared:
        # group files, logs, the submission log and the lock too
        share_study_with_group(Path(groups[0].output_root) / groups[0].first.study)
    with sweep_lock(study_dir(groups[0].output_root, groups[0].first.study), partition) as lock:
        if EXECUTORS.load(part.executor).detached:
            return submit_arrays(groups, partition, part)
        return run_local(groups, partition, part, tick=lock.refresh)


def dry_run(groups: Sequence[GroupSpec], partition: str, part: PartitionProfile, python: str | None = None) -> str:
    """What ``infpop sweep`` would submit: each array's sbatch script and the groups of its tasks."""
    if part.executor != "slurm":
        return f"partition {partition!r} runs locally (executor {part.executor!r}): no sbatch script"
    todo = [g for g, _ in pending_groups(groups)]
    if not todo:
        return "nothing to submit: every trial has a result"
    out = []
    arrays = split_arrays(todo)
    for i, array in enumerate(arrays, 1):
        out.append(
            f"# ---- array {i}/{len(arrays)}: {len(array)} task(s), {array[0].n_gpus} GPU(s) each, partition {partition!r}"
        )
        for k, g in enumerate(array):
            out += [f"# task {k}: {g.group_id} ({len(g.trials)} trials)", f"#   runs: {shlex.join(job_argv(g))}"]
            out += [f"#   binds: {line}" for line in describe(g.binds, part.runtime)]
        out.append(render_sbatch(array, partition, part, log_folder(array[0]), python))
    return "\n".join(out)
