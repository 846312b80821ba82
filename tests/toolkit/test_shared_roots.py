"""A sweep whose jobs run in a container is refused at plan time when its output root, the model
cache, a local model or a workload file lies outside the profile's shared_roots (the only host
paths the container sees), naming the path and the runtime.

apptainer cannot run here: the plan is checked, nothing runs (well under a second per test).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from infpop.cli import main


def _setup(tmp_path: Path, humaneval_path: Path, *, cache: Path) -> tuple[Path, Path]:
    shared = tmp_path / "shared"
    profile = tmp_path / "lab.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "name": "lab",
                "shared_roots": [str(shared)],
                "model_cache": str(cache),
                "partitions": {
                    "a100": {
                        "executor": "slurm",
                        "hardware": "a100",
                        "slurm_partition": "gpu",
                        "gpu_type": "a100",
                        "gpus_per_node": 8,
                        "compute_capability": "8.0",
                        "images": {"hf": str(shared / "containers" / "infpop-hf-sm80.sif")},
                    }
                },
            }
        )
    )
    manifest = tmp_path / "study.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "study": "s",
                "output_root": str(tmp_path / "home" / "runs"),
                "models": [{"name": "m", "source": "org/model"}],
                "engines": ["hf"],
                "partitions": ["a100"],
                "gpu_counts": [1],
                "batch_sizes": [1],
                "max_new_tokens": [5],
                "workload": {"path": str(shared / "data" / humaneval_path.name)},
            }
        )
    )
    return profile, manifest


def _written(tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if p.suffix not in {".yaml"}]


@pytest.mark.parametrize("command", [["plan"], ["sweep", "--dry-run"], ["sweep"]])
def test_an_output_root_outside_the_shared_roots_is_refused(
    tmp_path: Path, humaneval_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    profile, manifest = _setup(tmp_path, humaneval_path, cache=tmp_path / "shared" / "models")
    if command == ["sweep"]:  # a real submission also needs the image built and the model staged
        image = tmp_path / "shared" / "containers" / "infpop-hf-sm80.sif"
        image.parent.mkdir(parents=True)
        image.write_bytes(b"")
        (tmp_path / "shared" / "model").mkdir()
        data = yaml.safe_load(manifest.read_text())
        data["models"] = [{"name": "m", "source": str(tmp_path / "shared" / "model")}]
        manifest.write_text(yaml.safe_dump(data))
    before = _written(tmp_path)
    assert main([command[0], str(manifest), "--profile", str(profile), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert f"{manifest}: output_root (or --output-root): {tmp_path / 'home' / 'runs'} is outside" in err
    assert f"shared_roots ({tmp_path / 'shared'})" in err and "partition 'a100' runs trials in a apptainer image" in err
    assert _written(tmp_path) == before, "nothing written"


def test_a_model_cache_outside_the_shared_roots_is_refused(
    tmp_path: Path, humaneval_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile, manifest = _setup(tmp_path, humaneval_path, cache=tmp_path / "scratch" / "hf")
    inside = tmp_path / "shared" / "runs"
    assert main(["plan", str(manifest), "--profile", str(profile), "--output-root", str(inside)]) == 2
    err = capsys.readouterr().err
    assert f"profile: model_cache: {tmp_path / 'scratch' / 'hf'} is outside the profile's shared_roots" in err


def test_a_model_outside_the_shared_roots_is_refused_naming_it(
    tmp_path: Path, humaneval_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile, manifest = _setup(tmp_path, humaneval_path, cache=tmp_path / "shared" / "models")
    model = tmp_path / "home" / "tiny"  # a local model next to the shared roots, not under them
    data = yaml.safe_load(manifest.read_text())
    data["models"] = [{"name": "m", "source": str(model)}]
    manifest.write_text(yaml.safe_dump(data))
    assert main(["plan", str(manifest), "--profile", str(profile), "--output-root", str(tmp_path / "shared")]) == 2
    err = capsys.readouterr().err
    assert f"{manifest}: models: 'm' source: {model} is outside the profile's shared_roots" in err
    assert "apptainer image" in err


def test_paths_a_container_sees_are_accepted(
    tmp_path: Path, humaneval_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile, manifest = _setup(tmp_path, humaneval_path, cache=tmp_path / "shared" / "models")
    args = ["plan", str(manifest), "--profile", str(profile)]
    assert main([*args, "--output-root", str(tmp_path / "shared" / "runs")]) == 0
    (tmp_path / "shared").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "shared")  # resolved as the bind mount sees it
    assert main([*args, "--output-root", str(tmp_path / "link" / "runs")]) == 0
    assert main(["sweep", str(manifest), "--profile", str(profile), "--dry-run", "--no-container"]) == 0, (
        "bare jobs see the host"
    )
    capsys.readouterr()
