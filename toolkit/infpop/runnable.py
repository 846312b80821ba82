"""What cannot run on a partition, refused at plan time, before anything is written.

Each refusal names the field: bf16 where the GPU has none, an image whose CUDA or torch build
lacks the partition's GPU architecture, an image of another runtime or built for another engine,
a path a job's image would not see, and (for a real submission) a missing image or an unstaged
model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from infpop.binds import Need, group_binds, image_path
from infpop.errors import InputError
from infpop.images.arch import version_tuple
from infpop.images.lock import image_lock
from infpop.runtimes import get_runtime

if TYPE_CHECKING:
    from infpop.launch import LaunchOptions
    from infpop.manifest import LoadedManifest
    from infpop.profile import PartitionProfile

#: Lowest compute capability with bf16 (Ampere); V100 (7.0) has none.
BF16_MIN_CC = (8, 0)


def check_runnable(loaded: LoadedManifest, partition: str, part: PartitionProfile, launch: LaunchOptions) -> None:
    """Refuse, naming the field, what is known not to work on this partition. Pure unless strict."""
    m = loaded.manifest
    cc = part.compute_capability
    if cc is not None and m.dtype == "bfloat16" and version_tuple(cc) < BF16_MIN_CC:
        raise InputError(
            f"{loaded.path}: dtype: 'bfloat16' needs compute capability 8.0 or newer, but partition "
            f"{partition!r} has {cc} (V100-class GPUs have no bf16); use dtype: float16, as the study did"
        )
    for engine in m.engines:
        image = launch.image(part, engine)
        if image is None:
            continue
        where = f"profile partition {partition!r}: images.{engine}"
        suffix = get_runtime(part.runtime).image_suffix
        if not image.endswith(suffix):
            raise InputError(
                f"{where}: {image} is not a {part.runtime} image (a {suffix} file, built by make containers)"
            )
        lock = image_lock(image)
        if lock is not None and lock.engine != engine:
            raise InputError(
                f"{where}: {image} is the {lock.engine!r} image (containers/{lock.name}.def), not {engine!r}"
            )
        if lock is not None and cc is not None and (why := lock.unsupported(cc)):
            raise InputError(
                f"{where}: {image} cannot run on this partition (compute_capability {cc}): {why}; "
                f"name an image built for it (containers/*.lock.toml)"
            )
        if launch.strict and not Path(image).is_file():
            raise InputError(
                f"{where}: {image} does not exist; build it with `make containers` (see containers/README.md)"
            )
    if launch.strict:
        _check_models(loaded, launch)


def _check_models(loaded: LoadedManifest, launch: LaunchOptions) -> None:
    missing_local = [mod for mod in loaded.manifest.models if mod.is_local and not loaded.resolve(mod.source).exists()]
    if missing_local:
        mod = missing_local[0]
        raise InputError(
            f"{loaded.path}: models: {mod.name!r} source {mod.source!r} does not exist ({loaded.resolve(mod.source)})"
        )
    if launch.model_cache is None:
        return
    from infpop.models import is_staged

    unstaged = [
        mod.name for mod in loaded.manifest.models if not mod.is_local and not is_staged(mod, launch.model_cache)
    ]
    if unstaged:
        raise InputError(
            f"{loaded.path}: models: {', '.join(unstaged)} not staged in model_cache {launch.model_cache} "
            f"(compute nodes are offline); stage them on the login node with: "
            f"infpop models {loaded.path} --cache {launch.model_cache}"
        )


def check_visible(
    loaded: LoadedManifest, partition: str, part: PartitionProfile, launch: LaunchOptions, output_root: str
) -> None:
    """Refuse, naming the path and the runtime, a plan whose jobs would not see what they read or
    write inside their image: with ``shared_roots``, a path outside them (the output root, the
    model cache, a local model, a workload file). Paths are compared after resolving symlinks, as
    the bind mounts see them. Without ``shared_roots`` every such path is bound (:func:`group_binds`)."""
    if not launch.shared_roots or not any(launch.image(part, e) for e in loaded.manifest.engines):
        return
    m = loaded.manifest
    where = f"partition {partition!r} runs trials in a {part.runtime} image"
    needs = [
        Need(f"{loaded.path}: output_root (or --output-root)", output_root),
        *([Need("profile: model_cache", launch.model_cache)] if launch.model_cache is not None else []),
        *(Need(f"{loaded.path}: models: {mod.name!r} source", str(loaded.resolve(mod.source))) for mod in m.models if mod.is_local),
        *(Need(f"{loaded.path}: workload {w.id!r} path", str(loaded.resolve(w.path))) for w in m.all_workloads if w.path),
    ]  # fmt: skip
    binds = group_binds((), launch.shared_roots, part.runtime)
    for need in needs:
        if image_path(need.path, binds) is None:
            raise InputError(
                f"{need.field}: {need.path} is outside the profile's shared_roots ({', '.join(launch.shared_roots)}); "
                f"{where} that sees only those: move it under one of them or add its folder to shared_roots"
            )
