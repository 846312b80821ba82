"""The interface every engine adapter implements.

A trial runner owns timing and bookkeeping; an engine only loads a model and turns one batch
of prompts into generated tokens. Keeping the interface this small is what lets vLLM, HF and
test doubles slot in side by side.
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from infpop.manifest import ModelSpec
from infpop.plugins import ENGINES, EngineCapabilities


def set_env(name: str, value: str) -> Callable[[], None]:
    """Set a process-wide variable a library reads when it loads (a deterministic mode's switch)
    and return what puts back the value it replaced, for :meth:`Engine.close`: a later group in
    the same process starts from the environment the process was given."""
    before = os.environ.get(name)
    os.environ[name] = value

    def put_back() -> None:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before

    return put_back


@dataclass(frozen=True)
class BatchOutput:
    """Token counts of one batch, taken from the engine's token ids (never by re-tokenising)."""

    prompt_tokens: int
    generated_tokens: int
    #: Generated tokens of each prompt, in order, where the engine reports them.
    per_prompt: tuple[int, ...] | None = None
    #: The generated token ids of each prompt, in order (the ``per_prompt`` tokens credited to it),
    #: for the outputs' fingerprints; ``None`` where the engine does not report them.
    token_ids: tuple[tuple[int, ...], ...] | None = None
    #: ``time.perf_counter()`` when the batch's first token appeared (``generate_timed`` only).
    first_token_at: float | None = None
    #: Prompt tokens the engine served from its prefix cache; ``None`` where it has none.
    cached_tokens: int | None = None


@dataclass(frozen=True)
class StreamChunk:
    """What one streamed output of a request brought: its new tokens (and, on the first chunk,
    the prompt's token count)."""

    new_tokens: int
    prompt_tokens: int | None = None
    #: The ids of the new tokens, for the outputs' fingerprints; ``None`` where the engine does not report them.
    token_ids: tuple[int, ...] | None = None
    #: Prompt tokens served from the engine's prefix cache (on the request's last chunk, where the
    #: engine has a prefix cache).
    cached_tokens: int | None = None


T = TypeVar("T")


class ContextExceeded(ValueError):
    """A prompt plus the tokens asked for do not fit the model's context. Every engine refuses
    such a batch (status ``error``, this reason) rather than returning fewer tokens than asked:
    vLLM would stop at ``max_model_len`` without an error, HF would decode past the positions the
    model was trained on; either way the trial would not measure what it names."""

    def __init__(self, prompt_tokens: int, max_new_tokens: int, context: int, limit: str):
        super().__init__(
            f"a prompt of {prompt_tokens} tokens + max_new_tokens {max_new_tokens} exceeds the model's context of "
            f"{context} tokens ({limit}); lower max_new_tokens or the workload's prompt lengths"
        )


class Engine(ABC):
    """Loads a model once per trial group, then generates batch after batch.

    An engine that serves requests as they come (continuous batching) also implements
    :meth:`stream` and declares ``continuous_batching`` in its registry entry
    (:data:`infpop.plugins.ENGINES`); the online scenario then submits each request at its
    arrival instead of batching them itself."""

    #: Its name in :data:`infpop.plugins.ENGINES`.
    name: ClassVar[str]

    def __init__(
        self,
        model: ModelSpec,
        *,
        model_path: str,
        n_gpus: int,
        dtype: str,
        options: dict[str, Any],
        scenario: str = "offline",
        deterministic: bool = False,
    ):
        self.model = model
        self.model_path = model_path
        self.n_gpus = n_gpus
        self.dtype = dtype
        self.options = options
        #: The scenario kind of the group's trials: an engine may load differently to serve online.
        self.scenario = scenario
        #: The ``deterministic`` axis: :meth:`load` switches the engine's deterministic mode (its
        #: registry entry's ``determinism``) on or off, for the whole process, so that one left on
        #: by an earlier group in the same process cannot leak in.
        self.deterministic = deterministic

    @property
    def capabilities(self) -> EngineCapabilities:
        """What the engine's registry entry declares: where the manifest and the planner read
        them too, so the adapter and the plan cannot disagree."""
        return ENGINES.entry(self.name).capabilities

    def expect(self, prompts: Sequence[str]) -> None:
        """The group's prompts, before :meth:`load`: for an engine that sizes a load-time setting to
        the workload (vLLM's prefill budget)."""

    @abstractmethod
    def load(self) -> None:
        """Load weights and allocate the engine; timed separately from inference."""

    @abstractmethod
    def generate(self, prompts: Sequence[str], batch_size: int, max_new_tokens: int | Sequence[int]) -> BatchOutput:
        """Generate exactly ``max_new_tokens`` per prompt for one batch (greedy); a sequence
        gives each prompt its own length (``output_length: reference``)."""

    def generate_timed(
        self, prompts: Sequence[str], batch_size: int, max_new_tokens: int | Sequence[int]
    ) -> BatchOutput:
        """``generate``, also noting when the first token appeared, for time to first token.
        Separate because the hook costs a callback per decoding step, which the offline
        scenario (the study's protocol) must not pay; engines that cannot tell leave
        ``first_token_at`` unset."""
        return self.generate(prompts, batch_size, max_new_tokens)

    def stream(self, prompt: str, max_new_tokens: int, request_id: str) -> AsyncIterator[StreamChunk]:
        """Submit one request to the running engine and yield its output as it is generated
        (greedy, exactly ``max_new_tokens``); only with ``continuous_batching``."""
        raise NotImplementedError(f"engine {self.name!r} does not stream requests")

    def run_async(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main``, which awaits :meth:`stream`, to completion. An engine bound to an event
        loop runs it on that loop."""
        return asyncio.run(main)

    def kv_cache_blocks(self) -> int | None:
        """KV-cache blocks the loaded engine allocated; ``None`` where it has no paged cache."""
        return None

    def resolved(self) -> dict[str, Any] | None:
        """The settings the loaded engine resolved (its own defaults applied), for the record;
        ``None`` where the engine has none to report."""
        return None

    def deterministic_on(self) -> bool | None:
        """Whether the loaded engine's deterministic mode is on, read back from the library (not
        from what was asked); ``None`` where the engine has no such mode."""
        return None

    def unmeasured(self) -> dict[str, str]:
        """Why a counter this engine could report (e.g. ``num_preemptions``) is ``None`` in this run."""
        return {}

    def preemptions(self) -> int | None:
        """Requests preempted since load (a running count); ``None`` where the engine never preempts."""
        return None

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text with the model's tokenizer (reference output lengths)."""
        raise NotImplementedError(f"engine {self.name!r} cannot count tokens, which output_length: reference needs")

    def recover(self) -> None:
        """Release what a failed batch left behind (e.g. the CUDA cache after an OOM)."""

    def close(self) -> None:
        """Free the model so the next group in the same process starts clean."""

    @staticmethod
    def is_oom(exc: BaseException) -> bool:
        """Out-of-memory is an outcome to record, not a crash."""
        if isinstance(exc, MemoryError):
            return True
        if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
            return True
        return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()

    def devices(self) -> list[str]:
        """Names of the accelerators the engine runs on, for provenance."""
        return ["cpu"]
