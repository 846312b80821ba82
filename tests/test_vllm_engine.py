"""The vLLM adapter, on a machine where vLLM cannot be installed (CUDA-only wheels).

Two stand-ins, each saying what it replaces:
- ``tests/data/vllm_0.10.2_signatures.json`` stands in for the installed package's signatures
  (``LLM.__init__``, ``LLM.generate``, ``SamplingParams``, ``EngineArgs``, the output classes),
  recorded with ``tests/data/record_vllm_signatures.py`` from the released vllm 0.10.2 wheel's
  source. When vllm is importable the real signatures are inspected instead.
- A fake ``vllm`` module stands in for the engine itself (GPU inference): it checks every
  argument against those signatures and returns outputs shaped like vLLM's, so the adapter's
  token counting, OOM handling and teardown run through the real trial runner.
The ``vllm``-marked test runs the real engine and skips here with the reason.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomllib
from infpop.engines.vllm import VLLMEngine
from infpop.manifest import ModelSpec, load_manifest
from infpop.plan import plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.trial import run_group

REPO = Path(__file__).resolve().parents[1]
PINNED = tomllib.loads((REPO / "containers" / "vllm-sm80.lock.toml").read_text())["packages"]["vllm"]
RECORDED = Path(__file__).parent / "data" / f"vllm_{PINNED}_signatures.json"
HAVE_VLLM = importlib.util.find_spec("vllm") is not None


@dataclass(frozen=True)
class Signatures:
    llm_init: set[str]
    llm_init_takes_kwargs: bool
    engine_args: set[str]
    generate: set[str]
    sampling: set[str]
    completion_output: set[str]
    request_output: set[str]


def _recorded() -> Signatures:
    data = json.loads(RECORDED.read_text())
    assert data["vllm_version"] == PINNED
    names = lambda key: {p["name"] for p in data[key] if p.get("kind") not in ("VAR_KEYWORD", "VAR_POSITIONAL")}  # noqa: E731
    return Signatures(
        llm_init=names("LLM.__init__"),
        llm_init_takes_kwargs=any(p.get("kind") == "VAR_KEYWORD" for p in data["LLM.__init__"]),
        engine_args=set(data["EngineArgs"]),
        generate=names("LLM.generate"),
        sampling=names("SamplingParams"),
        completion_output=names("CompletionOutput"),
        request_output=names("RequestOutput.__init__"),
    )


def _inspected() -> Signatures:
    import dataclasses

    import vllm
    from vllm.engine.arg_utils import EngineArgs
    from vllm.outputs import CompletionOutput, RequestOutput

    init = inspect.signature(vllm.LLM.__init__).parameters
    return Signatures(
        llm_init=set(init) - {"self", "kwargs"},
        llm_init_takes_kwargs=any(p.kind is p.VAR_KEYWORD for p in init.values()),
        engine_args={f.name for f in dataclasses.fields(EngineArgs)},
        generate=set(inspect.signature(vllm.LLM.generate).parameters),
        sampling=set(vllm.SamplingParams.__struct_fields__),
        completion_output={f.name for f in dataclasses.fields(CompletionOutput)},
        request_output=set(inspect.signature(RequestOutput.__init__).parameters),
    )


@pytest.fixture(scope="module")
def sigs() -> Signatures:
    if HAVE_VLLM:
        import vllm

        assert vllm.__version__ == PINNED, "the installed vllm is not the pinned one"
        return _inspected()
    return _recorded()


def _engine(**options: Any) -> VLLMEngine:
    model = ModelSpec(name="m", source="org/m", revision="abc123", trust_remote_code=True)
    return VLLMEngine(model, model_path="org/m", n_gpus=4, dtype="float16", options=options)


def test_llm_arguments_follow_the_study_and_exist_in_the_pinned_vllm(sigs: Signatures) -> None:
    kwargs = _engine(max_model_len=2048, enforce_eager=True).llm_kwargs()
    assert kwargs["tensor_parallel_size"] == 4 and kwargs["dtype"] == "float16"
    assert kwargs["trust_remote_code"] is True and kwargs["revision"] == "abc123"
    assert kwargs["seed"] == 0 and kwargs["gpu_memory_utilization"] == 0.9 and kwargs["max_model_len"] == 2048
    # Named in LLM.__init__, or (max_model_len) passed through its **kwargs to EngineArgs.
    assert sigs.llm_init_takes_kwargs
    unknown = {k for k in kwargs if k not in sigs.llm_init and k not in sigs.engine_args}
    assert not unknown, f"vllm {PINNED} LLM() does not take {unknown}"
    assert "max_model_len" not in sigs.llm_init and "max_model_len" in sigs.engine_args


def test_sampling_is_greedy_exact_length_and_exists_in_the_pinned_vllm(sigs: Signatures) -> None:
    kwargs = VLLMEngine.sampling_kwargs(5)
    assert kwargs == {"max_tokens": 5, "ignore_eos": True, "temperature": 0.0}
    assert set(kwargs) <= sigs.sampling
    assert "use_tqdm" in sigs.generate
    assert "token_ids" in sigs.completion_output and "prompt_token_ids" in sigs.request_output


def test_manifest_memory_share_overrides_the_default() -> None:
    assert _engine(gpu_memory_utilization=0.5).llm_kwargs()["gpu_memory_utilization"] == 0.5


def test_per_prompt_lengths_get_one_sampling_params_each(monkeypatch: pytest.MonkeyPatch, sigs: Signatures) -> None:
    fake = _FakeVLLM(sigs)
    _install(monkeypatch, fake)
    engine = _engine()
    engine.load()
    out = engine.generate(["a b", "c"], 2, [3, 1])
    assert out.per_prompt == (3, 1) and out.generated_tokens == 4 and out.prompt_tokens == 3
    engine.close()


def test_start_failures_that_mean_out_of_memory() -> None:
    assert VLLMEngine.is_oom(ValueError("No available memory for the cache blocks. Try increasing ..."))
    assert VLLMEngine.is_oom(ValueError("... which is larger than the available KV cache memory (1.2 GiB)"))
    assert VLLMEngine.is_oom(RuntimeError("CUDA out of memory. Tried to allocate"))
    assert not VLLMEngine.is_oom(ValueError("unknown architecture"))


# ---- a stand-in vllm module for what needs a GPU ----------------------------------------


class _FakeVLLM:
    """Builds a module named ``vllm`` whose LLM checks its arguments against the signatures."""

    def __init__(self, sigs: Signatures, *, oom_above: int | None = None, start_error: Exception | None = None):
        self.sigs, self.oom_above, self.start_error = sigs, oom_above, start_error
        self.created: list[dict[str, Any]] = []
        self.calls: list[int] = []
        self.shutdowns = self.cleanups = 0

    def modules(self) -> dict[str, types.ModuleType]:
        fake = self

        class SamplingParams:
            def __init__(self, **kwargs: Any):
                assert set(kwargs) <= fake.sigs.sampling, kwargs
                self.max_tokens = kwargs["max_tokens"]

        class LLM:
            def __init__(self, model: str, **kwargs: Any):
                assert set(kwargs) <= fake.sigs.llm_init | fake.sigs.engine_args, kwargs
                if fake.start_error:
                    raise fake.start_error
                fake.created.append({"model": model, **kwargs})
                self.llm_engine = types.SimpleNamespace(engine_core=types.SimpleNamespace(shutdown=fake._shutdown))

            def generate(self, prompts: list[str], params: Any, **kwargs: Any) -> list[Any]:
                assert set(kwargs) <= fake.sigs.generate
                fake.calls.append(len(prompts))
                each = params if isinstance(params, list) else [params] * len(prompts)
                if fake.oom_above is not None and len(prompts) > fake.oom_above:
                    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
                return [
                    types.SimpleNamespace(
                        prompt_token_ids=list(range(len(p.split()))),
                        outputs=[types.SimpleNamespace(token_ids=list(range(sp.max_tokens)))],
                    )
                    for p, sp in zip(prompts, each)
                ]

        vllm = types.ModuleType("vllm")
        vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
        parallel_state = types.ModuleType("vllm.distributed.parallel_state")
        parallel_state.cleanup_dist_env_and_memory = self._cleanup
        return {"vllm": vllm, "vllm.distributed": types.ModuleType("vllm.distributed"),
                "vllm.distributed.parallel_state": parallel_state}  # fmt: skip

    def _shutdown(self) -> None:
        self.shutdowns += 1

    def _cleanup(self) -> None:
        self.cleanups += 1


def _install(monkeypatch: pytest.MonkeyPatch, fake: _FakeVLLM) -> None:
    for name, module in fake.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def _group(write_manifest, **fields):
    path = write_manifest(engines=["vllm"], dtype="float16", **fields)
    return plan(load_manifest(path), "local", EMBEDDED_DEFAULT.partition("local"))[0]


def test_trials_count_tokens_from_token_ids_and_tear_the_engine_down(
    monkeypatch: pytest.MonkeyPatch, sigs: Signatures, write_manifest
) -> None:
    fake = _FakeVLLM(sigs)
    _install(monkeypatch, fake)
    group = _group(write_manifest, batch_sizes=[1, 4], max_new_tokens=[3])
    results = run_group(group)
    assert [r.status for r in results] == ["ok", "ok"]
    assert all(r.generated_tokens == 12 * 3 and r.n_prompts == 12 for r in results), "3 tokens x 12 prompts"
    assert fake.calls == [1] * (1 + 12) + [4] * (1 + 3), "a warm-up batch, then b prompts per generate call"
    assert fake.created[0]["tensor_parallel_size"] == 1 and fake.created[0]["dtype"] == "float16"
    assert fake.shutdowns == 1 and fake.cleanups == 1, "engine torn down after the group"


def test_oom_in_a_batch_and_at_start_are_recorded_as_results(
    monkeypatch: pytest.MonkeyPatch, sigs: Signatures, write_manifest
) -> None:
    fake = _FakeVLLM(sigs, oom_above=2)
    _install(monkeypatch, fake)
    results = run_group(_group(write_manifest, batch_sizes=[1, 4, 8], max_new_tokens=[3]))
    assert [r.status for r in results] == ["ok", "oom", "skipped_oom"]
    assert "out of memory" in results[1].error

    start = _FakeVLLM(sigs, start_error=ValueError("No available memory for the cache blocks."))
    _install(monkeypatch, start)
    failed = run_group(_group(write_manifest, batch_sizes=[1], max_new_tokens=[5], study="s2"))
    assert [r.status for r in failed] == ["oom"] and "cache blocks" in failed[0].error


@pytest.mark.vllm
@pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is CUDA-only and cannot be installed on this machine")
def test_real_vllm_runs_a_trial(write_manifest) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    results = run_group(_group(write_manifest, batch_sizes=[1, 4], max_new_tokens=[3]))
    assert [r.status for r in results] == ["ok", "ok"]
    assert all(r.generated_tokens == r.n_prompts * 3 for r in results)
