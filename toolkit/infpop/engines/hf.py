"""HuggingFace ``pipeline("text-generation")``, run the way the study ran it.

``device_map="auto"`` over the first n GPUs, ``batch_size=b``, greedy decoding,
``return_full_text=False``, left padding with EOS as the pad token when the tokenizer has
none. ``min_new_tokens == max_new_tokens`` makes every prompt produce exactly the requested
tokens, and the count is read from the ids ``generate`` returns.

Per-prompt lengths (``output_length: reference``) run the batch to its longest request, as a
static batch does, and credit each prompt only the tokens it asked for: the rest is padding
work that serves no request, so it costs time but adds no throughput.

The ``deterministic`` axis switches torch's deterministic algorithms
(``torch.use_deterministic_algorithms``) at load, on or off, so that a setting left by an earlier
group in the process cannot leak in; with it on, cuBLAS gets its reproducible workspace
(``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which torch requires then) before CUDA starts, and
:meth:`HFPipelineEngine.close` puts back what was there. An operation without a deterministic
implementation then raises, and the trial records the error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import wraps
from typing import Any

from infpop.engines.base import BatchOutput, ContextExceeded, Engine, set_env
from infpop.gpus import restrict_visible_gpus


class _TokenCounter:
    """Wraps ``model.generate`` to count prompt and new tokens from the id tensors it sees, and
    keep each prompt's new ids (the pipeline hands back only decoded text)."""

    def __init__(self, generate: Any, eos_ids: set[int], context: int | None):
        self.context = context
        self.prompt_tokens = 0
        self.per_prompt: list[int] = []
        self.ids: list[tuple[int, ...]] = []
        #: Tokens each prompt of the current call asked for, in order; ``None``: all it made.
        self.caps: list[int] | None = None
        self._eos = eos_ids
        self._generate = generate

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        input_ids = kwargs.get("input_ids")
        mask = kwargs.get("attention_mask")
        in_len = 0 if input_ids is None else input_ids.shape[1]
        asked = kwargs.get("max_new_tokens") or 0
        if self.context is not None and mask is not None and int(mask.sum(1).max()) + asked > self.context:
            raise ContextExceeded(int(mask.sum(1).max()), asked, self.context, "max_position_embeddings")
        out = self._generate(*args, **kwargs)
        if mask is not None:
            self.prompt_tokens += int(mask.sum())
        elif input_ids is not None:
            self.prompt_tokens += int(input_ids.numel())
        sequences = getattr(out, "sequences", out)
        for row in sequences[:, in_len:].tolist():
            # Tokens after the first EOS are padding of a sequence that finished early.
            stop = next((i + 1 for i, tok in enumerate(row) if tok in self._eos), len(row))
            if self.caps is not None:
                stop = min(stop, self.caps[len(self.per_prompt)])
            self.per_prompt.append(stop)
            self.ids.append(tuple(row[:stop]))
        return out

    def take(self) -> BatchOutput:
        counts = BatchOutput(self.prompt_tokens, sum(self.per_prompt), tuple(self.per_prompt), tuple(self.ids))
        self.prompt_tokens, self.per_prompt, self.ids, self.caps = 0, [], [], None
        return counts


class _FirstToken:
    """A ``generate`` streamer that notes when the first new tokens appear. Its first ``put``
    is the prompt, its second the first decoding step of the whole batch."""

    def __init__(self) -> None:
        self.puts = 0
        self.at: float | None = None

    def put(self, value: Any) -> None:
        self.puts += 1
        if self.puts == 2:
            self.at = time.perf_counter()

    def end(self) -> None:
        """Nothing to flush: only the time is kept."""


class HFPipelineEngine(Engine):
    name = "hf"
    #: cuBLAS's workspace setting and the one deterministic mode needs (torch's docs, "Reproducibility").
    CUBLAS = ("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    #: Puts back the workspace setting :meth:`load` replaced, at :meth:`close`.
    _put_back_env: Callable[[], None] | None = None

    def load(self) -> None:
        restrict_visible_gpus(self.n_gpus)
        if self.deterministic:  # read when cuBLAS makes its first workspace: before CUDA starts
            self._put_back_env = set_env(*self.CUBLAS)
        import torch
        from transformers import AutoTokenizer, pipeline

        torch.use_deterministic_algorithms(self.deterministic)
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
        context = getattr(model.config, "max_position_embeddings", None)
        self._counter = _TokenCounter(model.generate, eos_ids, context)
        model.generate = wraps(model.generate)(self._counter)

    def generate(self, prompts: Sequence[str], batch_size: int, max_new_tokens: int | Sequence[int]) -> BatchOutput:
        return self._run(prompts, batch_size, max_new_tokens, {})

    def generate_timed(
        self, prompts: Sequence[str], batch_size: int, max_new_tokens: int | Sequence[int]
    ) -> BatchOutput:
        first = _FirstToken()
        out = self._run(prompts, batch_size, max_new_tokens, {"streamer": first})
        return replace(out, first_token_at=first.at)

    def _run(
        self, prompts: Sequence[str], batch_size: int, max_new_tokens: int | Sequence[int], extra: dict[str, Any]
    ) -> BatchOutput:
        if isinstance(max_new_tokens, int):
            longest = max_new_tokens
        else:
            self._counter.caps = list(max_new_tokens)
            longest = max(self._counter.caps)
        self.pipe(
            list(prompts),
            batch_size=batch_size,
            max_new_tokens=longest,
            min_new_tokens=longest,
            do_sample=False,
            return_full_text=False,
            **extra,
        )
        return self._counter.take()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.pipe.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def recover(self) -> None:
        if hasattr(self, "_counter"):  # not after a failed load
            self._counter.take()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def deterministic_on(self) -> bool:
        import torch

        return torch.are_deterministic_algorithms_enabled()

    def close(self) -> None:
        self.pipe = None
        self.recover()
        if self.deterministic:
            import torch

            torch.use_deterministic_algorithms(False)
        if self._put_back_env is not None:
            self._put_back_env()
            self._put_back_env = None

    def devices(self) -> list[str]:
        import torch

        if not torch.cuda.is_available():
            return ["cpu"]
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
