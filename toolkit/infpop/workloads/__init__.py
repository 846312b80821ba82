"""Workload registry: each workload module turns a dataset file into prompts.

``load_prompts`` is the one entry point the trial runner uses: fetch (sha256-checked),
parse with the workload's loader, keep the first ``limit`` records, then order them. The
``synthetic`` workload is the one that reads no file: it is generated from the manifest's
length distributions.

Reference output lengths are kept as *text* by the loaders and counted in tokens only on the
compute node, with the engine's own tokenizer (:func:`with_reference_tokens`): a token count
belongs to a model, not to a dataset, so one dataset file serves every model, and the login
node never loads a tokenizer. The workload study did the same (it tokenised each dataset once
per model).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from infpop.errors import InputError
from infpop.plugins import SYNTHETIC, WORKLOADS
from infpop.workloads.fetch import ensure_local
from infpop.workloads.prompt import Prompt

if TYPE_CHECKING:
    from infpop.manifest import WorkloadSpec

Loader = Callable[[Path], list[Prompt]]


def known_workloads() -> set[str]:
    return {*WORKLOADS.names(), SYNTHETIC}


def loader(name: str) -> Loader:
    if name not in WORKLOADS.names():
        raise InputError(f"workload.name: unknown workload {name!r}; known: {', '.join(sorted(known_workloads()))}")
    return WORKLOADS.load(name)


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
    if spec.synthetic is not None:
        from infpop.workloads.synthetic import generate

        source, prompts = "synthetic workload", generate(spec.synthetic, spec.seed)
    else:
        source = ensure_local(path, url or spec.url, spec.sha256)
        prompts = loader(spec.name)(source)
    if spec.limit is not None:
        prompts = prompts[: spec.limit]
    if not prompts:
        raise InputError(f"{source}: workload {spec.name!r} has no prompts")
    return order_prompts(prompts, spec.order, spec.seed)


def with_reference_tokens(prompts: list[Prompt], count_tokens: Callable[[Sequence[str]], list[int]]) -> list[Prompt]:
    """Fill ``reference_tokens`` from ``reference_text`` with the engine's tokenizer."""
    missing = next((i for i, p in enumerate(prompts) if p.reference_tokens is None and p.reference_text is None), None)
    if missing is not None:
        raise InputError(
            f"output_length: 'reference' needs a reference output, and prompt {missing} of this workload has none; "
            "use output_length: fixed"
        )
    texts = [p.reference_text for p in prompts if p.reference_tokens is None]
    counts = iter(count_tokens(texts) if texts else [])
    return [p if p.reference_tokens is not None else replace(p, reference_tokens=next(counts)) for p in prompts]


def new_tokens(prompts: Sequence[Prompt], output_length: str, cap: int) -> int | list[int]:
    """What to ask the engine for: ``cap`` for every prompt (``fixed``, the study's protocol),
    or each prompt's reference length capped at ``cap`` and at least one token (``reference``)."""
    if output_length == "fixed":
        return cap
    return [max(1, min(cap, p.reference_tokens)) for p in prompts]
