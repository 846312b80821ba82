"""SLURM requests decided from a plan and rendered by submitit: no cluster needed.

The sbatch scripts are compared with golden files under tests/golden/; after a deliberate
change, regenerate them with ``INFPOP_UPDATE_GOLDEN=1 pytest tests/toolkit/test_slurm.py`` and review
the diff.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
import yaml
from infpop.cli import main
from infpop.errors import InputError
from infpop.executors.slurm import sbatch_parameters, signal_delay_s, split_arrays
from infpop.manifest import load_manifest
from infpop.plan import plan
from infpop.profile import PartitionProfile, load_profile
from infpop.sweep import dry_run

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UNIVERSITY = REPO / "slurm" / "profiles" / "university.yaml"


@pytest.fixture
def paper_manifest(tmp_path: Path) -> Path:
    """Two models x GPU counts 1, 2, 8 on a shared output root that holds no results."""
    data = {
        "study": "paper",
        "output_root": "/shared/infpop/runs",
        "models": [
            {"name": "codellama-7b", "source": "codellama/CodeLlama-7b-hf"},
            {"name": "phi-2", "source": "microsoft/phi-2"},
        ],
        "engines": ["hf"],
        "partitions": ["a100", "v100"],
        "gpu_counts": [1, 2, 8],
        "batch_sizes": [1, 16, 256],
        "max_new_tokens": [5],
        "workload": {"path": "/shared/infpop/data/humaneval.jsonl.gz"},
    }
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _dry_run(manifest: Path, partition: str) -> str:
    part = load_profile(UNIVERSITY).partition(partition)
    return dry_run(plan(load_manifest(manifest), partition, part), partition, part, python="python")


@pytest.mark.parametrize("partition", ["a100", "v100"])
def test_dry_run_matches_golden_sbatch(paper_manifest: Path, partition: str) -> None:
    text = _dry_run(paper_manifest, partition) + "\n"
    golden = GOLDEN / f"dry_run_{partition}.txt"
    if os.environ.get("INFPOP_UPDATE_GOLDEN"):
        golden.write_text(text)
    diff = "".join(difflib.unified_diff(golden.read_text().splitlines(True), text.splitlines(True), str(golden), "now"))
    assert not diff, f"sbatch rendering changed (INFPOP_UPDATE_GOLDEN=1 to accept):\n{diff}"


def test_dry_run_requests_exact_gpus_per_array(paper_manifest: Path) -> None:
    text = _dry_run(paper_manifest, "v100")
    assert text.count("#!/bin/bash") == 3, "one array per GPU count"
    for n in (1, 2, 8):
        assert f"#SBATCH --gres=gpu:v100:{n}\n" in text
        assert f"#SBATCH --cpus-per-task={4 * n}\n" in text
    assert "#SBATCH --array=0-1%2" in text, "two models -> two tasks, at most array_parallelism at once"
    assert "#SBATCH --partition=gpu-v100" in text and "#SBATCH --constraint=v100-32gb" in text
    assert "/shared/infpop/runs/paper/.infpop/logs/%A_%a/%A_%a_0_log.out" in text


def test_dry_run_cli_submits_nothing(paper_manifest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["sweep", str(paper_manifest), "--partition", "a100", "--profile", str(UNIVERSITY), "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "#SBATCH --gres=gpu:a100:8" in out and "# task 1: paper/a100/hf/phi-2/g8 (3 trials)" in out
    assert not Path("/shared/infpop/runs/paper").exists()


def test_sbatch_parameters_follow_the_profile(paper_manifest: Path) -> None:
    part = load_profile(UNIVERSITY).partition("v100")
    groups = plan(load_manifest(paper_manifest), "v100", part)
    arrays = split_arrays(groups)
    assert [a[0].n_gpus for a in arrays] == [1, 2, 8] and all(len(a) == 2 for a in arrays)
    assert sbatch_parameters(arrays[1], "v100", part) == {
        "job_name": "infpop-paper-v100-g2",
        "partition": "gpu-v100",
        "time": 360,
        "nodes": 1,
        "cpus_per_task": 8,
        "array_parallelism": 8,
        "signal_delay_s": 90,
        "gres": "gpu:v100:2",
        "mem": "90GB",
        "account": "infpop-lab",
        "constraint": "v100-32gb",
    }
    generic = PartitionProfile(hardware="gpu", slurm_partition="gpu", gpus_per_node=4, cpus_per_gpu=2)
    params = sbatch_parameters(arrays[1], "gpu", generic)
    assert params["gpus_per_node"] == 2 and "gres" not in params and "mem" not in params
    with pytest.raises(ValueError, match="one GPU count"):
        sbatch_parameters(groups, "v100", part)


def test_short_limits_keep_time_before_the_requeue_signal() -> None:
    # slurmctld sends USR2 once delay + 30 s covers the time left: a 1-minute job gets it after ~30 s.
    assert [signal_delay_s(m) for m in (1, 2, 3, 4, 240)] == [1, 30, 60, 90, 90]


def test_more_gpus_than_a_node_has_is_refused_at_plan_time(
    paper_manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(paper_manifest.read_text())
    data["gpu_counts"] = [1, 16]
    paper_manifest.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"gpu_counts: 16 GPUs requested, but a node of partition 'v100' has 8"):
        plan(load_manifest(paper_manifest), "v100", load_profile(UNIVERSITY).partition("v100"))
    rc = main(["sweep", str(paper_manifest), "--partition", "v100", "--profile", str(UNIVERSITY), "--dry-run"])
    assert rc == 2 and "gpu_counts: 16" in capsys.readouterr().err
