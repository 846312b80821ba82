"""Staging models for offline compute nodes: ``infpop models MANIFEST`` on the login node.

Each hub model is downloaded at its pinned revision with ``huggingface_hub.snapshot_download``
into the profile's shared ``model_cache`` (the ``hub/`` folder under it, the layout
``HF_HUB_CACHE`` expects). Jobs then run with ``HF_HUB_OFFLINE=1`` against that cache
(:func:`infpop.launch.job_env`), so a compute node never needs the network or a token.

The token, when a gated model needs one, is whatever huggingface_hub finds itself (``HF_TOKEN``
or the token file of ``huggingface-cli login``); infpop never passes, prints or writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from infpop.manifest import LoadedManifest, ModelSpec

#: Files a model needs besides its weights: configs, tokenizers, remote code.
SUPPORT_PATTERNS = ("*.json", "*.model", "*.tiktoken", "*.txt", "*.py", "tokenizer*")
#: Weight formats, preferred first: a repository holding both would otherwise be staged twice.
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")


def hub_cache(model_cache: str | Path) -> Path:
    return Path(model_cache) / "hub"


def weight_patterns(repo_files: Iterable[str]) -> list[str]:
    """``allow_patterns`` for a repository: support files plus its first available weight format."""
    files = list(repo_files)
    for pattern in WEIGHT_PATTERNS:
        if any(fnmatch(f, pattern) for f in files):
            return [*SUPPORT_PATTERNS, pattern]
    return list(SUPPORT_PATTERNS)


def is_staged(model: ModelSpec, model_cache: str | Path) -> bool:
    """Whether the model's revision is in the cache (what an offline job will look up)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(
            model.source, revision=model.revision, cache_dir=hub_cache(model_cache), local_files_only=True
        )
    except LocalEntryNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class Staged:
    model: str
    source: str
    revision: str | None
    path: str | None
    note: str


def _list_files(repo_id: str, revision: str | None) -> list[str]:
    from huggingface_hub import HfApi

    return HfApi().list_repo_files(repo_id, revision=revision)


def _download(repo_id: str, **kwargs: Any) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, **kwargs)


def stage_models(
    loaded: LoadedManifest,
    model_cache: str | Path,
    *,
    list_files: Callable[[str, str | None], list[str]] = _list_files,
    download: Callable[..., str] = _download,
) -> list[Staged]:
    """Download every hub model of the manifest at its revision into ``model_cache``; skip local ones.

    A model already in the cache is not downloaded again (``snapshot_download`` checks each file).
    """
    staged = []
    for model in loaded.manifest.models:
        if model.is_local:
            path = loaded.resolve(model.source)
            note = "local path, nothing to stage" if path.exists() else "local path DOES NOT EXIST"
            staged.append(Staged(model.name, model.source, None, str(path), note))
            continue
        patterns = weight_patterns(list_files(model.source, model.revision))
        path = download(
            model.source, revision=model.revision, cache_dir=str(hub_cache(model_cache)), allow_patterns=patterns
        )
        staged.append(Staged(model.name, model.source, model.revision, path, "staged"))
    return staged
