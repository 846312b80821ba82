"""Building images: each one staged, built by its runtime unless up to date, and its digest written.

For every target, the lock's recipe in its runtime's format is staged with infpop's sources into
a build context (:mod:`infpop.images.context`), the runtime builds the image at its path, and
``IMAGE.sha256`` is written beside it (results record it; jobs do not hash gigabytes at every
submission). An image whose staged context has not changed since it was built (``IMAGE.inputs``)
is kept. Images build side by side, each logging to ``IMAGE.build.log``: a build spends long
stretches waiting on the network (pip) while another compresses (SquashFS), so two builds on two
cores take well under the time of one after the other.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from infpop.checksums import file_sha256
from infpop.errors import InputError
from infpop.images.context import BuildOptions, stage_context, tree_digest
from infpop.images.lock import CONTAINERS_DIR, ImageLock
from infpop.images.recipe import render

REPO = CONTAINERS_DIR.parent


class Builder(Protocol):
    """What a build needs of a container runtime (:class:`infpop.runtimes.base.ContainerRuntime`):
    its name, the tools it runs, the recipe format it builds from, and its build command."""

    name: str
    build_tools: tuple[str, ...]
    recipe_suffix: str

    def build(self, lock: ImageLock, context: Path, image: Path, opts: BuildOptions) -> None: ...


@dataclass(frozen=True)
class Target:
    lock: ImageLock
    runtime: Builder
    image: Path
    #: Shared roots of the profile: where jobs bind host folders into the image.
    mount_points: tuple[str, ...] = ()


def run_step(argv: list[str], opts: BuildOptions, **kwargs: Any) -> None:
    """Run one build command (raising on failure), its output to ``opts.log`` when set."""
    if opts.log is None:
        subprocess.run(argv, check=True, **kwargs)
        return
    with opts.log.open("a") as out:
        subprocess.run(argv, check=True, stdout=out, stderr=subprocess.STDOUT, **kwargs)


def build(target: Target, opts: BuildOptions) -> bool:
    """Build one image unless it is up to date; True when it was built."""
    rt, image = target.runtime, target.image
    opts = replace(opts, mount_points=target.mount_points)
    missing = [tool for tool in rt.build_tools if shutil.which(tool) is None]
    if missing:
        raise InputError(
            f"make containers: {', '.join(missing)} not installed on this machine, needed by runtime {rt.name!r} "
            f"for {image}; build on a node that has it, or copy the images to the profile's paths"
        )
    context = stage_context(
        target.lock,
        render(target.lock, rt.recipe_suffix),
        f"{target.lock.name}{rt.recipe_suffix}",
        REPO,
        opts,
        opts.cache.parent / "context" / f"{target.lock.name}-{rt.name}",
    )
    inputs = tree_digest(context)
    stamp = Path(f"{image}.inputs")
    if image.is_file() and stamp.is_file() and stamp.read_text().strip() == inputs:
        print(f"up to date: {image}")
        return False
    image.parent.mkdir(parents=True, exist_ok=True)
    where = f", log {opts.log}" if opts.log is not None else ""
    print(f"building {image} with {rt.name} (context {context}{where})", flush=True)
    if opts.log is not None:
        opts.log.write_text("")
    rt.build(target.lock, context, image, opts)
    Path(f"{image}.sha256").write_text(f"{file_sha256(image)}  {image.name}\n")
    stamp.write_text(inputs + "\n")
    return True


def build_all(targets: Sequence[Target], opts: BuildOptions, jobs: int = 1) -> list[str]:
    """Build every target, ``jobs`` at a time; the failures, one line each (empty: all built).

    One failed build does not stop the others: what did build is kept, and a rerun builds only
    the rest (an image is built to ``IMAGE.part`` and moved into place when whole).
    """
    if jobs < 1:
        raise InputError(f"make containers: JOBS (--jobs) is {jobs}; it must be at least 1")

    def one(target: Target) -> str | None:
        log = Path(f"{target.image}.build.log") if jobs > 1 else None
        try:
            build(target, replace(opts, log=log))
        except (subprocess.CalledProcessError, RuntimeError) as err:
            tail = "".join(log.read_text().splitlines(keepends=True)[-40:]) if log is not None else ""
            return f"{target.image}: {err}" + (f"\n--- last lines of {log}:\n{tail}" if tail else "")
        return None

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return [failure for failure in pool.map(one, targets) if failure is not None]
