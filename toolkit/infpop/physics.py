"""What a model's architecture and a GPU's datasheet say about a trial before it runs.

Two predictions about a trial (:class:`TrialShape`), both from numbers a user has before the first trial (the model's
``config.json`` and the GPU's datasheet), used by the HPO search (:mod:`infpop_analysis.hpo`)
on the login node, hence no torch here:

- :func:`peak_memory` / :func:`predicts_oom`: the bytes the busiest GPU holds at a trial's
  largest batch (weights, KV cache, the transient logits and activations of the prefill) against
  its memory: where the out-of-memory frontier lies per GPU count;
- :func:`roofline`: tokens/s a trial cannot exceed, from FLOP/s and HBM bandwidth (prefill and
  decode per batch), for the engine's parallelism (``hf``'s ``device_map="auto"`` runs the
  layers on one GPU after the other; ``vllm`` splits every layer across GPUs);
- :func:`estimate`: the same at the share of peak FLOP/s the engine reaches: not a bound but
  where throughput likely peaks, which is where a search starts.

The constants of both models are in :class:`Calibration`; the benchmark scores them both
in-sample and cross-validated (leave one model family out, leave one GPU type out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from infpop.plugins import ENGINES, EngineCapabilities

GB = 1e9


class Architecture(BaseModel):
    """The shape of a transformer decoder, as its ``config.json`` gives it (names follow Llama's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: int = Field(gt=0, description="num_hidden_layers / n_layer")
    hidden_size: int = Field(gt=0)
    heads: int = Field(gt=0, description="num_attention_heads / n_head")
    kv_heads: int = Field(gt=0, description="num_key_value_heads (1 for multi-query attention)")
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(gt=0, description="MLP width (4 x hidden where the config has none)")
    vocab_size: int = Field(gt=0)
    #: SwiGLU/GeGLU MLPs have three matrices, GELU MLPs two.
    gated_mlp: bool
    tied_embeddings: bool
    #: Mixture of experts: experts per layer and experts each token uses.
    experts: int = Field(default=1, gt=0)
    experts_per_token: int = Field(default=1, gt=0)
    #: Where every value comes from (e.g. "config.json of codellama/CodeLlama-7b-hf").
    source: str = Field(min_length=1)

    def _layer_params(self, experts: int) -> int:
        h, q, kv = self.hidden_size, self.heads * self.head_dim, self.kv_heads * self.head_dim
        attention = h * q + 2 * h * kv + q * h
        mlp = (3 if self.gated_mlp else 2) * h * self.intermediate_size
        return attention + experts * mlp

    @property
    def params(self) -> int:
        """Parameter count (biases and norms left out: under 0.5 % for these models)."""
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)
        return self.layers * self._layer_params(self.experts) + embeddings

    @property
    def active_params(self) -> int:
        """Parameters each token passes through (all of them, except in a mixture of experts)."""
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)
        return self.layers * self._layer_params(self.experts_per_token) + embeddings

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


#: Activations of gated MLPs (three matrices: SwiGLU in Llama, Mistral, Qwen; GeGLU in Gemma).
GATED_ACTIVATIONS = frozenset({"silu", "swish", "swiglu", "geglu", "gelu_pytorch_tanh"})


def architecture_from_config(config: dict[str, Any], source: str) -> Architecture:
    """The shape a transformers ``config.json`` gives (Llama's names, GPT-2/Bloom's where those
    are missing); a key it lacks takes the family's convention (KV heads = heads, MLP 4 x hidden,
    tied embeddings as transformers defaults them)."""
    hidden = config.get("hidden_size", config.get("n_embd"))
    heads = config.get("num_attention_heads", config.get("n_head"))
    act = config.get("hidden_act", config.get("activation_function", ""))
    return Architecture(
        layers=config.get("num_hidden_layers", config.get("n_layer")),
        hidden_size=hidden,
        heads=heads,
        kv_heads=config.get("num_key_value_heads") or (1 if config.get("multi_query") else heads),
        head_dim=config.get("head_dim") or hidden // heads,
        intermediate_size=config.get("intermediate_size") or config.get("n_inner") or 4 * hidden,
        vocab_size=config["vocab_size"],
        gated_mlp=act in GATED_ACTIVATIONS,
        tied_embeddings=config.get("tie_word_embeddings", True),
        experts=config.get("num_local_experts") or config.get("num_experts") or 1,
        experts_per_token=config.get("num_experts_per_tok") or 1,
        source=source,
    )


