"""A Hugging Face token in the environment never reaches what infpop writes.

The test sets a fake token (environment and token file), runs a real local sweep of the tiny
model through the launcher path (a model cache configured, so each job starts
``env -u HF_TOKEN ... python -m infpop trial`` as a subprocess), renders the SLURM sbatch
scripts of the same manifest, and searches every byte of results, logs, group files, submitit
folders (pickled jobs included) and sbatch scripts for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from infpop.cli import main
from infpop.launch import LaunchOptions
from infpop.manifest import load_manifest
from infpop.plan import plan
from infpop.profile import PartitionProfile
from infpop.sweep import dry_run

TOKEN = "hf_FAKEtokenForTheSecretsTest0123456789"


def test_token_reaches_no_result_log_job_file_or_sbatch_script(
    tmp_path: Path, write_manifest, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hf_home = tmp_path / "hf-home"
    hf_home.mkdir()
    (hf_home / "token").write_text(TOKEN)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(hf_home))

    cache = tmp_path / "models"
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({
        "name": "secrets",
        "shared_roots": [str(tmp_path)],
        "model_cache": str(cache),
        "partitions": {"local": {"executor": "local", "hardware": "cpu", "cpus_per_gpu": 1, "array_parallelism": 1}},
    }))  # fmt: skip
    manifest = write_manifest(batch_sizes=[2], max_new_tokens=[2])
    assert main(["sweep", str(manifest), "--partition", "local", "--profile", str(profile)]) == 0
    out, err = capsys.readouterr()
    results = list((tmp_path / "runs").rglob("*.json"))
    assert any("/cpu/hf/" in str(p) for p in results), out + err
    assert list((tmp_path / "runs").rglob("logs/*/*")), "submitit wrote its job folders"

    slurm = PartitionProfile(slurm_partition="gpu", hardware="a100", gpu_type="a100", gpus_per_node=8,
                             compute_capability="8.0", images={"hf": str(tmp_path / "infpop-hf-sm80.sif")})  # fmt: skip
    groups = plan(load_manifest(manifest), "a100", slurm, launch=LaunchOptions(model_cache=str(cache)))
    sbatch = dry_run(groups, "a100", slurm)
    assert "#SBATCH" in sbatch and "apptainer exec" in sbatch

    leaks = [str(p) for p in (tmp_path / "runs").rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert not leaks, f"token found in {leaks}"
    assert TOKEN not in sbatch and TOKEN not in out and TOKEN not in err
