"""What a container job sees of the host: the bind mounts of its group, decided here for every runtime.

An image sees no host path unless it is bound in. With the profile's ``shared_roots``, every job
binds those roots (writable, at their own paths; the site keeps results, models and data under
them) and a plan whose paths lie outside them is refused. Without ``shared_roots``, a job binds
exactly what its group reads and writes: the output root (writable), the model cache, a local
model's folder and the workload file (read-only where the runtime can: Apptainer's ``:ro``;
Charliecloud's ``ch-run -b`` has no read-only bind, so there they are writable).

A runtime that cannot create a mount point in a read-only image (Charliecloud: ``ch-run`` 0.31
binds only onto directories that exist in the image, or under its private ``/tmp``, and binds no
file onto a missing path) gets each folder at :data:`HOST_IN_IMAGE` + its host path, and the job
reads an *image view* of its group file, whose paths are those (:meth:`infpop.plan.GroupSpec.image_view`).
Each runtime plugin only formats the :class:`~infpop.runtimes.base.Bind` list
(:meth:`infpop.runtimes.base.ContainerRuntime.exec_argv`); the plan refuses a path outside the
shared roots in :func:`infpop.runnable.check_visible`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infpop.runtimes import get_runtime
from infpop.runtimes.base import Bind

#: Where a runtime that cannot create mount points puts host folders: under its private /tmp
#: (``/work/runs`` is seen at ``/tmp/host/work/runs``), a tmpfs where ``ch-run`` can create them.
HOST_IN_IMAGE = "/tmp/host"


@dataclass(frozen=True)
class Need:
    """A host path a job reads or writes (a folder, or a ``file``), and which field names it."""

    field: str
    path: str
    writable: bool = False
    file: bool = False


def _real(path: str) -> Path:
    return Path(os.path.realpath(path))


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def group_binds(needs: Sequence[Need], shared_roots: Sequence[str], runtime: str) -> tuple[Bind, ...]:
    """The binds of a job that needs ``needs``, in mount order (parents before what is under them)."""
    if shared_roots:
        return tuple(Bind(root, root, True) for root in shared_roots)
    rt = get_runtime(runtime)
    wanted: dict[Path, tuple[str, bool]] = {}
    for need in needs:
        source = _real(need.path)
        target = os.path.normpath(need.path)
        if need.file and not rt.binds_files:
            source, target = source.parent, os.path.dirname(target)
        if not rt.creates_mount_points:
            target = HOST_IN_IMAGE + str(source)
        previous = wanted.get(source, (target, False))
        wanted[source] = (previous[0], previous[1] or need.writable)
    binds: list[Bind] = []
    for source in sorted(wanted):
        target, writable = wanted[source]
        outer = next((b for b in binds if _under(source, Path(b.source))), None)
        if outer is not None and target == str(Path(outer.target) / source.relative_to(outer.source)):
            if writable and not outer.writable:  # one mount serves both: writable if either writes
                binds[binds.index(outer)] = Bind(outer.source, outer.target, True)
            continue
        binds.append(Bind(str(source), target, writable))
    return tuple(binds)


def image_path(path: str, binds: Sequence[Bind]) -> str | None:
    """Where host ``path`` is seen inside the image through ``binds``; None when it is not."""
    real = _real(path)
    for bind in sorted(binds, key=lambda b: len(b.source), reverse=True):
        source = _real(bind.source)
        if _under(real, source):
            return str(Path(bind.target) / real.relative_to(source))
    return None


def group_needs(
    output_root: str, model_path: str | None, workload_path: str | None, model_cache: str | None
) -> list[Need]:
    """What a job reads and writes: ``model_path`` is None for a hub model (read from the cache)."""
    needs = [Need("output_root (or --output-root)", output_root, writable=True)]
    if model_cache is not None:
        needs.append(Need("profile: model_cache", model_cache))
    if model_path is not None:
        needs.append(Need("models: source", model_path))
    if workload_path is not None:
        needs.append(Need("workload: path", workload_path, file=True))
    return needs


def describe(binds: Sequence[Bind], runtime: str) -> list[str]:
    """One line per bind, for ``infpop plan`` and the dry run: what the image sees, and how."""
    rt = get_runtime(runtime)
    lines = []
    for bind in binds:
        if bind.writable:
            mode = "writable"
        elif rt.read_only_binds:
            mode = "read-only"
        else:
            mode = f"writable, read only by the job: {runtime} has no read-only bind"
        lines.append(f"{bind.source} -> {bind.target} ({mode})")
    return lines
