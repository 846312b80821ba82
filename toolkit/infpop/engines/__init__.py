"""Engine registry: one adapter module per engine, imported only when a trial needs it.

Planning and validation need engine *names* only, so the login node never imports torch.
Third-party engines register through the ``infpop.engines`` entry-point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infpop.engines.base import Engine

BUILTIN: dict[str, str] = {
    "hf": "infpop.engines.hf:HFPipelineEngine",
    "vllm": "infpop.engines.vllm:VLLMEngine",
}


def _registry() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group="infpop.engines")}
    return {**found, **BUILTIN}


def known_engines() -> set[str]:
    return set(_registry())


def engine_class(name: str) -> type[Engine]:
    target = _registry().get(name)
    if target is None:
        raise KeyError(f"unknown engine {name!r}; known: {', '.join(sorted(_registry()))}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
