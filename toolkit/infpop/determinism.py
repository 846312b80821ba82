"""The ``deterministic`` axis, refused at plan time where an engine's mode cannot be on.

An engine declares its deterministic mode and where it runs (:class:`infpop.plugins.Determinism`):
on CPU or not, from which GPU compute capability, from which release of its package. The plan
checks each engine's ``deterministic: true`` against the partition: its hardware, its GPUs'
compute capability (the profile's, else that of the image's lock) and the engine release the
trials will run (the image's pin, or the one installed here for bare runs), so a trial never
records a mode that could not be on. The engine switches it at load (its ``deterministic``) and
reports what it read back, which each result records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from packaging.version import InvalidVersion

from infpop.engines.options import release
from infpop.errors import InputError
from infpop.images.arch import version_tuple
from infpop.images.lock import image_lock
from infpop.plugins import ENGINES

if TYPE_CHECKING:
    from infpop.launch import LaunchOptions
    from infpop.manifest import LoadedManifest
    from infpop.profile import PartitionProfile


def check_determinism(
    loaded: LoadedManifest, partition: str, part: PartitionProfile, launch: LaunchOptions, hardware: str
) -> None:
    """Raise :class:`InputError` naming the field, the value, the engine, the partition and why,
    for an engine whose deterministic mode cannot run there. Engines without a mode are refused
    by the manifest itself."""
    m = loaded.manifest
    if True not in m.deterministic:
        return
    for engine in m.engines:
        mode = ENGINES.entry(engine).capabilities.determinism
        if mode is None:
            continue
        image = launch.image(part, engine)
        lock = image_lock(image) if image is not None else None
        where = f"{loaded.path}: deterministic: true: engine {engine!r} on partition {partition!r}"
        if not mode.on_cpu and (hardware == "cpu" or (lock is not None and lock.cuda is None)):
            raise InputError(f"{where} runs on CPU, where its {mode.switch} does not run; drop true for this partition")
        cc = part.compute_capability or (lock.compute_capability if lock is not None else None)
        least = mode.min_compute_capability
        if cc is not None and least is not None and version_tuple(cc) < version_tuple(least):
            raise InputError(
                f"{where}: its {mode.switch} needs compute capability {least} or newer, but the partition's "
                f"GPUs have {cc}; drop true for this partition"
            )
        if mode.since is not None:
            dists, first = mode.since
            version = release(image, dists)
            source = f"pinned by containers/{lock.name}.lock.toml" if lock is not None else "installed here"
            try:
                older = version is not None and version_tuple(version) < version_tuple(first)
            except InvalidVersion:
                raise InputError(
                    f"{where}: {dists[0]} {version!r} ({source}) is no version (PEP 440) to compare with {first}"
                ) from None
            if older:
                raise InputError(
                    f"{where}: {dists[0]} {version} ({source}) has no {mode.switch}: it came in {first}; "
                    "drop true for this partition"
                )
