"""The interface every executor offers: submit jobs with the resources of their groups, know
which earlier jobs still hold resources, and wait for one.

An executor wraps one submitit executor. What differs per kind is what to request for a set of
groups (:meth:`Executor.parameters`), which groups go into one submission (:meth:`Executor.arrays`)
and whether a job outlives the process that submitted it (:meth:`Executor.active`); submitting,
waiting and reading a failure are the same for all, so they are written once here.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import submitit

from infpop.joblogs import failure_note
from infpop.plan import GroupSpec
from infpop.profile import PartitionProfile

#: How often :meth:`Executor.wait` looks for a job's end, and the slack beyond its time limit.
POLL_S = 2.0
WAIT_SLACK_S = 120.0


class Executor(ABC):
    """The executor of one partition; its jobs' submitit logs go under ``folder`` (``%j`` per job)."""

    #: The profile's ``executor:`` value, and what the submission log records.
    kind: ClassVar[str]
    #: Whether its jobs run on without the process that submitted them (a scheduler's do); a
    #: sweep waits for the jobs of an executor whose jobs do not.
    detached: ClassVar[bool] = False
    #: What a sweep reports for a submission that raised, before its cause.
    refused: ClassVar[str]

    def __init__(self, partition: str, part: PartitionProfile, folder: Path):
        self.partition = partition
        self.part = part
        self.folder = folder

    @abstractmethod
    def _submitit(self) -> submitit.Executor:
        """A fresh submitit executor writing under :attr:`folder`."""

    @abstractmethod
    def parameters(self, groups: Sequence[GroupSpec]) -> dict[str, Any]:
        """submitit parameters for jobs of ``groups`` (one GPU count): exactly what they need."""

    @abstractmethod
    def cpu_threads(self, groups: Sequence[GroupSpec]) -> int:
        """CPU threads each job of ``groups`` is given (its ``OMP_NUM_THREADS``)."""

    def arrays(self, groups: Sequence[GroupSpec]) -> list[list[GroupSpec]]:
        """How ``groups`` are submitted: each list one submission (default: a group at a time)."""
        return [[g] for g in groups]

    def active(self, job_ids: Iterable[str]) -> set[str]:
        """Those of ``job_ids`` that still hold or wait for resources (default: none, as no job
        outlives the process that submitted it where :attr:`detached` is False)."""
        return set()

    def submit(self, groups: Sequence[GroupSpec], jobs: Sequence[Callable[[], Any]]) -> list[submitit.Job]:
        """Submit ``jobs`` (one per group) in one submission with the resources ``groups`` need."""
        executor = self._submitit()
        executor.update_parameters(**self.parameters(groups))
        with executor.batch():
            submitted = [executor.submit(job) for job in jobs]
        return submitted

    def wait(self, job: submitit.Job) -> str | None:
        """Wait for ``job`` until its time limit (and some slack) is over; return why it failed, or None."""
        deadline = time.monotonic() + self.part.time_min * 60 + WAIT_SLACK_S
        while not job.done() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if not job.done():
            return f"job {job.job_id} still running after its time limit"
        why = failure(job)
        return f"job {job.job_id}: {why}" if why else None


def failure(job: submitit.Job) -> str | None:
    """Why a finished job failed (its cause and the log holding it), or None: a crashed job's
    finished trials are on disk already, so a failure is reported, not raised."""
    try:
        job.result()
    except Exception:
        return failure_note(job.paths.stderr)
    return None


def one_gpu_count(groups: Sequence[GroupSpec]) -> int:
    """The GPU count every job of one submission asks for (a GRES request is per submission)."""
    counts = {g.n_gpus for g in groups}
    if len(counts) != 1:
        raise ValueError(f"a submission needs one GPU count, got {sorted(counts)}")
    return counts.pop()
