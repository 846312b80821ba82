"""What a workload yields: a prompt and, where the dataset has one, its reference output length."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    text: str
    #: Output length of the dataset's reference answer in tokens, where the workload has one.
    reference_tokens: int | None = None
