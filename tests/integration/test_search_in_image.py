"""A live ``infpop hpo search`` on the test cluster's ``charliecloud`` partition: its trials are
SLURM jobs that run inside the CPU image (built by ``make containers``, as for
tests/integration/test_charliecloud.py), planned with the profile's runtime exactly as a sweep's are: the
profile's ``shared_roots`` are what each job binds, and its ``model_cache`` is the job's
offline Hugging Face home."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import humaneval_head
from infpop.checksums import file_sha256
from infpop.cli import main
from infpop.images.lock import CONTAINERS_DIR, read_lock
from infpop.jobs import read_group
from infpop.results import TrialResult, iter_results
from infpop.search_state import read_searches, search_folder
from test_charliecloud import PROFILE, _user_env, cpu_image, image_tiny_model  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow]


@pytest.mark.slurm
def test_live_search_runs_its_trials_in_the_image_with_the_profiles_binds_and_model_cache(
    cpu_image: Path,  # noqa: F811
    image_tiny_model: Path,  # noqa: F811
    humaneval_path: Path,
    slurm_conf: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USER", _user_env()["USER"])
    shared = tmp_path / "shared"
    shutil.copytree(image_tiny_model, shared / "models" / "tiny")
    (shared / "cache").mkdir()
    data = humaneval_head(humaneval_path, shared / "data" / "humaneval.jsonl.gz", 8)
    profile = yaml.safe_load(PROFILE.read_text())
    profile |= {"shared_roots": [str(shared)], "model_cache": str(shared / "cache")}
    profile["partitions"]["charliecloud"]["images"] = {"hf": str(cpu_image)}
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(profile))
    manifest = {
        "study": "ch-search",
        "output_root": str(shared / "runs"),
        "models": [{"name": "tiny", "source": str(shared / "models" / "tiny")}],
        "engines": ["hf"],
        "gpu_counts": [1, 2],
        "batch_sizes": [1, 2],
        "max_new_tokens": [2],
        "dtype": "float32",
        "workload": {"path": str(data), "limit": 4},
        "partitions": ["charliecloud"],
    }
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    argv = ["hpo", "search", str(tmp_path / "manifest.yaml"), "--partition", "charliecloud"]
    assert main([*argv, "--profile", str(tmp_path / "profile.yaml"), "--budget", "2"]) == 0

    bookkeeping = shared / "runs" / "ch-search" / ".infpop"
    (state,) = read_searches(search_folder(bookkeeping))
    assert state.stop_reason == "budget of 2 trials reached" and state.job is None
    assert [t.status for t in state.trials] == ["ok", "ok"] and state.pick is not None
    results = [r for r in iter_results(shared / "runs") if isinstance(r, TrialResult)]
    assert sorted(r.trial.trial_id for r in results) == sorted(t.trial_id for t in state.trials)
    lock = read_lock(CONTAINERS_DIR / "hf-cpu.lock.toml")
    for r in results:
        prov = r.provenance
        assert prov.container_image == str(cpu_image) and prov.container_sha256 == file_sha256(cpu_image)
        assert prov.slurm["job_partition"] == "charliecloud"
        # The image's Python ran it: its libraries are the lock's, not this venv's.
        assert (
            prov.versions["transformers"] == lock.packages["transformers"] != importlib.metadata.version("transformers")
        )
    # What each job ran: ch-run binding the profile's shared root, with its model cache as the
    # offline Hugging Face home (a search planned without the profile's runtime had neither).
    launchers = [read_group(p).launcher for p in sorted((search_folder(bookkeeping) / "groups").glob("*.json"))]
    assert len(launchers) == 2
    for launcher in launchers:
        assert launcher is not None and "ch-run" in launcher and str(cpu_image) in launcher
        assert launcher[launcher.index("-b") + 1] == str(shared), launcher
        assert f"--set-env=HF_HOME={shared / 'cache'}" in launcher and "--set-env=HF_HUB_OFFLINE=1" in launcher
