"""Which GPU architectures an image's CUDA and torch build can run on, from upstream's tables.

A lock names its CUDA (the CUDA build of its torch wheel, whose runtime it installs); a partition
names its GPUs' compute capability. These tables say whether the two meet, so a plan refuses an
image that would fail with "no kernel image is available" only once a job has its GPUs.
"""

from __future__ import annotations

from packaging.version import Version

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


def version_tuple(value: str) -> tuple[int, ...]:
    """A version's release numbers, at least (major, minor), to compare as numbers: a compute
    capability or CUDA version (``"8.6"`` -> ``(8, 6)``, ``"12"`` -> ``(12, 0)``) or a package's
    release (``"0.11.1"`` -> ``(0, 11, 1)``). What follows the numbers is ignored: a local label
    (``"2.13.0+cpu"``) or a pre-release (``"0.10.2rc1"`` -> ``(0, 10, 2)``: a release candidate
    counts as its release). Parsed by ``packaging`` (PEP 440), what pip orders releases by; an
    unparseable value raises its ``InvalidVersion`` (a ``ValueError``)."""
    release = Version(value).release
    return release + (0,) * (2 - len(release))


def cuda_supports(cuda: str, cc: str) -> bool:
    """Whether CUDA toolkit ``cuda`` (e.g. "12.8") supports compute capability ``cc``."""
    version = version_tuple(cuda)
    known = [v for v in CUDA_ARCH_RANGES if v <= version]
    if not known:
        return False
    lo, hi = CUDA_ARCH_RANGES[max(known)]
    return version_tuple(lo) <= version_tuple(cc) <= version_tuple(hi)


def torch_build_supports(torch_version: str, torch_cuda: str, cc: str) -> bool | None:
    """Whether torch ``torch_version`` built for CUDA ``torch_cuda`` has code for ``cc``; None if unknown."""
    minor = ".".join(torch_version.split("+")[0].split(".")[:2])
    archs = TORCH_BUILD_ARCHS.get((minor, torch_cuda))
    if archs is None:
        return None
    major = version_tuple(cc)[0]
    return any(version_tuple(a)[0] == major and version_tuple(a) <= version_tuple(cc) for a in archs)
