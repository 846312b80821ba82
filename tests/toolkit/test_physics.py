"""The physics a search starts from: parameter and KV-cache sizes, the memory model and the bound.

Checked against figures a user can verify without infpop: Llama-2-7B's published parameter count
and its KV cache per token, the A100's datasheet bandwidth, and what tensor parallelism and
padding do to a bound.
"""

from __future__ import annotations

import pytest
from infpop.physics import Architecture, TrialShape, Workload, bound, chars_workload, gpu, peak_memory, predicts_oom

LLAMA2_7B = Architecture(
    layers=32,
    hidden_size=4096,
    heads=32,
    kv_heads=32,
    head_dim=128,
    intermediate_size=11008,
    vocab_size=32000,
    gated_mlp=True,
    tied_embeddings=False,
    source="config.json of meta-llama/Llama-2-7b-hf",
)


def _trial(engine: str, hardware: str, n_gpus: int, batch: int, workload: Workload, arch=LLAMA2_7B) -> TrialShape:
    device = gpu(hardware)
    assert device is not None
    return TrialShape(arch, engine, device, n_gpus, batch, workload)


def test_parameters_and_kv_cache_match_the_published_model() -> None:
    # The model card's 6,738,415,616 parameters include the norms the model leaves out (< 0.5 %).
    assert LLAMA2_7B.params == pytest.approx(6_738_415_616, rel=0.005)
    # 2 (K and V) x 32 layers x 32 heads x 128 dims x 2 bytes: half a MiB per token in fp16.
    assert LLAMA2_7B.kv_bytes_per_token(2) == 512 * 1024


def test_a_single_stream_decode_bound_is_the_bandwidth_over_the_weights() -> None:
    """One prompt, many new tokens: every step reads all weights, so HBM bandwidth decides."""
    trial = _trial("hf", "a100-40gb", 1, 1, Workload((8,), 256))
    ceiling = 1555e9 / trial.weight_bytes
    assert 0.9 * ceiling < bound(trial) <= ceiling


def test_tensor_parallelism_raises_the_bound_and_a_layer_split_does_not() -> None:
    work = Workload(tuple([100] * 64), 32)
    hf = [bound(_trial("hf", "a100-80gb", n, 8, work)) for n in (1, 2, 4)]
    vllm = [bound(_trial("vllm", "a100-80gb", n, 8, work)) for n in (1, 2, 4)]
    assert hf[0] == pytest.approx(hf[1]) == pytest.approx(hf[2])
    assert vllm[0] < vllm[1] < vllm[2]


def test_padding_costs_the_padding_engine_only() -> None:
    """Mixed prompt lengths: HF pads each batch to its longest prompt, vLLM packs them."""
    even, mixed = Workload((50,) * 16, 4), Workload((5, 95) * 8, 4)  # the same 800 prompt tokens
    hf_even, hf_mixed = (bound(_trial("hf", "a100-80gb", 1, 16, w)) for w in (even, mixed))
    vllm_even, vllm_mixed = (bound(_trial("vllm", "a100-80gb", 1, 16, w)) for w in (even, mixed))
    assert hf_mixed < hf_even
    assert vllm_mixed == pytest.approx(vllm_even, rel=0.01)


def test_memory_grows_with_the_batch_for_hf_and_not_for_a_memory_sized_engine() -> None:
    work = Workload(tuple([400] * 256), 64)
    hf = [peak_memory(_trial("hf", "a100-40gb", 1, b, work)) for b in (1, 16, 256)]
    vllm = [peak_memory(_trial("vllm", "a100-40gb", 1, b, work)) for b in (1, 16, 256)]
    assert hf[0] < hf[1] < hf[2]
    assert vllm[0] == vllm[1] == vllm[2]


def test_out_of_memory_where_the_weights_cannot_fit() -> None:
    work = Workload((100,), 16)
    # 13.5 GB of fp16 weights: over 90 % of a 16 GB V100 with vLLM's KV cache; fine on 80 GB.
    assert predicts_oom(_trial("vllm", "v100-16gb", 1, 1, work))
    assert not predicts_oom(_trial("vllm", "a100-80gb", 1, 1, work))
    assert not predicts_oom(_trial("vllm", "v100-16gb", 2, 1, work)), "two GPUs split the weights"


def test_hardware_labels_as_results_name_them() -> None:
    a100, v100 = gpu("A100"), gpu("v100")
    assert a100 is not None and a100.memory_gb == 40, "the study's A100s had 40 GB"
    assert v100 is not None and v100.memory_gb == 32
    assert gpu("tpu-v5") is None


def test_prompt_characters_become_at_least_one_token_each() -> None:
    assert chars_workload([0, 7, 35], 8) == Workload((1, 2, 10), 8)
