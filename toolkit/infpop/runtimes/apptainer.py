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

from infpop.runtimes.base import (
    IMAGE_ENV,
    INFPOP_COMMANDS,
    SOURCE_COPIES,
    BuildOptions,
    ContainerRuntime,
    dependency_copies,
    describe,
    image_labels,
    install_commands,
    recipe_header,
    run_step,
    smoke_test,
)

if TYPE_CHECKING:
    from infpop.binds import Bind
    from infpop.container import ImageLock


class Apptainer(ContainerRuntime):
    name = "apptainer"
    recipe_suffix = ".def"
    image_suffix = ".sif"
    build_tools = ("apptainer",)

    def recipe(self, lock: ImageLock) -> str:
        lines = recipe_header(lock, "stages the build context and runs apptainer build in it")
        if lock.debootstrap is not None:
            deb = lock.debootstrap
            lines += [
                "Bootstrap: debootstrap",
                f"OSVersion: {deb['suite']}",
                f"MirrorURL: {deb['mirror']}",
                f"Include: {' '.join(deb['include'])}",
            ]
        else:
            lines += ["Bootstrap: docker", f"From: {lock.base}"]
        lines += ["", "%labels", *(f"    {key} {value}" for key, value in image_labels(lock).items())]
        lines += [
            "",
            "%help",
            f"    Runs `python -m infpop trial GROUP_FILE` with the {describe(lock)}:",
            "        apptainer exec --nv --bind /shared IMAGE python -m infpop trial GROUP_FILE",
            "    /opt/infpop/pip-freeze.txt lists every installed package with its version.",
            "",
            "%files",
            *(f"    {src} {dst}" for src, dst in [*dependency_copies(lock), *SOURCE_COPIES]),
            "",
            "%environment",
            "    export PATH=/opt/infpop/venv/bin:$PATH",
            *(f"    export {key}={value}" for key, value in IMAGE_ENV.items()),
            "",
            "%post",
            *(f"    {cmd}" for cmd in [*install_commands(lock), *INFPOP_COMMANDS]),
            "",
            "%test",
            f"    {smoke_test(lock)}",
        ]
        return "\n".join(lines) + "\n"

    def exec_argv(self, image: str, binds: tuple[Bind, ...], env: dict[str, str]) -> list[str]:
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
