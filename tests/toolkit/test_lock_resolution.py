"""Every GPU lock installs: pip's resolver against the real PyPI, for the image's Python 3.11 and
manylinux x86_64, reading index pages and wheel metadata only (no install, no wheel download).

Network: about 26 MB and 10 s for an HF lock, 70-80 MB and 25-40 s for a vLLM lock (measured
here, docs/containers.md); the two HF locks share one resolution. CI has PyPI access; on a machine
without it these tests skip, saying so, and only there.
"""

from __future__ import annotations

import re
import urllib.request
from functools import cache
from pathlib import Path

import pytest
from infpop.errors import InputError
from infpop.images.lock import CONTAINERS_DIR, ImageLock, locks, read_lock
from infpop.images.resolve import INDEX, resolve


def _pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen(f"{INDEX}/pip/", timeout=15):
            return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _pypi_reachable(), reason=f"{INDEX} is not reachable from this machine (CI has it)"),
]

GPU_LOCKS = {lock.name: lock for lock in locks() if lock.cuda is not None}


@cache
def _resolved(python: str, suite: str, pins: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """One resolution per distinct pin set (hf-sm70 and hf-sm80 pin the same)."""
    lock = next(
        lock
        for lock in GPU_LOCKS.values()
        if (lock.python, lock.debootstrap["suite"], tuple(lock.packages.items())) == (python, suite, pins)
    )
    return resolve(lock)


def _resolve(lock: ImageLock) -> dict[str, str]:
    return _resolved(lock.python, lock.debootstrap["suite"], tuple(lock.packages.items()))


@pytest.mark.parametrize("name", sorted(GPU_LOCKS))
def test_gpu_lock_resolves_on_pypi_with_exactly_its_pins_and_torchs_cuda_runtime(name: str) -> None:
    lock = GPU_LOCKS[name]
    resolved = _resolve(lock)
    for pin, version in lock.packages.items():
        assert resolved[re.sub(r"[-_.]+", "-", pin).lower()] == version
    # torch's CUDA build brings its CUDA runtime as wheels: the lock's `cuda` is that runtime's.
    runtimes = {n: v for n, v in resolved.items() if re.fullmatch(r"nvidia-cuda-runtime(-cu\d+)?", n)}
    assert runtimes and all(v.startswith(f"{lock.cuda}.") for v in runtimes.values()), runtimes


def test_a_lock_with_a_pin_that_does_not_exist_fails_naming_the_pin(tmp_path: Path) -> None:
    text = (CONTAINERS_DIR / "hf-sm80.lock.toml").read_text().replace('tqdm = "4.67.1"', 'tqdm = "4.67.999"')
    (tmp_path / "hf-sm80.lock.toml").write_text(text)
    with pytest.raises(InputError, match=r"(?s)hf-sm80\.lock\.toml: its pins do not resolve.*tqdm==4\.67\.999"):
        resolve(read_lock(tmp_path / "hf-sm80.lock.toml"))
