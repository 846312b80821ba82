"""Submitting a plan: the groups with missing trials become submitit jobs.

The local executor (the embedded default) runs jobs as real subprocesses on this machine, a
bounded number at a time, and shows progress over trials. SLURM submission lives in
:mod:`infpop.slurm`; both share the group files and the resume rule (a trial with a result
on disk is never run again). A sweep holds its study's lock (:mod:`infpop.sweeplock`) while it
decides what is missing and runs or submits it, so two sweeps of one study never both run a trial.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import submitit
from tqdm import tqdm

from infpop.filemodes import share_study_with_group
from infpop.joblogs import failure_note
from infpop.jobs import group_job, study_dir
from infpop.plan import GroupSpec
from infpop.profile import PartitionProfile
from infpop.results import CorruptResult, ResultStore, utcnow
from infpop.sweeplock import sweep_lock


@dataclass
class SweepReport:
    submitted: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    trials_to_run: int = 0
    #: group id -> job id of groups not submitted again because their last job is still queued.
    queued: dict[str, str] = field(default_factory=dict)


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


def log_submission(group: GroupSpec, job_id: str, partition: str, **extra: str) -> None:
    """Append to the study's submission log, which ``infpop status`` reads (``extra``: executor, log path)."""
    path = study_dir(group.output_root, group.first.study) / "submissions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"job_id": job_id, "group": group.group_id, "partition": partition, "submitted_at": utcnow(), **extra}
    with open(path, "a") as fh:
        fh.write(json.dumps(entry) + "\n")


def run_local(
    groups: Sequence[GroupSpec], partition: str, part: PartitionProfile, tick: Callable[[], None] = lambda: None
) -> SweepReport:
    """Run groups through submitit's local executor, ``array_parallelism`` at a time; ``tick`` is
    called while they run (the sweep lock's refresh)."""
    report = SweepReport()
    todo = pending_groups(groups)
    report.trials_to_run = sum(n for _, n in todo)
    if not todo:
        return report
    folder = study_dir(todo[0][0].output_root, todo[0][0].first.study) / "logs" / "%j"
    executor = submitit.LocalExecutor(folder=folder)
    all_groups = [g for g, _ in todo]
    paths = [ResultStore(g.output_root).path(t) for g in all_groups for t in g.trials]
    started = time.time()
    queue = list(todo)
    running: list[tuple[GroupSpec, submitit.Job]] = []
    with tqdm(total=report.trials_to_run, unit="trial", desc=f"{partition}", disable=None) as bar:
        while queue or running:
            while queue and len(running) < part.array_parallelism:
                group, _ = queue.pop(0)
                executor.update_parameters(timeout_min=part.time_min, gpus_per_node=_local_gpus(part, group))
                job = executor.submit(group_job(group, cpu_threads=part.cpus_per_gpu))
                log_submission(group, job.job_id, partition, executor="local", log=str(job.paths.stderr))
                report.submitted.append(group.group_id)
                report.job_ids.append(job.job_id)
                running.append((group, job))
            time.sleep(0.5)
            tick()
            for group, job in [r for r in running if r[1].done()]:
                running.remove((group, job))
                try:
                    job.result()
                except Exception:  # a crashed job: its finished trials are on disk already
                    report.failed[group.group_id] = failure_note(job.paths.stderr)
            bar.n = _written_since(paths, started)
            bar.refresh()
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


def _local_gpus(part: PartitionProfile, group: GroupSpec) -> int:
    """GPUs submitit's local executor exposes through CUDA_VISIBLE_DEVICES (none on a CPU machine)."""
    return group.n_gpus if part.resolved_gpus_per_node() is not None else 0


def submit(groups: Sequence[GroupSpec], partition: str, part: PartitionProfile) -> SweepReport:
    """Run (local) or submit (SLURM) the groups' missing trials, holding the study's sweep lock:
    raises :class:`infpop.sweeplock.StudyLocked` while another sweep of the study holds it."""
    if not groups:
        return SweepReport()
    if groups[0].group_shared:
        # group files, logs, the submission log and the lock too
        share_study_with_group(Path(groups[0].output_root) / groups[0].first.study)
    with sweep_lock(study_dir(groups[0].output_root, groups[0].first.study), partition) as lock:
        if part.executor == "local":
            return run_local(groups, partition, part, tick=lock.refresh)
        from infpop.slurm import submit_arrays

        return submit_arrays(groups, partition, part)
