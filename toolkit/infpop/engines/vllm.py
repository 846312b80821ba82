"""vLLM's offline ``LLM`` engine, run the way the study ran it.

``LLM(model, tensor_parallel_size=n, dtype, gpu_memory_utilization, seed, trust_remote_code)``
once per trial group; each batch is one ``generate`` call with the batch's b prompts and
``SamplingParams(max_tokens, ignore_eos=True, temperature=0)``, so every prompt yields exactly
``max_tokens`` greedy tokens. Token counts come from ``outputs[0].token_ids`` and
``prompt_token_ids``. Engine options from the manifest (``engine_options.vllm``, e.g.
``max_model_len``, ``gpu_memory_utilization``, ``enforce_eager``) are passed to ``LLM``.

Written against vLLM 0.10.2 (the pin of ``containers/vllm-*.lock.toml``); the argument names are
checked against that version's signatures in ``tests/test_vllm_engine.py``.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

from infpop.engines.base import BatchOutput, Engine
from infpop.gpus import restrict_visible_gpus

#: vLLM's defaults, written out so a result's engine_options say what ran.
DEFAULTS: dict[str, Any] = {"gpu_memory_utilization": 0.9, "seed": 0}

#: Start-up failures that mean "the model does not fit", raised as ValueError by vLLM 0.10.2.
OOM_MESSAGES = ("no available memory for the cache blocks", "larger than the available kv cache memory")


class VLLMEngine(Engine):
    name = "vllm"

    def llm_kwargs(self) -> dict[str, Any]:
        """Arguments of ``vllm.LLM`` for this group (``max_model_len`` goes on to ``EngineArgs``)."""
        return {
            "model": self.model_path,
            "revision": self.model.revision,
            "tensor_parallel_size": self.n_gpus,
            "dtype": self.dtype,
            "trust_remote_code": self.model.trust_remote_code,
            **DEFAULTS,
            **self.options,
        }

    @staticmethod
    def sampling_kwargs(max_new_tokens: int) -> dict[str, Any]:
        """Greedy decoding of exactly ``max_new_tokens`` tokens per prompt, as the study measured."""
        return {"max_tokens": max_new_tokens, "ignore_eos": True, "temperature": 0.0}

    def load(self) -> None:
        restrict_visible_gpus(self.n_gpus)
        from vllm import LLM

        self.llm = LLM(**self.llm_kwargs())

    def generate(self, prompts: Sequence[str], batch_size: int, max_new_tokens: int | Sequence[int]) -> BatchOutput:
        from vllm import SamplingParams

        if isinstance(max_new_tokens, int):
            params: Any = SamplingParams(**self.sampling_kwargs(max_new_tokens))
        else:  # one length per prompt (output_length: reference): vLLM pairs a list with the prompts
            params = [SamplingParams(**self.sampling_kwargs(n)) for n in max_new_tokens]
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        per_prompt = tuple(len(o.outputs[0].token_ids) for o in outputs)
        return BatchOutput(
            prompt_tokens=sum(len(o.prompt_token_ids or ()) for o in outputs),
            generated_tokens=sum(per_prompt),
            per_prompt=per_prompt,
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        tokenizer = self.llm.get_tokenizer()
        return [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]

    def close(self) -> None:
        """Stop the engine and its worker processes so the next group gets the GPUs' memory back."""
        llm = getattr(self, "llm", None)
        self.llm = None
        if llm is None:
            return
        engine_core = getattr(llm.llm_engine, "engine_core", None)
        if engine_core is not None:
            engine_core.shutdown()
        del llm
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
        gc.collect()

    @staticmethod
    def is_oom(exc: BaseException) -> bool:
        if Engine.is_oom(exc):
            return True
        return isinstance(exc, ValueError) and any(m in str(exc).lower() for m in OOM_MESSAGES)

    def devices(self) -> list[str]:
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