@dataclass(frozen=True)
class GPU:
    """Datasheet figures of one accelerator (dense fp16 tensor FLOP/s, HBM bandwidth, and the
    host link weights offloaded to CPU memory cross)."""

    name: str
    memory_gb: float
    bandwidth_gbs: float
    fp16_tflops: float
    host_link_gbs: float


#: The accelerators the catalog knows; keys are the hardware labels of result paths, plus sizes.
#: Host links: PCIe 3.0 x16 (V100), 4.0 x16 (A100), 5.0 x16 (H100, H200).
GPUS: dict[str, GPU] = {
    "a100-40gb": GPU("NVIDIA A100-SXM4-40GB", 40, 1555, 312, 32),
    "a100-80gb": GPU("NVIDIA A100-SXM4-80GB", 80, 2039, 312, 32),
    "v100-16gb": GPU("Tesla V100-SXM2-16GB", 16, 900, 125, 16),
    "v100-32gb": GPU("Tesla V100-SXM2-32GB", 32, 900, 125, 16),
    "h100": GPU("NVIDIA H100 SXM5 80GB", 80, 3350, 989, 64),
    "h200": GPU("NVIDIA H200 SXM 141GB", 141, 4800, 989, 64),
    # The embedded default's CPU "device": a nominal server socket (memory is host RAM).
    "cpu": GPU("CPU (nominal socket)", 64, 100, 2, 100),
}
#: Hardware labels as results name them; the study's A100s had 40 GB and its V100s 32 GB.
ALIASES = {"a100": "a100-40gb", "v100": "v100-32gb", "tesla": "v100-32gb", "h100-80gb": "h100", "h200-141gb": "h200"}


def gpu(hardware: str) -> GPU | None:
    """The catalog entry for a hardware label (``a100``, ``v100-16gb``, ``h200``...), or None."""
    key = hardware.lower()
    return GPUS.get(ALIASES.get(key, key))


@dataclass(frozen=True)
class Calibration:
    """The memory model's constants: what a trial can use of a GPU, and its transients.

    ``usable``: share of a GPU's memory a trial can fill (the CUDA context and allocator slack
    take the rest); ``offload_cap``: share of a GPU that ``device_map="auto"`` fills with weights
    before it offloads the rest to the CPU; per prompt token of the largest batch,
    ``kv_copies`` copies of the KV cache and ``hidden_copies`` copies of one hidden state per
    layer, both split across the GPUs with the layers, and ``logit_bytes`` bytes per vocabulary
    entry of the logits, on the last GPU alone (fp16 output upcast to fp32); ``vllm_utilization``:
    vLLM's ``gpu_memory_utilization`` (its default); ``vllm_min_context``: tokens of context vLLM
    must fit in its KV cache to start; ``hf_efficiency``/``vllm_efficiency``: the share of peak
    FLOP/s an engine that pads its batches (calibrated on HF) and one with continuous batching
    (calibrated on vLLM) reach (:func:`estimate`: HF's eager attention on padded batches reaches
    far less than vLLM's kernels, so its throughput peaks at small batches where the bound keeps
    rising); the ``vllm_`` memory constants apply to every memory-sized engine. The defaults are those chosen
    on the published study's outcomes (``infpop hpo benchmark`` prints them in-sample and
    cross-validated).
    """

    usable: float = 0.8
    offload_cap: float = 0.5
    kv_copies: float = 2.0
    hidden_copies: float = 4.0
    logit_bytes: float = 5.0
    vllm_utilization: float = 0.9
    vllm_min_context: int = 2048
    hf_efficiency: float = 0.1
    vllm_efficiency: float = 1.0

    def efficiency(self, engine: EngineCapabilities) -> float:
        return self.vllm_efficiency if engine.continuous_batching else self.hf_efficiency


DEFAULT_CALIBRATION = Calibration()


