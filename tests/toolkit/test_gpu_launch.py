"""A GPU partition's jobs see the host's NVIDIA driver inside their image, whichever runtime: the
dry run of the paper manifest shows ``apptainer exec --nv`` (tests/toolkit/test_containers.py) or,
on a Charliecloud site, ``ch-fromhost --nvidia`` on an unpacked copy of the image before ``ch-run``.
(The script run for real, with a real image: tests/integration/test_charliecloud.py.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from infpop.cli import main
from infpop.launch import launcher_argv
from infpop.profile import PartitionProfile
from infpop.runtimes.charliecloud import GPU_SCRIPT

REPO = Path(__file__).resolve().parents[2]


def test_charliecloud_gpu_partition_dry_run_injects_the_hosts_driver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = yaml.safe_load((REPO / "slurm" / "profiles" / "university.yaml").read_text())
    a100 = profile["partitions"]["a100"]
    a100["runtime"] = "charliecloud"
    a100["images"] = {engine: image.replace(".sif", ".sqfs") for engine, image in a100["images"].items()}
    (tmp_path / "ch.yaml").write_text(yaml.safe_dump(profile))
    paper = yaml.safe_load((REPO / "manifests" / "paper.yaml").read_text())
    paper["workload"]["path"] = "/shared/infpop/data/HumanEval-SingleLineInfilling.jsonl.gz"
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(paper))
    args = ["--partition", "a100", "--profile", str(tmp_path / "ch.yaml"), "--output-root", "/shared/infpop/runs"]

    assert main(["sweep", str(tmp_path / "paper.yaml"), *args, "--dry-run"]) == 0

    tasks = re.findall(r"# task \d+: \S+?/(hf|vllm)/\S+ .*\n#   runs: (.*)", capsys.readouterr().out)
    assert {engine for engine, _ in tasks} == {"hf", "vllm"}
    for engine, command in tasks:
        argv = shlex.split(command)
        start = argv.index("sh")
        script, image = argv[start + 2], argv[start + 4]
        assert argv[start : start + 2] == ["sh", "-c"] and script == GPU_SCRIPT
        assert 'ch-fromhost --nvidia "$dir/img"' in script and 'ch-run "$@"' in script
        assert image == f"/shared/infpop/containers/infpop-{engine}-sm80.sqfs"
        assert argv[argv.index("--") + 1 :][:4] == ["/opt/infpop/venv/bin/python", "-m", "infpop", "trial"]


def test_charliecloud_cpu_partition_runs_the_squashfs_image_directly() -> None:
    cpu = PartitionProfile(
        slurm_partition="charliecloud", hardware="cpu", runtime="charliecloud", images={"hf": "/img/infpop-hf-cpu.sqfs"}
    )
    argv = launcher_argv(cpu, "hf", ())
    assert "ch-run" in argv and "sh" not in argv and not any("ch-fromhost" in a for a in argv)
