"""Apptainer (and Singularity): the runtime of most university clusters, and the default.

An image is one SIF file built from ``containers/<name>.def``; a job enters it with
``apptainer exec --nv --bind SRC:DST[:ro],... --env K=V ... IMAGE python``. ``--nv`` binds the
host's NVIDIA driver and the GPUs SLURM gave the job; the image stays read-only. Apptainer
creates missing mount points (and binds single files), so every bind keeps its host path.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from infpop.images.build import run_step
from infpop.runtimes.base import Bind, ContainerRuntime

if TYPE_CHECKING:
    from infpop.images.context import BuildOptions
    from infpop.images.lock import ImageLock


class Apptainer(ContainerRuntime):
    name = "apptainer"
    recipe_suffix = ".def"
    image_suffix = ".sif"
    build_tools = ("apptainer",)

    def exec_argv(self, image: str, binds: tuple[Bind, ...], env: dict[str, str], gpus: bool = False) -> list[str]:
        # --nv on every partition: it binds the driver where there is one and only warns elsewhere.
        argv = ["apptainer", "exec", "--nv"]
        if binds:
            argv += ["--bind", ",".join(_bind_spec(b) for b in binds)]
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, image, "python"]

    def build(self, lock: ImageLock, context: Path, image: Path, opts: BuildOptions) -> None:
        # Unprivileged builds need --fakeroot (or user namespaces, which apptainer then uses itself).
        help_text = subprocess.run(["apptainer", "build", "--help"], capture_output=True, text=True).stdout
        fakeroot = ["--fakeroot"] if os.geteuid() != 0 and "--fakeroot" in help_text else []
        # %files paths are relative to the directory apptainer build runs in: the staged context.
        recipe = f"{lock.name}{self.recipe_suffix}"
        run_step(["apptainer", "build", *fakeroot, "--force", str(image.resolve()), recipe], opts, cwd=context)


def _bind_spec(bind: Bind) -> str:
    """``SRC`` where it is seen at its own path and writable, else ``SRC:DST`` (``:ro`` read-only)."""
    if bind.source == bind.target and bind.writable:
        return bind.source
    return f"{bind.source}:{bind.target}" + ("" if bind.writable else ":ro")


RUNTIME = Apptainer()
