"""Without shared_roots, a container job binds exactly what its group reads and writes, the same
way for every runtime; each runtime only formats the binds (plans only: well under a second each).

Apptainer cannot run here, so its argv is checked, not run; Charliecloud's binds are run by
tests/integration/test_charliecloud.py and the cluster walk-through.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml
from infpop.binds import HOST_IN_IMAGE
from infpop.cli import main
from infpop.jobs import group_file, job_argv, write_job_group
from infpop.manifest import load_manifest
from infpop.plan import plan
from infpop.profile import load_profile
from infpop.runtimes.base import Bind


def _site(tmp_path: Path, humaneval_path: Path, runtime: str) -> tuple[Path, Path]:
    """A profile without shared_roots (like the shipped test cluster's) and a study whose model,
    prompts (through a symlink, as `make data` links them) and results lie in different folders."""
    suffix = {"apptainer": "sif", "charliecloud": "sqfs"}[runtime]
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.jsonl.gz").symlink_to(humaneval_path)
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "name": "site",
                "partitions": {
                    "box": {
                        "executor": "slurm",
                        "hardware": "cpu",
                        "slurm_partition": "box",
                        "runtime": runtime,
                        "images": {"hf": f"/img/infpop-hf-cpu.{suffix}"},
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
                "output_root": str(tmp_path / "runs"),
                "models": [{"name": "tiny", "source": str(tmp_path / "models" / "tiny")}],
                "engines": ["hf"],
                "partitions": ["box"],
                "gpu_counts": [1],
                "batch_sizes": [1],
                "max_new_tokens": [2],
                "workload": {"path": str(tmp_path / "data" / "prompts.jsonl.gz")},
            }
        )
    )
    return profile, manifest


def _groups(profile: Path, manifest: Path):
    from infpop.launch import LaunchOptions

    prof = load_profile(profile)
    return plan(load_manifest(manifest), "box", prof.partition("box"), launch=LaunchOptions.from_profile(prof))


def test_apptainer_binds_the_groups_paths_where_they_are_read_only_but_the_output_root(
    tmp_path: Path, humaneval_path: Path
) -> None:
    (group,) = _groups(*_site(tmp_path, humaneval_path, "apptainer"))
    prompts = humaneval_path.resolve()
    assert set(group.binds) == {
        Bind(str(tmp_path / "runs"), str(tmp_path / "runs"), True),
        Bind(str(tmp_path / "models" / "tiny"), str(tmp_path / "models" / "tiny"), False),
        Bind(str(prompts), str(tmp_path / "data" / "prompts.jsonl.gz"), False),  # the link's target, at the link
    }
    argv = job_argv(group)
    specs = argv[argv.index("--bind") + 1].split(",")
    assert (
        f"{tmp_path / 'runs'}" in specs and f"{tmp_path / 'models' / 'tiny'}:{tmp_path / 'models' / 'tiny'}:ro" in specs
    )
    assert argv[-1] == str(group_file(group)), "paths are the host's: the job reads the group file itself"


def test_charliecloud_binds_the_groups_folders_under_its_private_tmp_and_the_job_reads_them_there(
    tmp_path: Path, humaneval_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ch-run 0.31 creates no mount point in a read-only image and binds no file onto a missing
    path: folders go under /tmp/host, and the job reads a view of its group with those paths."""
    profile, manifest = _site(tmp_path, humaneval_path, "charliecloud")
    (group,) = _groups(profile, manifest)
    prompts = humaneval_path.resolve().parent
    seen = {b.source: b.target for b in group.binds}
    assert seen == {
        str(tmp_path / "runs"): HOST_IN_IMAGE + str(tmp_path / "runs"),
        str(tmp_path / "models" / "tiny"): HOST_IN_IMAGE + str(tmp_path / "models" / "tiny"),
        str(prompts): HOST_IN_IMAGE + str(prompts),
    }
    path = write_job_group(group)
    assert path == job_argv(group)[-1] and path.startswith(HOST_IN_IMAGE + str(tmp_path / "runs"))
    view = json.loads(Path(path.removeprefix(HOST_IN_IMAGE)).read_text())
    assert view["output_root"] == HOST_IN_IMAGE + str(tmp_path / "runs")
    assert view["model_path"] == HOST_IN_IMAGE + str(tmp_path / "models" / "tiny")
    assert view["workload_path"] == HOST_IN_IMAGE + str(humaneval_path.resolve())
    assert json.loads(group_file(group).read_text())["output_root"] == str(tmp_path / "runs"), "the host's stays"
    argv = job_argv(group)
    assert [argv[k + 1] for k, a in enumerate(argv) if a == "-b"] == [f"{b.source}:{b.target}" for b in group.binds]

    assert main(["plan", str(manifest), "--profile", str(profile)]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'runs'} -> {HOST_IN_IMAGE}{tmp_path / 'runs'} (writable)" in out
    assert "charliecloud has no read-only bind" in out
    assert main(["sweep", str(manifest), "--profile", str(profile), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert f"#   binds: {tmp_path / 'models' / 'tiny'} -> " in dry
    runs = next(line for line in dry.splitlines() if line.startswith("#   runs: "))
    assert shlex.split(runs.removeprefix("#   runs: "))[-1] == path


def test_a_model_inside_the_output_root_is_bound_once(tmp_path: Path, humaneval_path: Path) -> None:
    profile, manifest = _site(tmp_path, humaneval_path, "charliecloud")
    data = yaml.safe_load(manifest.read_text())
    data["output_root"] = str(tmp_path)  # the model's folder lies under it: ch-run cannot bind under a bind
    manifest.write_text(yaml.safe_dump(data))
    (group,) = _groups(profile, manifest)
    binds = {b.source: b for b in group.binds}
    assert sorted(binds) == sorted([str(tmp_path), str(humaneval_path.resolve().parent)])
    assert binds[str(tmp_path)].writable
