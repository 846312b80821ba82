"""A tiny Llama built offline: real transformers code paths, no hub, seconds on a CPU.

The tokenizer is a byte-level BPE trained on this Python's own standard-library sources
(code, like the study's workload); the weights are random with a fixed seed.
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

SPECIAL = {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"}


def _stdlib_sources(limit: int = 400) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [str(p) for p in sorted(root.glob("*.py"))[:limit]]


#: Llama decoder stacks by name: ``tiny`` (~2M parameters, the tests' and the demo's), and the
#: stacks of Llama-3.2-1B (~1.0B parameters here) and Llama-3-8B (~7.0B here: this tokenizer's
#: 4k vocabulary instead of 128k leaves out most of the embeddings), for benchmarks/gpu_check.sh.
SHAPES: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
             "intermediate_size": 352},
    "1b": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
           "intermediate_size": 8192},
    "8b": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
           "intermediate_size": 14336},
}  # fmt: skip


def build_tiny_model(out: str | Path, *, vocab_size: int = 4096, seed: int = 0) -> Path:
    """Write a tokenizer and a ~2M-parameter LlamaForCausalLM to ``out``."""
    return build_llama(out, "tiny", vocab_size=vocab_size, seed=seed)


def build_llama(
    out: str | Path, shape: str, *, vocab_size: int = 4096, seed: int = 0, dtype: str = "float32", device: str = "cpu"
) -> Path:
    """Write a tokenizer and a LlamaForCausalLM of :data:`SHAPES` ``shape`` with random weights
    in ``dtype`` to ``out``, initialised on ``device`` (a GPU builds an 8B model in seconds,
    where a CPU takes minutes and 32 GB in float32)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out)
    tok = Tokenizer(models.BPE(unk_token=SPECIAL["unk"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train(_stdlib_sources(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL["bos"],
        eos_token=SPECIAL["eos"],
        pad_token=SPECIAL["pad"],
        unk_token=SPECIAL["unk"],
        padding_side="left",
        model_max_length=2048,
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        **SHAPES[shape],
    )
    default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # created in dtype: an 8B model in float32 is 28 GB
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    _portable_tokenizer_class(out / "tokenizer_config.json")
    return out


def _portable_tokenizer_class(config: Path) -> None:
    """Name the tokenizer class by the name every transformers release knows: 5.x writes its own
    (``TokenizersBackend``), which the 4.x of an image's lock (containers/hf-cpu.lock.toml) cannot
    load, so a model built here could not run in that image."""
    data = json.loads(config.read_text())
    data["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.write_text(json.dumps(data, indent=2) + "\n")
