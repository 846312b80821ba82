"""Shared fixtures: a tiny offline model, the HumanEval prompts, manifests on disk, and a SLURM
test cluster with the helper that waits for its jobs.

Tests read ``../shared/data`` when it is there and fall back to generated data of the same
shape when it is not, so the suite runs on any clone.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from infpop.executors.slurm import ACTIVE_STATES, job_states

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
HUMANEVAL = SHARED / "data" / "humaneval-infilling" / "HumanEval-SingleLineInfilling.jsonl.gz"
PUBLISHED = SHARED / "data" / "infpop-appendix"
TESTCLUSTER = REPO / "slurm" / "testcluster"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def write_humaneval_like(path: Path, n: int = 60) -> Path:
    """A gzip JSONL shaped like HumanEval single-line infilling (prompt, suffix, canonical_solution)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        for i in range(n):
            body = "\n".join(f"    x{j} = x{j - 1} + {i}" for j in range(1, 2 + i % 9))
            rec = {
                "task_id": f"SingleLineInfilling/HumanEval/{i}/L0",
                "entry_point": f"f{i}",
                "prompt": f'def f{i}(x0):\n    """Add {i}."""\n{body}\n',
                "suffix": "    return x0\n",
                "canonical_solution": f"    x0 += {i}\n",
                "test": "def check(f):\n    pass\n",
            }
            fh.write(json.dumps(rec) + "\n")
    return path


def humaneval_head(src: Path, dest: Path, n: int) -> Path:
    """The first ``n`` prompts of ``src`` in a file of their own (``dest``, folders created): a
    site's data folder that holds exactly what a job needs."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(src, "rt") as lines, gzip.open(dest, "wt") as out:
        out.writelines(line for _, line in zip(range(n), lines))
    return dest


@pytest.fixture(scope="session")
def humaneval_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real prompts when ../shared is present, else a generated file of the same shape."""
    if HUMANEVAL.exists():
        return HUMANEVAL
    return write_humaneval_like(tmp_path_factory.mktemp("data") / "humaneval.jsonl.gz")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama built offline once per test session."""
    from infpop.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def write_manifest(tmp_path: Path, tiny_model: Path, humaneval_path: Path):
    """Write a manifest for the tiny model into tmp_path; keyword arguments override fields."""
    import yaml

    def _write(name: str = "study.yaml", **fields) -> Path:
        data = {
            "study": "t",
            "output_root": str(tmp_path / "runs"),
            "models": [{"name": "tiny", "source": str(tiny_model)}],
            "engines": ["hf"],
            "gpu_counts": [1],
            "batch_sizes": [1, 4],
            "max_new_tokens": [3],
            "dtype": "float32",
            "workload": {"path": str(humaneval_path), "limit": 12},
        }
        data.update(fields)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return _write


@pytest.fixture(scope="session")
def slurm_conf() -> Iterator[str]:
    """SLURM_CONF of a running test cluster, exported for submitit's sbatch/sacct calls."""
    conf = os.environ.get("INFPOP_TEST_SLURM_CONF")
    own_dir = None
    if not conf:
        missing = [
            exe for exe in ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "sbatch") if not shutil.which(exe)
        ]
        if missing:
            pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing); .ci/run installs it")
        # /tmp, not pytest's 0700 tmp dir: munge needs every parent of its socket searchable.
        own_dir = tempfile.mkdtemp(prefix="infpop-slurm-", dir="/tmp")
        try:
            conf = (
                subprocess.run(
                    [str(TESTCLUSTER / "up.sh"), own_dir], capture_output=True, text=True, check=True, timeout=180
                )
                .stdout.strip()
                .splitlines()[-1]
            )
        except subprocess.CalledProcessError as exc:
            subprocess.run([str(TESTCLUSTER / "down.sh"), own_dir], check=False)
            raise RuntimeError(f"test cluster did not start:\n{exc.stdout}\n{exc.stderr}") from None
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    try:
        yield conf
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        if own_dir:
            subprocess.run([str(TESTCLUSTER / "down.sh"), own_dir], check=False)
            shutil.rmtree(own_dir, ignore_errors=True)


def wait_finished(job_ids: Sequence[str], timeout_s: float) -> dict[str, str]:
    """Poll sacct until no job is queued, running or requeued; return the final states."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = job_states(job_ids)
        if all(s not in ACTIVE_STATES and s != "UNKNOWN" for s in states.values()):
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs still not finished after {timeout_s:.0f}s: {states}")
        time.sleep(1)