@dataclass(frozen=True)
class Workload:
    """Prompt lengths in tokens, in the order a trial sends them, and tokens generated per prompt."""

    prompt_tokens: tuple[int, ...]
    new_tokens: int

    def batches(self, batch_size: int) -> list[tuple[int, int]]:
        """(prompts, padded length) of each batch: a batch is padded to its longest prompt."""
        p = self.prompt_tokens
        return [(len(p[i : i + batch_size]), max(p[i : i + batch_size])) for i in range(0, len(p), batch_size)]


@dataclass(frozen=True)
class TrialShape:
    """What the physics needs to know of one trial: the model, the engine, the GPUs it gets and
    the batches it sends. Hashable, so a search can cache a prediction per shape."""

    arch: Architecture
    engine: str
    device: GPU
    n_gpus: int
    batch_size: int
    workload: Workload
    dtype_bytes: int = 2

    @property
    def capabilities(self) -> EngineCapabilities:
        """What the engine declares (:data:`infpop.plugins.ENGINES`): the physics decides from it."""
        return ENGINES.entry(self.engine).capabilities

    @property
    def weight_bytes(self) -> int:
        return self.arch.params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        return self.arch.kv_bytes_per_token(self.dtype_bytes)


def peak_memory(trial: TrialShape, cal: Calibration = DEFAULT_CALIBRATION) -> float:
    """Bytes the busiest GPU needs at the trial's worst batch (the most padded tokens).

    An engine whose KV cache grows with the batch (``hf``, ``device_map="auto"``): the weights
    split across the GPUs layer by layer, up to ``offload_cap`` of each (the rest goes to the CPU
    where it offloads); per padded token, the KV cache and the per-layer hidden states split the
    same way, while the prefill's logits sit on the last GPU.
    A memory-sized engine (``vllm``): the weights split by tensor parallelism, then the KV cache
    must hold one full context; batch size does not matter (the scheduler admits what fits).
    """
    arch, workload, n_gpus = trial.arch, trial.workload, trial.n_gpus
    weights = trial.weight_bytes / n_gpus
    kv = trial.kv_bytes_per_token
    if trial.capabilities.memory_sized:
        context = max(cal.vllm_min_context, max(workload.prompt_tokens) + workload.new_tokens)
        return weights + kv * context / n_gpus
    tokens = max(prompts * (length + workload.new_tokens) for prompts, length in workload.batches(trial.batch_size))
    split = cal.kv_copies * kv + cal.hidden_copies * arch.layers * arch.hidden_size * trial.dtype_bytes
    on_gpu = (trial.weight_bytes - offloaded_bytes(trial, cal.offload_cap)) / n_gpus
    return on_gpu + tokens * (split / n_gpus + cal.logit_bytes * arch.vocab_size)


def predicts_oom(trial: TrialShape, cal: Calibration = DEFAULT_CALIBRATION) -> bool:
    """Whether the trial is predicted to run out of memory on its ``n_gpus`` of its ``device``."""
    share = cal.vllm_utilization if trial.capabilities.memory_sized else cal.usable
    return peak_memory(trial, cal) > share * trial.device.memory_gb * GB


#: The resource a roofline step waits on: ``compute`` (FLOP/s: prefill-dominated trials),
#: ``bandwidth`` (HBM: decode-dominated ones), ``host link`` (offloaded weights crossing PCIe).
Resource = Literal["compute", "bandwidth", "host link"]


def roofline(trial: TrialShape, efficiency: float = 1.0, offloaded_bytes: float = 0.0) -> float:
    """Generated tokens/s the trial cannot beat: each batch's prefill and decode steps at the
    slower of compute (at ``efficiency`` of the peak: 1 for a bound) and memory traffic, on the
    GPUs that work at once (one for ``hf``'s layer-by-layer split, all with tensor parallelism,
    ``vllm``'s). ``hf`` pads a batch to its longest prompt; an engine with continuous batching
    (``vllm``) packs its prompts without padding, so only their actual tokens count there: a
    padded bound is no bound for vLLM at large batches.
    ``offloaded_bytes`` of weights held in CPU memory cross the host links at every step."""
    seconds, _ = _roofline_seconds(trial, efficiency, offloaded_bytes)
    return len(trial.workload.prompt_tokens) * trial.workload.new_tokens / seconds


