"""What a workload yields: a prompt and, where the dataset has one, its reference output."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    text: str
    #: Output length of the reference answer in tokens: given by the synthetic workload, and
    #: counted from ``reference_text`` with the engine's tokenizer for datasets.
    reference_tokens: int | None = None
    #: The dataset's reference answer (Alpaca's output, CNN/DailyMail's highlights, ...).
    reference_text: str | None = None
