"""An image's build context: the recipe, infpop's sources, the lock, and what the site adds.

The context is staged into a folder of its own before every build, and its digest decides
whether an image is up to date (:func:`tree_digest`): an image is rebuilt exactly when what it
is built from changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from infpop.checksums import file_sha256
from infpop.images.lock import ImageLock
from infpop.images.recipe import CA_DIR, SOURCES, WHEELS_DIR

#: Modification time of the folders of a staged build context (2000-01-01).
STAGED_MTIME = 946684800


@dataclass(frozen=True)
class BuildOptions:
    """Site choices that change how an image is built, never what it holds.

    ``ca_certs``: a directory of extra CA certificates (``*.crt``) trusted during the build, for
    sites behind a TLS-inspecting proxy. ``wheels``: a directory holding wheels of pins that are
    not on PyPI (the CPU build of torch). ``cache``: where a runtime keeps what later builds reuse
    (a debootstrap base, a build cache). ``mount_points``: the profile's shared roots, for runtimes
    that can only bind onto directories that exist in a read-only image. ``log``: where the build
    commands' output goes (appended); None leaves it on this process's, as for one build at a
    time: builds that run side by side each keep their own, or their lines interleave.
    """

    ca_certs: Path | None = None
    wheels: Path | None = None
    cache: Path = Path("build/containers/cache")
    mount_points: tuple[str, ...] = ()
    log: Path | None = None


def stage_context(lock: ImageLock, recipe: str, recipe_name: str, repo: Path, opts: BuildOptions, dest: Path) -> Path:
    """Write the build context of ``lock``'s image into ``dest``: the recipe, infpop's sources,
    the lock, and what the options bring (CA certificates; the wheels of pinned packages only)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / recipe_name).write_text(recipe)
    for src in SOURCES:
        if (repo / src).is_dir():
            shutil.copytree(repo / src, dest / src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(repo / src, dest / src)
    (dest / "containers").mkdir()
    shutil.copy2(repo / "containers" / f"{lock.name}.lock.toml", dest / "containers" / f"{lock.name}.lock.toml")
    (dest / CA_DIR).mkdir()
    if opts.ca_certs is not None:
        for crt in sorted(Path(opts.ca_certs).glob("**/*.crt")):
            shutil.copy2(crt, dest / CA_DIR / crt.name)
    # Not copied into the image by a recipe, but part of what the image is built from.
    (dest / "mount-points").write_text("".join(f"{root}\n" for root in opts.mount_points))
    (dest / WHEELS_DIR).mkdir()
    if opts.wheels is not None:
        wanted = {(_norm(n), v) for n, v in lock.packages.items()}
        for whl in sorted(Path(opts.wheels).glob("*.whl")):
            name, version = whl.name.split("-")[:2]
            if (_norm(name), version) in wanted:
                shutil.copy2(whl, dest / WHEELS_DIR / whl.name)
    # Files keep their times (copy2); folders are new at every staging: give them one fixed time,
    # so a build cache that looks at metadata (ch-image's) sees an unchanged context as unchanged.
    for folder in [dest, *(p for p in dest.rglob("*") if p.is_dir())]:
        os.utime(folder, (STAGED_MTIME, STAGED_MTIME))
    return dest


def _norm(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def tree_digest(root: Path) -> str:
    """sha256 over the relative paths and contents of every file under ``root``: whether a build
    context changed since an image was built from it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()
