"""GPU visibility and names, without importing torch on the login node."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def restrict_visible_gpus(n: int) -> None:
    """Make only the first ``n`` of the currently visible GPUs visible, as the study did.

    Must run before CUDA is initialised; under SLURM the allocation already holds exactly n.
    """
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d for d in visible.split(",") if d.strip()]
    else:
        ids = [str(i) for i in range(len(nvidia_smi_names()))]
    if ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids[:n])


def nvidia_smi_names() -> list[str]:
    """GPU names from nvidia-smi, or [] where there is none (login nodes, CI)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]
