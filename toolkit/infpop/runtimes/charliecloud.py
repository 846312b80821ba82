"""Charliecloud: LANL's unprivileged HPC runtime, packaged by Debian; no registry or daemon needed.

An image is one SquashFS file (``infpop-<name>.sqfs``) built with ``ch-image`` from
``containers/<name>.Dockerfile`` and converted with ``ch-convert``; ``ch-run`` runs the file
directly. An image on a Debian base starts from a ``debootstrap`` root filesystem built from the
Debian mirror; the Debian snapshot archive may be unreachable, so the built base is the pin: its
tarball is kept in the build cache, keyed by its inputs, reused by later builds, and its sha256 is
written into the image (``/opt/infpop/base.sha256``).

A job enters an image with ``ch-run --private-tmp -b SRC:DST ... --set-env=K=V IMAGE -- python``:
the image is read-only, /tmp is private, and the binds (:mod:`infpop.binds`) are the only host
paths a trial sees. ``ch-run`` (0.31, checked here) binds only onto directories that exist in the
image or can be made under its private /tmp (it refuses to create one in the read-only image, or
under another bind), binds no single file onto a missing path, and has no read-only bind: every
bind is writable. So the build creates the profile's shared roots in the image, and without
shared roots a job's folders are bound under ``/tmp/host``. GPUs: ``ch-run`` binds the host's /dev and passes ``CUDA_VISIBLE_DEVICES`` from
SLURM; CUDA images need the host's driver libraries injected at build (``ch-fromhost --nvidia``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from infpop.checksums import file_sha256
from infpop.runtimes.base import (
    IMAGE_ENV,
    INFPOP_COMMANDS,
    SOURCE_COPIES,
    VENV,
    BuildOptions,
    ContainerRuntime,
    dependency_copies,
    image_labels,
    install_commands,
    recipe_header,
    run_step,
    smoke_test,
)

if TYPE_CHECKING:
    from infpop.binds import Bind
    from infpop.container import ImageLock

#: Tag of an imported debootstrap base: ``FROM infpop-base:<suite>`` in a Dockerfile.
BASE_REPO = "infpop-base"


def tool_env() -> dict[str, str]:
    """Environment for the ch-* tools: ch-image runs on Debian's python3 (it needs its ``lark``),
    so /usr/bin goes first on PATH; ch-run refuses to start without ``$USER``."""
    env = dict(os.environ)
    env["PATH"] = "/usr/bin:/bin:" + env.get("PATH", "")
    env.setdefault("USER", subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip() or "root")
    return env


class Charliecloud(ContainerRuntime):
    name = "charliecloud"
    recipe_suffix = ".Dockerfile"
    image_suffix = ".sqfs"
    build_tools = ("ch-image", "ch-convert", "ch-run", "mksquashfs")
    creates_mount_points = False
    binds_files = False
    read_only_binds = False

    def recipe(self, lock: ImageLock) -> str:
        base = f"{BASE_REPO}:{lock.debootstrap['suite']}" if lock.debootstrap is not None else lock.base
        lines = recipe_header(lock, "a profile partition with runtime: charliecloud")
        if lock.debootstrap is not None:
            deb = lock.debootstrap
            lines += [
                f"# {base} is `debootstrap --variant={deb['variant']} --include={','.join(deb['include'])} "
                f"{deb['suite']} ROOTFS {deb['mirror']}`,",
                "# imported with ch-image; its tarball's sha256 is passed in as BASE_SHA256 and kept in the image.",
            ]
        lines += [f"FROM {base}", "ARG BASE_SHA256=none"]
        lines.append("LABEL " + " ".join(f"{key}={value}" for key, value in image_labels(lock).items()))
        lines += [f"COPY {src} {dst}" for src, dst in dependency_copies(lock)]
        lines.append(_run([*install_commands(lock), "echo $BASE_SHA256 > /opt/infpop/base.sha256"]))
        lines += [f"COPY {src} {dst}" for src, dst in SOURCE_COPIES]
        lines.append(_run([*INFPOP_COMMANDS, smoke_test(lock)]))
        env = {"PATH": f"{VENV}/bin:$PATH", **IMAGE_ENV}
        lines.append("ENV " + " ".join(f"{k}={v}" for k, v in env.items()))
        return "\n".join(lines) + "\n"

    def exec_argv(self, image: str, binds: tuple[Bind, ...], env: dict[str, str]) -> list[str]:
        argv = ["ch-run", "--private-tmp"]
        for bind in binds:  # no read-only form: ch-run's binds are all writable
            argv += ["-b", bind.source if bind.source == bind.target else f"{bind.source}:{bind.target}"]
        argv += [f"--set-env={key}={value}" for key, value in {**IMAGE_ENV, **env}.items()]
        return [*argv, image, "--", f"{VENV}/bin/python"]

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


def _run(commands: list[str]) -> str:
    """One Dockerfile RUN of shell commands (one shell, so ``set`` and ``export`` carry over)."""
    return "RUN " + " \\\n && ".join(commands)


def debootstrap_base(deb: dict, cache: Path, opts: BuildOptions) -> tuple[Path, str]:
    """The base root filesystem of ``deb`` (the lock's ``[debootstrap]``) as a tarball in
    ``cache``, built once per set of inputs, and its sha256 (recorded next to it). Images built
    side by side on one base wait for whichever builds it first (a lock file beside it)."""
    key = hashlib.sha256(json.dumps(deb, sort_keys=True).encode()).hexdigest()[:16]
    tarball = cache / "debootstrap" / f"{deb['suite']}-{key}.tar"
    sidecar = Path(f"{tarball}.sha256")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{tarball}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (tarball.is_file() and sidecar.is_file()):
            _debootstrap(deb, tarball, opts)
            sidecar.write_text(f"{file_sha256(tarball)}  {tarball.name}\n")
    return tarball, sidecar.read_text().split()[0]


def _debootstrap(deb: dict, tarball: Path, opts: BuildOptions) -> None:
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed; it builds the Debian base (apt-get install debootstrap)")
    rootfs = tarball.with_suffix(".rootfs")
    _remove_rootfs(rootfs)
    try:
        run_step(
            [
                "debootstrap",
                f"--variant={deb['variant']}",
                f"--include={','.join(deb['include'])}",
                deb["suite"],
                str(rootfs),
                deb["mirror"],
            ],
            opts,
        )
        # ch-run binds the host's /dev; device nodes left in the rootfs would be read as files by
        # the import (/dev/zero, /dev/full) until the disk is full.
        run_step(["find", str(rootfs / "dev"), "-xdev", "(", "-type", "c", "-o", "-type", "b", ")", "-delete"], opts)
        # Package caches are not part of what the base pins.
        shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        part = tarball.with_name(tarball.name + ".part")
        run_step(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(part), "."], opts)
        part.replace(tarball)
    finally:
        _remove_rootfs(rootfs)


def _remove_rootfs(rootfs: Path) -> None:
    """Remove a (possibly half-built) debootstrap root, unmounting what debootstrap mounted first."""
    if not rootfs.exists():
        return
    for sub in ("proc", "sys"):
        if os.path.ismount(rootfs / sub):
            subprocess.run(["umount", "-l", str(rootfs / sub)], check=False)
    shutil.rmtree(rootfs, ignore_errors=True)


RUNTIME = Charliecloud()
