"""Synthetic workloads: prompt and output lengths drawn from the manifest's distributions.

The same spec and seed give the same prompts. An output length is exact (it becomes the
prompt's ``reference_tokens``, used with ``output_length: reference``). An input length is a
number of common English words, each one token in the usual BPE vocabularies; the prompt
tokens a trial actually sent are counted from the engine's ids and recorded, so a tokenizer
that splits a word shows up in the result, not as a silent error.
"""

from __future__ import annotations

import math
import random

from infpop.manifest import FixedLength, LengthSpec, LognormalLength, NormalLength, SyntheticSpec, UniformLength
from infpop.workloads.prompt import Prompt

WORDS = ("the", "of", "and", "to", "in", "is", "for", "on", "that", "with", "as", "it", "at", "by", "from", "this")


def draw(spec: LengthSpec, rng: random.Random) -> int:
    """One length from ``spec``."""
    if isinstance(spec, FixedLength):
        return spec.tokens
    if isinstance(spec, UniformLength):
        return rng.randint(spec.min, spec.max)
    if isinstance(spec, NormalLength):
        value = rng.gauss(spec.mean, spec.std)
    elif isinstance(spec, LognormalLength):
        value = rng.lognormvariate(math.log(spec.median), spec.sigma)
    else:
        raise TypeError(f"unknown length distribution {spec!r}")
    return max(spec.min, min(spec.max or math.inf, round(value)))


def generate(spec: SyntheticSpec, seed: int) -> list[Prompt]:
    rng = random.Random(seed)
    prompts = []
    for _ in range(spec.n_prompts):
        n_in, n_out = draw(spec.input_tokens, rng), draw(spec.output_tokens, rng)
        prompts.append(Prompt(text=" ".join(rng.choice(WORDS) for _ in range(n_in)), reference_tokens=n_out))
    return prompts
