"""This machine: submitit's local executor runs each job as a subprocess of the submitting one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import submitit

from infpop.executors.base import Executor, one_gpu_count
from infpop.plan import GroupSpec


class LocalExecutor(Executor):
    """Jobs on this machine; the caller bounds how many run at once (``array_parallelism``)."""

    kind = "local"
    refused = "the local executor could not start the job"

    def _submitit(self) -> submitit.Executor:
        return submitit.LocalExecutor(folder=self.folder)

    def parameters(self, groups: Sequence[GroupSpec]) -> dict[str, Any]:
        """The time limit, and the GPUs submitit exposes through CUDA_VISIBLE_DEVICES (none on a CPU machine)."""
        n = one_gpu_count(groups)
        return {
            "timeout_min": self.part.time_min,
            "gpus_per_node": n if self.part.resolved_gpus_per_node() is not None else 0,
        }

    def cpu_threads(self, groups: Sequence[GroupSpec]) -> int:
        return self.part.cpus_per_gpu
