"""SLURM through submitit: one job array per GPU count, one array task per group.

Groups with different GPU counts need different GRES requests, so a plan becomes one array per
distinct ``n_gpus``; every task of an array asks for exactly ``gpu:<type>:<n>`` on the
partition's node. What to request is decided by pure functions (:func:`split_arrays`,
:func:`sbatch_parameters`) and rendered by submitit's own sbatch writer, so ``--dry-run``, the
golden files and the real submission are the same text. State queries are thin wrappers around
``sacct``/``squeue``.

A task that reaches its time limit or is preempted gets USR2, checkpoints (``GroupJob`` is
``Checkpointable``) and is requeued; the rerun skips every trial with a result on disk.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import submitit
from submitit.slurm import slurm as submitit_slurm

from infpop.executors.base import Executor, one_gpu_count
from infpop.plan import GroupSpec
from infpop.profile import PartitionProfile

#: SLURM states in which a job still holds (or waits for) its resources: never submit twice.
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "RUNNING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "CONFIGURING",
        "COMPLETING",
        "RESIZING",
        "SUSPENDED",
        "STAGE_OUT",
        "SIGNALING",
    }
)
#: Final states that did not finish the job's work: their logs are worth reading.
FAILED_STATES = frozenset(
    {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
)


def split_arrays(groups: Sequence[GroupSpec]) -> list[list[GroupSpec]]:
    """One array per GPU count (a GRES request is per array), fewest GPUs first, plan order kept."""
    by_n: dict[int, list[GroupSpec]] = {}
    for g in groups:
        by_n.setdefault(g.n_gpus, []).append(g)
    return [by_n[n] for n in sorted(by_n)]


def signal_delay_s(time_min: int) -> int:
    """Seconds before the limit at which USR2 (checkpoint and requeue) is asked for.

    submitit's 90 s, except for short limits: slurmctld checks limits every 30 s and sends the
    signal once ``delay + 30 s`` covers what is left, so a 1-minute job with the default would be
    stopped at its first check; this keeps the first half of a short job for work.
    """
    return max(1, min(90, time_min * 30 - 30))


def array_job_name(groups: Sequence[GroupSpec], partition: str) -> str:
    """Says what runs: the group's own name when the array is one (engine, model), else the
    study, partition and GPU count."""
    first = groups[0].first
    if len({(g.first.engine, g.first.model.name) for g in groups}) == 1:
        return groups[0].job_name
    return f"infpop-{first.study}-{partition}-g{first.n_gpus}"


def sbatch_parameters(groups: Sequence[GroupSpec], partition: str, part: PartitionProfile) -> dict[str, Any]:
    """submitit SlurmExecutor parameters for one array: exactly the GPUs its groups need."""
    n = one_gpu_count(groups)
    params: dict[str, Any] = {
        "job_name": array_job_name(groups, partition),
        "partition": part.slurm_partition,
        "time": part.time_min,
        "nodes": 1,
        "cpus_per_task": part.cpus_per_gpu * n,
        "array_parallelism": part.array_parallelism,
        "signal_delay_s": signal_delay_s(part.time_min),
    }
    if part.gpu_type:
        params["gres"] = f"gpu:{part.gpu_type}:{n}"
    else:
        params["gpus_per_node"] = n
    if part.mem_per_gpu_gb is not None:
        params["mem"] = f"{part.mem_per_gpu_gb * n}GB"
    for key in ("account", "qos", "constraint"):
        value = getattr(part, key)
        if value is not None:
            params[key] = value
    return params


def _python() -> str:
    return shlex.quote(sys.executable)


def render_sbatch(
    groups: Sequence[GroupSpec], partition: str, part: PartitionProfile, folder: Path, python: str | None = None
) -> str:
    """The sbatch script submitit writes for this array (logs under ``folder``), rendered by submitit itself."""
    # submitit's own command line for the executor (its property, evaluated without an executor,
    # which would need srun on PATH).
    command = submitit.SlurmExecutor._submitit_command_str.fget(
        SimpleNamespace(python=python or _python(), folder=folder)
    )
    return submitit_slurm._make_sbatch_string(
        command=command,
        folder=folder,
        map_count=len(groups) if len(groups) > 1 else None,
        **sbatch_parameters(groups, partition, part),
    )


class SlurmExecutor(Executor):
    """sbatch job arrays: one per GPU count, each task one group, run and throttled by SLURM."""

    kind = "slurm"
    detached = True
    refused = "sbatch refused the array"

    def _submitit(self) -> submitit.Executor:
        return submitit.SlurmExecutor(folder=self.folder)

    def parameters(self, groups: Sequence[GroupSpec]) -> dict[str, Any]:
        return sbatch_parameters(groups, self.partition, self.part)

    def cpu_threads(self, groups: Sequence[GroupSpec]) -> int:
        return self.part.cpus_per_gpu * one_gpu_count(groups)

    def arrays(self, groups: Sequence[GroupSpec]) -> list[list[GroupSpec]]:
        return split_arrays(groups)

    def active(self, job_ids: Iterable[str]) -> set[str]:
        """Jobs SLURM still queues or runs: a sweep never submits their groups twice."""
        return {j for j, state in job_states(job_ids).items() if state in ACTIVE_STATES}


def _parse_states(sacct_like: str) -> dict[str, str]:
    """``JobID|State`` lines (array ranges expanded by submitit's parser) -> state word per id."""
    info = submitit_slurm.SlurmInfoWatcher().read_info(sacct_like)
    # sacct prints "CANCELLED by 0"; keep the state word. Steps ("123.0", "123.batch") are skipped.
    return {jid: fields.get("State", "UNKNOWN").split()[0] for jid, fields in info.items() if "." not in jid}


def _query(argv: list[str], tries: int = 1) -> str:
    """stdout of a SLURM client command; ``""`` if it fails ``tries`` times (a busy controller times out)."""
    for attempt in range(tries):
        if attempt:
            time.sleep(2)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return done.stdout
    return ""


def job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """SLURM state of each job id (``123`` or ``123_4``); ``UNKNOWN`` where SLURM has no record.

    squeue (the controller's live view) wins over sacct: while a job is being requeued, its
    accounting record can briefly show the ended run (FAILED) although the job is queued again.
    sacct supplies final states; without accounting, jobs that left the queue are UNKNOWN.
    """
    job_ids = list(job_ids)
    ids = ",".join(sorted({j.split("_")[0] for j in job_ids}))
    if not ids:
        return {}
    for attempt in range(2):
        found = _parse_states("JobID|State\n" + _query(["sacct", "-n", "-o", "JobID,State", "--parsable2", "-j", ids]))
        live = _parse_states("JobID|State\n" + _query(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ids], tries=3))
        found.update({j: s for j, s in live.items() if s in ACTIVE_STATES})
        states = {j: found.get(j, "UNKNOWN") for j in job_ids}
        # A run that ends in a requeue is recorded FAILED for a moment before the job is queued
        # again, while the controller still lists it: such a failure is only believed when a
        # second look, a few seconds later, agrees. A failed job the controller no longer lists
        # has ended for good, and ``infpop status`` need not wait to say so.
        if attempt or not any(s in FAILED_STATES and j in live for j, s in states.items()):
            return states
        time.sleep(3)
    return states


def job_elapsed(job_ids: Iterable[str]) -> dict[str, int]:
    """Seconds each job ran, from accounting (``sacct``'s ElapsedRaw); absent where unknown."""
    job_ids = list(job_ids)
    ids = ",".join(sorted({j.split("_")[0] for j in job_ids}))
    if not ids:
        return {}
    out = _query(["sacct", "-n", "-o", "JobID,ElapsedRaw", "--parsable2", "-j", ids])
    info = submitit_slurm.SlurmInfoWatcher().read_info("JobID|ElapsedRaw\n" + out)
    found = {j: f.get("ElapsedRaw", "") for j, f in info.items() if "." not in j}
    return {j: int(found[j]) for j in job_ids if found.get(j, "").isdigit()}
