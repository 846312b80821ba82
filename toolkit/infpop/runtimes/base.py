"""What a container runtime is: the few things that differ between container platforms.

The shape of ReFrame's container platforms: one small interface, one short class per platform.
A runtime says which recipe format it builds from and how it builds it, the argv that enters an
image with its binds (:class:`Bind`, decided by :mod:`infpop.binds` for every runtime) and its
environment, and how an image's digest is taken. What an image holds is not a runtime's business:
its lock and its recipes are :mod:`infpop.images`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from infpop.checksums import file_sha256

if TYPE_CHECKING:
    from infpop.images.context import BuildOptions
    from infpop.images.lock import ImageLock


@dataclass(frozen=True)
class Bind:
    """One bind mount: host ``source`` (symlinks resolved, as the mount takes it) seen at ``target``."""

    source: str
    target: str
    writable: bool


class ContainerRuntime:
    """One way of building and entering trial images. Subclasses set the class attributes and
    implement :meth:`exec_argv` and :meth:`build`; the digest is the sha256 of the image file
    unless a runtime knows better."""

    #: Name a profile partition gives as ``runtime:``.
    name: ClassVar[str]
    #: Suffix of the recipe it builds from (``containers/<name><suffix>``, :data:`infpop.images.recipe.RECIPES`).
    recipe_suffix: ClassVar[str]
    #: Suffix of a built image file (``infpop-<name><suffix>``).
    image_suffix: ClassVar[str]
    #: Executables a build needs on this machine.
    build_tools: ClassVar[tuple[str, ...]]
    #: Whether a bind may target a path the read-only image lacks (the runtime creates it), and
    #: whether a single file can be bound; :mod:`infpop.binds` places the binds accordingly.
    creates_mount_points: ClassVar[bool] = True
    binds_files: ClassVar[bool] = True
    #: Whether a bind can be read-only (what a job only reads is then bound so).
    read_only_binds: ClassVar[bool] = True

    def exec_argv(self, image: str, binds: tuple[Bind, ...], env: dict[str, str], gpus: bool = False) -> list[str]:
        """The argv that runs the image's Python: ``[..., python]``; ``binds`` are the only host
        paths it sees; ``env`` is set inside. ``gpus``: the job runs on a GPU partition, so the
        host's NVIDIA driver must be seen inside (images hold none); the devices are those SLURM
        gave the job."""
        raise NotImplementedError

    def build(self, lock: ImageLock, context: Path, image: Path, opts: BuildOptions) -> None:
        """Build ``image`` from the staged ``context`` (its recipe inside); raise on failure."""
        raise NotImplementedError

    def digest(self, image: str) -> str | None:
        """sha256 of an image: from ``IMAGE.sha256`` (written at build) when it is not older than
        the image, else computed; None when the image does not exist (a dry run)."""
        path = Path(image)
        if not path.is_file():
            return None
        sidecar = Path(f"{image}.sha256")
        if sidecar.is_file() and sidecar.stat().st_mtime >= path.stat().st_mtime:
            return sidecar.read_text().split()[0]
        return file_sha256(path)
