"""HuggingFace ``pipeline("text-generation")``, run the way the study ran it.

``device_map="auto"`` over the first n GPUs, ``batch_size=b``, greedy decoding,
``return_full_text=False``, left padding with EOS as the pad token when the tokenizer has
none. ``min_new_tokens == max_new_tokens`` makes every prompt produce exactly the requested
tokens, and the count is read from the ids ``generate`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import wraps
from typing import Any

from infpop.engines.base import BatchOutput, Engine
from infpop.gpus import restrict_visible_gpus


class _TokenCounter:
    """Wraps ``model.generate`` to count prompt and new tokens from the id tensors it sees."""

    def __init__(self, generate: Any, eos_ids: set[int]):
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self._eos = eos_ids
        self._generate = generate

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self._generate(*args, **kwargs)
        input_ids = kwargs.get("input_ids")
        mask = kwargs.get("attention_mask")
        in_len = 0 if input_ids is None else input_ids.shape[1]
        if mask is not None:
            self.prompt_tokens += int(mask.sum())
        elif input_ids is not None:
            self.prompt_tokens += int(input_ids.numel())
        sequences = getattr(out, "sequences", out)
        for row in sequences[:, in_len:].tolist():
            # Tokens after the first EOS are padding of a sequence that finished early.
            stop = next((i + 1 for i, tok in enumerate(row) if tok in self._eos), len(row))
            self.generated_tokens += stop
        return out

    def take(self) -> BatchOutput:
        counts = BatchOutput(self.prompt_tokens, self.generated_tokens)
        self.prompt_tokens = self.generated_tokens = 0
        return counts


class HFPipelineEngine(Engine):
    name = "hf"

    def load(self) -> None:
        restrict_visible_gpus(self.n_gpus)
        import torch
        from transformers import AutoTokenizer, pipeline

        if self.options.get("cpu_threads"):
            torch.set_num_threads(int(self.options["cpu_threads"]))
        common = {"revision": self.model.revision, "trust_remote_code": self.model.trust_remote_code}
        tokenizer = AutoTokenizer.from_pretrained(self.model_path, padding_side="left", **common)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        dtype = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
        self.pipe = pipeline(
            "text-generation",
            model=self.model_path,
            tokenizer=tokenizer,
            device_map="auto",
            dtype=dtype,
            **common,
        )
        model = self.pipe.model
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self._counter = _TokenCounter(model.generate, eos_ids)
        model.generate = wraps(model.generate)(self._counter)

    def generate(self, prompts: Sequence[str], batch_size: int, max_new_tokens: int) -> BatchOutput:
        self.pipe(
            list(prompts),
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            return_full_text=False,
        )
        return self._counter.take()

    def recover(self) -> None:
        self._counter.take()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def close(self) -> None:
        self.pipe = None
        self.recover()

    def devices(self) -> list[str]:
        import torch

        if not torch.cuda.is_available():
            return ["cpu"]
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
