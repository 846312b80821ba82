"""Charliecloud: LANL's unprivileged HPC runtime, packaged by Debian; no registry or daemon needed.

An image is one SquashFS file (``infpop-<name>.sqfs``) built with ``ch-image`` from
``containers/<name>.Dockerfile`` and converted with ``ch-convert``; ``ch-run`` runs the file
directly. An image on a Debian base starts from a ``debootstrap`` root filesystem built from the
Debian mirror (:mod:`infpop.images.debootstrap`), imported with ``ch-image import``.

A job enters an image with ``ch-run --private-tmp -b SRC:DST ... --set-env=K=V IMAGE -- python``:
the image is read-only, /tmp is private, and the binds (:mod:`infpop.binds`) are the only host
paths a trial sees. ``ch-run`` (0.31, checked here) binds only onto directories that exist in the
image or can be made under its private /tmp (it refuses to create one in the read-only image, or
under another bind), binds no single file onto a missing path, and has no read-only bind: every
bind is writable. So the build creates the profile's shared roots in the image, and without
shared roots a job's folders are bound under ``/tmp/host``.

GPUs: ``ch-run`` binds the host's /dev and passes ``CUDA_VISIBLE_DEVICES`` from SLURM, but the
image holds no CUDA driver (its smoke test refuses one: the driver must match the node's kernel
module). ``ch-fromhost --nvidia`` injects the node's driver libraries into an image *directory*,
and a SquashFS image is read-only: so a job on a GPU partition unpacks the image into a folder of
its own on the node (``ch-convert``, under ``$TMPDIR``, removed when the job ends), injects the
driver there and runs that (:data:`GPU_SCRIPT`). The node needs ``unsquashfs`` and
``nvidia-container-cli`` (libnvidia-container), which ``ch-fromhost --nvidia`` asks for the files.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from infpop.images.build import run_step
from infpop.images.debootstrap import debootstrap_base
from infpop.images.recipe import BASE_REPO, IMAGE_ENV, VENV
from infpop.runtimes.base import Bind, ContainerRuntime

if TYPE_CHECKING:
    from infpop.images.context import BuildOptions
    from infpop.images.lock import ImageLock


def tool_env() -> dict[str, str]:
    """Environment for the ch-* tools: ch-image runs on Debian's python3 (it needs its ``lark``),
    so /usr/bin goes first on PATH; ch-run refuses to start without ``$USER``."""
    env = dict(os.environ)
    env["PATH"] = "/usr/bin:/bin:" + env.get("PATH", "")
    env.setdefault("USER", subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip() or "root")
    return env


#: How a job on a GPU partition enters a SquashFS image: ``sh -c GPU_SCRIPT infpop-ch-gpu IMAGE
#: CH_RUN_OPTIONS -- PYTHON ARGS...``. The image is unpacked into a fresh folder under $TMPDIR,
#: the node's driver injected with ``ch-fromhost --nvidia``, and ``ch-run`` given that folder in
#: the image's place (before the first ``--``); the folder is removed when the job ends.
GPU_SCRIPT = "; ".join(
    [
        "set -eu",
        "image=$1; shift",
        'dir=$(mktemp -d "${TMPDIR:-/tmp}/infpop-image.XXXXXX")',
        """trap 'rm -rf "$dir"' EXIT""",
        'ch-convert -i squash -o dir "$image" "$dir/img" >&2',
        'ch-fromhost --nvidia "$dir/img" >&2',
        "seen=",
        'for a; do shift; if [ -z "$seen" ] && [ "$a" = -- ]; then seen=1; set -- "$@" "$dir/img" --; '
        'else set -- "$@" "$a"; fi; done',
        'ch-run "$@"',
    ]
)


class Charliecloud(ContainerRuntime):
    name = "charliecloud"
    recipe_suffix = ".Dockerfile"
    image_suffix = ".sqfs"
    build_tools = ("ch-image", "ch-convert", "ch-run", "mksquashfs")
    creates_mount_points = False
    binds_files = False
    read_only_binds = False

    def exec_argv(self, image: str, binds: tuple[Bind, ...], env: dict[str, str], gpus: bool = False) -> list[str]:
        options = ["--private-tmp"]
        for bind in binds:  # no read-only form: ch-run's binds are all writable
            options += ["-b", bind.source if bind.source == bind.target else f"{bind.source}:{bind.target}"]
        options += [f"--set-env={key}={value}" for key, value in {**IMAGE_ENV, **env}.items()]
        if gpus:
            return ["sh", "-c", GPU_SCRIPT, "infpop-ch-gpu", image, *options, "--", f"{VENV}/bin/python"]
        return ["ch-run", *options, image, "--", f"{VENV}/bin/python"]

    def build(self, lock: ImageLock, context: Path, image: Path, opts: BuildOptions) -> None:
        # ch-convert has no storage option: every ch-* tool reads the build storage from the
        # environment. One storage per image: ch-image locks its storage, so images built side by
        # side need their own (the debootstrap base, built once, is imported into each).
        storage = (opts.cache / "ch-image" / lock.name).resolve()
        env = {**tool_env(), "CH_IMAGE_STORAGE": str(storage)}
        storage.parent.mkdir(parents=True, exist_ok=True)
        args = []
        if lock.debootstrap is not None:
            tarball, sha = debootstrap_base(lock.debootstrap, opts.cache.resolve(), opts)
            tag = f"{BASE_REPO}:{lock.debootstrap['suite']}"
            imported = storage.parent / f"{lock.name}.{BASE_REPO}-{lock.debootstrap['suite']}.imported"
            if not imported.is_file() or imported.read_text().strip() != sha:
                run_step(["ch-image", "import", str(tarball), tag], opts, env=env)
                imported.write_text(sha + "\n")
            args += ["--build-arg", f"BASE_SHA256={sha}"]
        recipe = context / f"{lock.name}{self.recipe_suffix}"
        run_step(
            ["ch-image", "build", "--force", "-t", lock.name, "-f", str(recipe), *args, str(context)], opts, env=env
        )
        # ch-run binds only onto directories that exist in the read-only image (or under its
        # private /tmp): create the shared roots' mount points in the built tree before squashing.
        tree = storage / "img" / lock.name
        for root in opts.mount_points:
            (tree / root.lstrip("/")).mkdir(parents=True, exist_ok=True)
        tmp = image.with_name(image.name + ".part")
        tmp.unlink(missing_ok=True)
        run_step(["ch-convert", "-i", "ch-image", "-o", "squash", lock.name, str(tmp)], opts, env=env)
        tmp.replace(image)


RUNTIME = Charliecloud()
