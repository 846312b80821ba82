"""The smoke test every image build runs (infpop.images.smoke), here against this venv's real
packages and real files under a temporary root: it passes when the installed versions are the
lock's and fails naming the pin, the CUDA build, the driver library or the token that is wrong.
(Run inside built images: the CPU images in CI's build, the GPU image of docs/containers.md.)
Triton's probe compiles with this venv's real Triton and its ptxas for a named GPU; none is needed."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from infpop.images.lock import ImageLock
from infpop.images.smoke import check
from infpop.images.triton_probe import triton_check

INSTALLED = {name: importlib.metadata.version(name) for name in ("torch", "transformers", "pydantic")}


def _lock(packages: dict[str, str], cc: str | None = None, cuda: str | None = None, engine: str = "hf") -> ImageLock:
    return ImageLock(
        name="t",
        engine=engine,
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


def test_triton_builds_for_a_v100_without_tensor_cores_and_for_an_a100_with_them() -> None:
    """What a vLLM image's report says of the attention Triton compiles at run time on each GPU."""
    volta, volta_failures = triton_check("7.0")
    ampere, ampere_failures = triton_check("8.0")
    assert volta_failures == ampere_failures == []
    assert volta[0].endswith("builds for 7.0: tl.dot on the FMA path (no tensor cores)")
    assert ampere[0].endswith("builds for 8.0: tl.dot on tensor cores (mma)")


def test_a_vllm_gpu_images_smoke_test_reports_what_triton_builds(tmp_path: Path) -> None:
    report, _ = check(_lock(INSTALLED, cc="7.0", cuda="12.8", engine="vllm"), root=tmp_path)
    assert any(line.endswith("builds for 7.0: tl.dot on the FMA path (no tensor cores)") for line in report)


def test_triton_check_fails_naming_ptxas_when_it_cannot_build_for_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA 13's ptxas, which Triton 3.9 carries for Blackwell, no longer targets sm_70: a Triton
    whose only ptxas it was would leave a V100 without its attention kernel."""
    import triton

    ptxas13 = Path(triton.__file__).parent / "backends/nvidia/bin/ptxas-blackwell"
    if not ptxas13.is_file():
        pytest.skip(f"this venv's triton {triton.__version__} carries no CUDA 13 ptxas")
    monkeypatch.setenv("TRITON_PTXAS_PATH", str(ptxas13))
    report, failures = triton_check("7.0")
    assert report == []
    assert len(failures) == 1
    assert failures[0].startswith(f"triton {triton.__version__} cannot build kernels for compute capability 7.0:")
    assert "sm_70" in failures[0]
