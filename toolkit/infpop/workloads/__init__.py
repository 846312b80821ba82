"""Workload registry: each workload module turns a dataset file into prompts.

``load_prompts`` is the one entry point the trial runner uses: fetch (sha256-checked),
parse with the workload's loader, keep the first ``limit`` records, then order them.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from pathlib import Path

from infpop.errors import InputError
from infpop.manifest import WorkloadSpec
from infpop.workloads.fetch import ensure_local
from infpop.workloads.prompt import Prompt


Loader = Callable[[Path], list[Prompt]]

BUILTIN: dict[str, str] = {
    "humaneval-infilling": "infpop.workloads.humaneval:load",
}


def loader(name: str) -> Loader:
    target = BUILTIN.get(name)
    if target is None:
        raise InputError(f"workload.name: unknown workload {name!r}; known: {', '.join(sorted(BUILTIN))}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def order_prompts(prompts: list[Prompt], order: str, seed: int) -> list[Prompt]:
    if order == "natural":
        return list(prompts)
    if order == "random":
        shuffled = list(prompts)
        random.Random(seed).shuffle(shuffled)
        return shuffled
    if order == "length-ascending":
        return sorted(prompts, key=lambda p: len(p.text))
    raise InputError(f"workload.order: unknown order {order!r}")


def load_prompts(spec: WorkloadSpec, path: Path | None, url: str | None = None) -> list[Prompt]:
    """Prompts of ``spec`` in the order a trial sends them."""
    local = ensure_local(path, url or spec.url, spec.sha256)
    prompts = loader(spec.name)(local)
    if spec.limit is not None:
        prompts = prompts[: spec.limit]
    if not prompts:
        raise InputError(f"{local}: workload {spec.name!r} has no prompts")
    return order_prompts(prompts, spec.order, spec.seed)