def _roofline_seconds(trial: TrialShape, efficiency: float, offloaded_bytes: float) -> tuple[float, Resource]:
    """The roofline's seconds (:func:`roofline`), and the resource that takes most of them."""
    arch, engine, dtype_bytes, workload = trial.arch, trial.capabilities, trial.dtype_bytes, trial.workload
    active = trial.n_gpus if engine.tensor_parallel else 1
    flops = trial.device.fp16_tflops * 1e12 * active * efficiency
    bandwidth = trial.device.bandwidth_gbs * GB * active
    per_token = 2 * arch.active_params
    kv = trial.kv_bytes_per_token
    p = workload.prompt_tokens
    fetch = offloaded_bytes / (trial.device.host_link_gbs * GB * trial.n_gpus)

    def read(tokens: int) -> float:
        """Weight bytes a step over ``tokens`` tokens reads: a mixture of experts reads only the
        experts its tokens use (at most all of them)."""
        k, e = arch.experts_per_token, arch.experts
        if e == k:
            return trial.weight_bytes
        per_expert = (arch.params - arch.active_params) / (e - k)
        return (arch.active_params + (min(e, tokens * k) - k) * per_expert) * dtype_bytes

    total = 0.0
    waits: dict[Resource, float] = {"compute": 0.0, "bandwidth": 0.0}
    for i in range(0, len(p), trial.batch_size):
        batch = p[i : i + trial.batch_size]
        prompts = len(batch)
        # Tokens the batch holds: padded to its longest prompt (hf) or as they are (vllm).
        tokens = sum(batch) if engine.continuous_batching else prompts * max(batch)
        compute, memory = per_token * tokens / flops, read(tokens) / bandwidth
        total += max(compute, memory) + fetch
        waits["compute" if compute >= memory else "bandwidth"] += max(compute, memory)
        compute, weights = per_token * prompts / flops, read(prompts)
        for step in range(workload.new_tokens):
            memory = (weights + kv * (tokens + prompts * step)) / bandwidth
            total += max(compute, memory) + fetch
            waits["compute" if compute >= memory else "bandwidth"] += max(compute, memory)
    waits["host link"] = total - waits["compute"] - waits["bandwidth"]  # every step's fetch
    return total, max(waits, key=waits.__getitem__)


def offloaded_bytes(trial: TrialShape, cap: float) -> float:
    """Weight bytes ``hf``'s ``device_map="auto"`` leaves in CPU memory when it fills ``cap`` of
    each GPU with weights (``Calibration.offload_cap`` predicts; 1, a full GPU, gives what no
    placement can avoid); an engine that does not offload (vLLM) fails instead."""
    if not trial.capabilities.offloads_weights:
        return 0.0
    return max(0.0, trial.weight_bytes - cap * trial.device.memory_gb * GB * trial.n_gpus)


def bound(trial: TrialShape) -> float:
    """Tokens/s no engine beats: the roofline at full efficiency, fetching only the weights that
    cannot fit in the GPUs' memory at all (it must hold even where the memory model is wrong)."""
    return roofline(trial, 1.0, offloaded_bytes(trial, 1.0))


def bound_by(trial: TrialShape) -> Resource:
    """The resource that takes most of :func:`bound`'s time: what a trial near its bound is
    limited by, and so what its roofline fraction is a utilisation of."""
    return _roofline_seconds(trial, 1.0, offloaded_bytes(trial, 1.0))[1]


def estimate(trial: TrialShape, cal: Calibration = DEFAULT_CALIBRATION) -> float:
    """Tokens/s the trial likely reaches: the roofline at the engine's calibrated efficiency,
    fetching the weights the memory model predicts to be offloaded."""
    return roofline(trial, cal.efficiency(trial.capabilities), offloaded_bytes(trial, cal.offload_cap))


def chars_workload(prompt_chars: Sequence[int], new_tokens: int, chars_per_token: float = 3.5) -> Workload:
    """A workload from prompt lengths in characters (no tokenizer on the login node): code runs
    about 3.5 characters per token for these tokenizers."""
    return Workload(tuple(max(1, round(c / chars_per_token)) for c in prompt_chars), new_tokens)
