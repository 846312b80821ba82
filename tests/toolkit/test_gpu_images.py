"""The smoke test every image build runs (infpop.images.smoke), here against this venv's real
packages and real files under a temporary root: it passes when the installed versions are the
lock's and fails naming the pin, the CUDA build, the driver library or the token that is wrong.
(Run inside built images: the CPU images in CI's build, the GPU image of docs/containers.md.)"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from infpop.images.lock import ImageLock
from infpop.images.smoke import check

INSTALLED = {name: importlib.metadata.version(name) for name in ("torch", "transformers", "pydantic")}


def _lock(packages: dict[str, str], cc: str | None = None, cuda: str | None = None) -> ImageLock:
    return ImageLock(
        name="t",
        engine="hf",
        description="test",
        base="debian:bookworm",
        python="3.11",
        packages=packages,
        smoke_imports=("torch", "transformers"),
        compute_capability=cc,
        cuda=cuda,
    )


def test_smoke_passes_when_the_image_holds_the_locks_versions(tmp_path: Path) -> None:
    report, failures = check(_lock(INSTALLED), root=tmp_path)
    assert failures == []
    assert f"torch {INSTALLED['torch']}" in report


def test_smoke_fails_naming_a_pin_the_image_does_not_hold(tmp_path: Path) -> None:
    _, failures = check(_lock({**INSTALLED, "pydantic": "0.0.1"}), root=tmp_path)
    assert failures == [f"pydantic is {INSTALLED['pydantic']}, the lock pins 0.0.1"]


@pytest.mark.skipif("+cpu" not in INSTALLED["torch"], reason="needs this venv's CPU build of torch")
def test_smoke_fails_a_gpu_image_whose_torch_is_not_the_locks_cuda_build(tmp_path: Path) -> None:
    _, failures = check(_lock(INSTALLED, cc="8.0", cuda="12.8"), root=tmp_path)
    assert "torch is the CUDA None build, the lock says CUDA 12.8" in failures
    assert "torch holds no sm_80 code (it has none)" in failures


def test_smoke_fails_an_image_holding_a_driver_library_or_a_token(tmp_path: Path) -> None:
    lib = tmp_path / "usr/lib/x86_64-linux-gnu/libcuda.so.1"
    token = tmp_path / "root/.cache/huggingface/token"
    for path in (lib, token):
        path.parent.mkdir(parents=True)
        path.write_text("x")
    _, failures = check(_lock(INSTALLED), root=tmp_path)
    assert any(str(lib) in f and "driver" in f for f in failures)
    assert any(str(token) in f and "token" in f for f in failures)
