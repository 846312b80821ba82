"""Staging models for offline compute nodes, and the plan's refusal of models that are not staged.

The Hugging Face Hub cannot be reached from CI, so ``stage_models`` gets a stand-in for the two
network calls (listing a repository, downloading a snapshot) that writes the cache layout
huggingface_hub itself writes; whether a model is staged is then decided by huggingface_hub's own
offline lookup, as a job's would be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from infpop.cli import main
from infpop.errors import InputError
from infpop.launch import LaunchOptions
from infpop.manifest import ModelSpec, load_manifest
from infpop.models import hub_cache, is_staged, stage_models, weight_patterns
from infpop.plan import plan
from infpop.profile import EMBEDDED_DEFAULT

LOCAL = EMBEDDED_DEFAULT.partition("local")
REV = "0123456789abcdef0123456789abcdef01234567"


def test_weight_patterns_take_one_format_preferring_safetensors() -> None:
    both = ["config.json", "model-00001-of-00002.safetensors", "pytorch_model.bin", "tokenizer.json"]
    assert weight_patterns(both)[-1] == "*.safetensors" and "*.bin" not in weight_patterns(both)
    assert weight_patterns(["config.json", "pytorch_model.bin"])[-1] == "*.bin"
    assert "*.json" in weight_patterns(["config.json"]) and "tokenizer*" in weight_patterns([])


class FakeHub:
    """Stands in for the Hub (unreachable here): writes snapshots the way huggingface_hub does."""

    def __init__(self) -> None:
        self.downloads: list[dict[str, Any]] = []

    def list_files(self, repo_id: str, revision: str | None) -> list[str]:
        return ["config.json", "model.safetensors", "pytorch_model.bin"]

    def download(self, repo_id: str, *, revision: str | None, cache_dir: str, allow_patterns: list[str]) -> str:
        self.downloads.append({"repo_id": repo_id, "revision": revision, "allow_patterns": allow_patterns})
        repo = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
        commit = revision or REV
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / "config.json").write_text("{}")
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        return str(snapshot)


def _manifest(tmp_path: Path, models: list[dict]) -> Path:
    data = {
        "study": "m",
        "output_root": str(tmp_path / "runs"),
        "models": models,
        "engines": ["hf"],
        "gpu_counts": [1],
        "batch_sizes": [1],
        "max_new_tokens": [2],
        "dtype": "float32",
        "workload": {"path": "p.jsonl"},
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_staging_downloads_hub_models_at_their_revision_and_skips_local_ones(tmp_path: Path, tiny_model: Path) -> None:
    models = [
        {"name": "pinned", "source": "org/pinned", "revision": REV},
        {"name": "main", "source": "org/main"},
        {"name": "tiny", "source": str(tiny_model)},
    ]
    loaded = load_manifest(_manifest(tmp_path, models))
    hub = FakeHub()
    cache = tmp_path / "cache"
    staged = stage_models(loaded, cache, list_files=hub.list_files, download=hub.download)
    assert [s.note for s in staged] == ["staged", "staged", "local path, nothing to stage"]
    assert [d["revision"] for d in hub.downloads] == [REV, None]
    assert all(d["allow_patterns"][-1] == "*.safetensors" for d in hub.downloads), "one weight format only"
    assert staged[0].path == str(hub_cache(cache) / "models--org--pinned" / "snapshots" / REV)


def test_plan_refuses_unstaged_models_with_the_command_that_stages_them(tmp_path: Path) -> None:
    loaded = load_manifest(_manifest(tmp_path, [{"name": "pinned", "source": "org/pinned", "revision": REV}]))
    cache = str(tmp_path / "cache")
    launch = LaunchOptions(model_cache=cache, strict=True)
    with pytest.raises(
        InputError,
        match=rf"models: pinned not staged in model_cache {cache} .*"
        rf"infpop models {loaded.path} --cache {cache}",
    ):
        plan(loaded, "local", LOCAL, launch=launch)
    assert plan(loaded, "local", LOCAL, launch=LaunchOptions(model_cache=cache)), "a dry run plans anyway"

    hub = FakeHub()
    stage_models(loaded, cache, list_files=hub.list_files, download=hub.download)
    assert is_staged(loaded.manifest.models[0], cache)
    assert not is_staged(ModelSpec(name="x", source="org/pinned", revision="f" * 40), cache), "other revision"
    groups = plan(loaded, "local", LOCAL, launch=launch)
    assert groups[0].launcher[-2:] == ["-m", "infpop"] and groups[0].launcher[:5] == [
        "env",
        "-u",
        "HF_TOKEN",
        "-u",
        "HUGGING_FACE_HUB_TOKEN",
    ]
    assert "HF_HUB_OFFLINE=1" in groups[0].launcher and f"HF_HUB_CACHE={cache}/hub" in groups[0].launcher


def test_without_a_model_cache_hub_models_are_not_checked_but_local_paths_are(tmp_path: Path) -> None:
    hub_only = load_manifest(_manifest(tmp_path, [{"name": "h", "source": "org/h"}]))
    assert plan(hub_only, "local", LOCAL, launch=LaunchOptions(strict=True))[0].launcher is None, (
        "in-process, as before"
    )
    missing = load_manifest(_manifest(tmp_path, [{"name": "gone", "source": "./no-such-model"}]))
    with pytest.raises(InputError, match=r"models: 'gone' source './no-such-model' does not exist"):
        plan(missing, "local", LOCAL, launch=LaunchOptions(strict=True))


def test_models_command_needs_a_cache(tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _manifest(tmp_path, [{"name": "tiny", "source": str(tiny_model)}])
    assert main(["models", str(path)]) == 2
    assert "no model cache" in capsys.readouterr().err
    assert main(["models", str(path), "--cache", str(tmp_path / "c")]) == 0
    assert "tiny: local path, nothing to stage" in capsys.readouterr().out
