"""A Debian base root filesystem built from the mirror with ``debootstrap``, for the images whose
lock has a ``[debootstrap]`` table and whose runtime cannot bootstrap one itself (Charliecloud).

The Debian snapshot archive may be unreachable, so the built base is the pin: its tarball is kept
in the build cache, keyed by its inputs, reused by later builds, and its sha256 is written into
the image (``/opt/infpop/base.sha256``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from infpop.checksums import file_sha256
from infpop.images.build import run_step
from infpop.images.context import BuildOptions


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
