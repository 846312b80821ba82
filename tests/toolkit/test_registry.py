"""A third-party engine, installed as a real distribution with entry points, is validated,
planned and modelled from the capabilities it declares, with no edit to any infpop module; a
third-party container runtime is registered the same way.

The distribution is a ``*.dist-info`` folder on ``sys.path`` (what ``pip install`` writes), so
``importlib.metadata`` finds its ``infpop.engines`` and ``infpop.runtimes`` entry points as it
would a wheel's (nothing of ``importlib.metadata`` is patched). Its engine class is never
written: validating and planning import only its declaration module.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from infpop.errors import InputError
from infpop.manifest import load_manifest
from infpop.physics import GPUS, Architecture, TrialShape, Workload, offloaded_bytes, peak_memory, roofline
from infpop.plan import plan
from infpop.profile import PartitionProfile
from infpop.runtimes import get_runtime, known_runtimes
from minimal_manifest import write_manifest_file

A100 = PartitionProfile(executor="slurm", hardware="a100", slurm_partition="gpu-a100", gpu_type="a100", gpus_per_node=8)
DECLARATIONS = "thirdparty_infpop_engines"
ONLINE = {"kind": "online", "request_rates": [1.0], "duration_s": 60}


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Install a distribution declaring the engines ``fastserve`` (online, memory-sized, a prefix
    cache, continuous batching on one GPU at a time, its options checked) and ``batchonly`` (the
    defaults: offline only), the entry points ``broken`` (naming something else than a
    declaration) and ``missing`` (naming nothing), and a container runtime ``portable``."""
    site = tmp_path / "site"
    (site / "thirdparty_engines-1.0.dist-info").mkdir(parents=True)
    (site / "thirdparty_engines-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: thirdparty-engines\nVersion: 1.0\n"
    )
    (site / "thirdparty_engines-1.0.dist-info" / "entry_points.txt").write_text(
        f"[infpop.engines]\nfastserve = {DECLARATIONS}:FASTSERVE\nbatchonly = {DECLARATIONS}:BATCHONLY\n"
        f"broken = {DECLARATIONS}:options\nmissing = {DECLARATIONS}:NOTHING\n"
        f"[infpop.runtimes]\nportable = {DECLARATIONS}:PORTABLE\n"
    )
    (site / f"{DECLARATIONS}.py").write_text(
        textwrap.dedent(
            """
            from infpop.plugins import Capabilities, EngineCapabilities, Plugin

            SERVES = frozenset({"offline", "online"})
            FASTSERVE = Plugin(
                "thirdparty_engine_impl:FastServe",
                EngineCapabilities(SERVES, memory_sized=True, prefix_cache=True, continuous_batching=True),
                config=f"{__name__}:options",
            )
            BATCHONLY = Plugin("thirdparty_engine_impl:BatchOnly", EngineCapabilities())
            PORTABLE = Plugin(f"{__name__}:RUNTIME", Capabilities())
            RUNTIME = object()


            def options(image):
                return {"lanes": {"type": "int"}}, "fastserve 1.0"
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop(DECLARATIONS, None)


def _manifest(tmp_path: Path, **fields: object) -> Path:
    return write_manifest_file(tmp_path / "m.yaml", workload={"path": "p.jsonl"}, **fields)


def test_a_declared_engine_is_planned_with_its_capabilities(installed: None, tmp_path: Path) -> None:
    path = _manifest(
        tmp_path,
        engines=["fastserve", "hf"],
        batch_sizes=[2, 8],
        scenario=ONLINE,
        kv_cache_bytes=[1 << 28],
        prefix_caching=[False, True],
        engine_options={"fastserve": {"lanes": 4}},
    )
    trials = [t for g in plan(load_manifest(path), "a100", A100) for t in g.trials]
    fast = [t for t in trials if t.engine == "fastserve"]
    assert {(t.batch_size, t.prefix_caching) for t in fast} == {(2, False), (2, True), (8, False), (8, True)}
    for t in fast:
        assert t.engine_options == {
            "lanes": 4,
            "kv_cache_memory_bytes": 1 << 28,
            "max_num_seqs": t.batch_size,
            "enable_prefix_caching": t.prefix_caching,
        }
    hf = [t for t in trials if t.engine == "hf"]
    assert hf and all(t.engine_options == {} and t.prefix_caching is None for t in hf)
    assert "thirdparty_engine_impl" not in sys.modules, "planning imported the engine itself"

    bad = _manifest(tmp_path, engines=["fastserve"], engine_options={"fastserve": {"lanes": "four"}})
    with pytest.raises(InputError, match=r"engine_options\.fastserve\.lanes: 'four' is not of type int that fastserve"):
        plan(load_manifest(bad), "a100", A100)


def test_the_physics_models_a_declared_engine_by_its_capabilities(installed: None) -> None:
    arch = Architecture(
        layers=32, hidden_size=4096, heads=32, kv_heads=32, head_dim=128, intermediate_size=11008,
        vocab_size=32000, gated_mlp=True, tied_embeddings=False, source="a 7B Llama shape",
    )  # fmt: skip
    work = Workload((100, 300, 200, 50), 20)

    def shape(engine: str) -> TrialShape:
        return TrialShape(arch, engine, GPUS["a100-40gb"], 2, 4, work)

    assert peak_memory(shape("fastserve")) == peak_memory(shape("vllm")) != peak_memory(shape("hf"))
    # On 2 GPUs: one works at a time (as hf's), on packed prompts (as vllm's).
    assert roofline(shape("hf")) < roofline(shape("fastserve")) < roofline(shape("vllm"))
    assert offloaded_bytes(shape("batchonly"), 0.01) == 0, "an engine that declares no offloading offloads nothing"
    assert offloaded_bytes(shape("hf"), 0.01) > 0


def test_an_engine_without_online_is_refused_for_an_online_scenario(installed: None, tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_manifest(_manifest(tmp_path, engines=["hf", "batchonly"], scenario=ONLINE))
    assert "scenario: engines: 'batchonly' does not serve the online scenario" in str(info.value)
    assert "declares scenarios: offline" in str(info.value)
    assert load_manifest(_manifest(tmp_path, engines=["hf", "batchonly"])).manifest.engines == ["hf", "batchonly"]


def test_an_engine_without_a_deterministic_mode_is_refused_one(installed: None, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"deterministic: true: engine 'batchonly' has no deterministic mode"):
        load_manifest(_manifest(tmp_path, engines=["hf", "batchonly"], deterministic=[False, True]))
    groups = plan(load_manifest(_manifest(tmp_path, engines=["hf", "batchonly"])), "a100", A100)
    assert {(g.first.engine, g.first.deterministic) for g in groups} == {("hf", False), ("batchonly", None)}


def test_a_declaration_of_the_wrong_kind_or_none_is_named(installed: None, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"engines: entry point broken = .* not an infpop.plugins.Plugin"):
        load_manifest(_manifest(tmp_path, engines=["broken"]))
    with pytest.raises(InputError, match=r"engines: entry point missing = .* cannot be loaded: .*NOTHING"):
        load_manifest(_manifest(tmp_path, engines=["missing"]))


def test_a_container_runtime_is_an_entry_of_the_same_shape(installed: None) -> None:
    part = PartitionProfile(executor="local", hardware="auto", runtime="portable", cpus_per_gpu=1, array_parallelism=1)
    assert part.runtime == "portable" and "portable" in known_runtimes()
    assert get_runtime("portable") is sys.modules[DECLARATIONS].RUNTIME
