"""The README's cluster walk-through, run as a user types it: ``make`` in a subprocess, with the
real SLURM test cluster and the real Charliecloud images, not the Python functions behind it.

Start the cluster (the session's ``slurm_conf``), build the images (.ci/run's ``make containers``,
before the tests), then ``make data tiny-model``, ``make sweep PARTITION=a100`` (bare jobs on the
fake-GPU node) and ``make sweep PARTITION=charliecloud`` (the same trials in the images, the
shipped profile unmodified), ``make status``, ``make figures`` and ``make report``. The manifest
is the demo's, cut with ``MANIFEST=`` to one GPU count, two batch sizes and one repetition (8
trials: 2 groups per partition, HF and vLLM); the README's 48-trial demo on the charliecloud
partition is the same path at 6x the trials. Cost: about 3-4 min on 2 cores (four jobs, two of
them starting vLLM in its image).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import wait_finished
from infpop.checksums import file_sha256
from infpop.results import iter_results

REPO = Path(__file__).resolve().parents[2]
PROFILE = "slurm/profiles/testcluster.yaml"
IMAGES = {"hf": REPO / "build/containers/infpop-hf-cpu.sqfs", "vllm": REPO / "build/containers/infpop-vllm-cpu.sqfs"}

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def _make(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(["make", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"make {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_cluster_walk_through_as_typed(tmp_path: Path, slurm_conf: str) -> None:
    if shutil.which("ch-run") is None:
        pytest.skip("Charliecloud is not installed; .ci/run installs it")
    missing = [str(image) for image in IMAGES.values() if not image.is_file()]
    assert not missing, f"{missing} not built: make containers PROFILE={PROFILE} (.ci/run builds them first)"
    demo = yaml.safe_load((REPO / "manifests/demo.yaml").read_text())
    demo.update(study="walk", gpu_counts=[1], batch_sizes=[1, 4], repetitions=1, partitions=["a100", "charliecloud"])
    demo["workload"]["limit"] = 16
    demo["models"][0]["source"] = str(REPO / "build/tiny-model")
    demo["workload"]["path"] = str(REPO / "data/HumanEval-SingleLineInfilling.jsonl.gz")
    manifest = tmp_path / "walk.yaml"
    manifest.write_text(yaml.safe_dump(demo))
    env = {**os.environ, "SLURM_CONF": slurm_conf, "USER": os.environ.get("USER") or getpass.getuser()}
    out = tmp_path / "runs"
    common = [f"MANIFEST={manifest}", f"PROFILE={PROFILE}", f"OUT={out}"]

    _make("data", "tiny-model", env=env)
    for partition in ("a100", "charliecloud"):
        assert "submitted 4 trials in 2 jobs" in _make("sweep", f"PARTITION={partition}", *common, env=env)
    log = [json.loads(line) for line in (out / "walk/.infpop/submissions.jsonl").read_text().splitlines()]
    states = wait_finished([e["job_id"] for e in log], 600)
    assert set(states.values()) == {"COMPLETED"}, states

    status = _make("status", *common, env=env)
    assert "walk: 8 trials: 8 done (8 ok," in status and "0 pending" in status, status
    results = [r for r in iter_results(out / "walk")]
    assert len(results) == 8 and {r.status for r in results} == {"ok"}
    for r in results:
        image = r.provenance.container_image
        if r.trial.partition == "charliecloud":
            assert image == str(IMAGES[r.trial.engine]) and r.provenance.container_sha256 == file_sha256(Path(image))
        else:
            assert image is None, "the a100 partition names no image: its trials run bare"

    _make("figures", *common, env=env)
    assert list((out / "walk/figures").rglob("*.png")) or list((out / "walk/figures").rglob("*.svg"))
    report = _make("report", *common, env=env)
    assert (out / "walk/report.html").is_file() and "report.html" in report
