"""Cluster profiles as a site writes them: the shipped examples load, and every mistake is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from infpop.errors import InputError
from infpop.profile import EMBEDDED_DEFAULT, load_profile

REPO = Path(__file__).resolve().parents[2]
PROFILES = sorted((REPO / "slurm" / "profiles").glob("*.yaml"))


def _write(tmp_path: Path, partitions: dict, **top) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"name": "site", "partitions": partitions, **top}))
    return path


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_the_shipped_profiles_load(path: Path) -> None:
    profile = load_profile(path)
    assert profile.partitions
    for part in profile.partitions.values():
        assert all(Path(image).is_absolute() for image in part.images.values())


def test_relative_image_paths_are_relative_to_the_profiles_folder(tmp_path: Path) -> None:
    part = {"executor": "slurm", "hardware": "a100", "slurm_partition": "gpu", "images": {"hf": "img/hf.sif"}}
    profile = load_profile(_write(tmp_path, {"a100": part}))
    assert profile.partition("a100").images == {"hf": str(tmp_path / "img" / "hf.sif")}


def test_without_a_profile_the_embedded_default_runs_locally(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("INFPOP_PROFILE", raising=False)
    assert load_profile() is EMBEDDED_DEFAULT
    assert load_profile().partition("local").executor == "local"
    site = _write(tmp_path, {"gpu": {"executor": "slurm", "hardware": "a100", "slurm_partition": "p"}})
    monkeypatch.setenv("INFPOP_PROFILE", str(site))
    assert load_profile().name == "site", "$INFPOP_PROFILE names the site's profile"


@pytest.mark.parametrize(
    ("partitions", "top", "message"),
    [
        ({"a": {"executor": "slurm", "hardware": "a100"}}, {}, "slurm_partition"),
        ({"a": {"executor": "slurm", "hardware": "a100", "slurm_partition": "p", "runtime": "docker"}}, {}, "docker"),
        ({"a": {"executor": "slurm", "hardware": "A100!", "slurm_partition": "p"}}, {}, "hardware"),
        ({"a": {"executor": "local", "hardware": "cpu", "gpus_per_node": 0}}, {}, "gpus_per_node"),
        ({"a": {"executor": "local", "hardware": "cpu", "walltime": 5}}, {}, "walltime"),
        ({"a": {"executor": "pbs", "hardware": "a100"}}, {}, "pbs"),
        ({}, {}, "partitions"),
        ({"a": {"executor": "local", "hardware": "cpu"}}, {"name": "../x"}, "name"),
    ],
)
def test_a_wrong_field_is_named(tmp_path: Path, partitions: dict, top: dict, message: str) -> None:
    path = _write(tmp_path, partitions, **top)
    with pytest.raises(InputError, match=message) as err:
        load_profile(path)
    assert str(path) in str(err.value)


def test_unreadable_or_broken_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read profile"):
        load_profile(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_profile(broken)


def test_an_unknown_partition_lists_the_known_ones(tmp_path: Path) -> None:
    profile = load_profile(_write(tmp_path, {"a100": {"executor": "local", "hardware": "cpu"}}))
    with pytest.raises(InputError, match=r"partition 'h100' is not in profile 'site'; it has: a100"):
        profile.partition("h100")
