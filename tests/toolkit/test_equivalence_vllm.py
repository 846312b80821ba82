"""Output fingerprints from the real vLLM (its CPU build), offline and online, compared with HF's."""

from __future__ import annotations

from pathlib import Path

from infpop.manifest import load_manifest
from infpop.plan import plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.trial import run_group
from infpop_analysis.equivalence import equivalence
from infpop_analysis.table import aggregate

MIB = 1 << 20
TOKENS = 8


def test_vllm_fingerprints_offline_and_online_and_the_engines_compared(
    write_manifest, humaneval_path: Path, tmp_path: Path
) -> None:
    """8 prompts, 8 new tokens, float32: HF at batch 1 and 4, vLLM offline at batch 1 and 4 and
    online (continuous batching, ids from the streamed deltas)."""
    common = {"batch_sizes": [1, 4], "max_new_tokens": [TOKENS], "workload": {"path": str(humaneval_path), "limit": 8}}
    vllm = {"engines": ["vllm"], "engine_options": {"vllm": {"max_model_len": 512, "enforce_eager": True}}}
    vllm["kv_cache_bytes"] = [64 * MIB]
    online = {"kind": "online", "request_rates": [40], "duration_s": 1.0, "seed": 1, "min_duration_s": 0}
    manifests = [
        write_manifest("hf.yaml", **common),
        write_manifest("vllm.yaml", **common, **vllm),
        write_manifest("online.yaml", **common | {"batch_sizes": [4]}, **vllm, scenario=online),
    ]
    results = []
    for manifest in manifests:
        for group in plan(load_manifest(manifest), "local", EMBEDDED_DEFAULT.partitions["local"]):
            results += run_group(group)
    assert [r.status for r in results] == ["ok"] * 5, [r.error for r in results]
    for r in results:
        assert len(r.outputs) == 8
        served = {t.prompt_index for t in r.online.requests} if r.online else set(range(8))
        assert {i for i, f in enumerate(r.outputs) if f is not None} == served
        assert all(len(f.split(":")[1].split(",")) == TOKENS for f in r.outputs if f is not None)
    table, corrupt = aggregate(tmp_path / "runs")
    assert not corrupt
    eq = equivalence(table)
    hf1, v1 = (
        next(r for r in results if (r.trial.engine, r.trial.batch_size, r.online) == (engine, 1, None))
        for engine in ("hf", "vllm")
    )
    assert set(eq["reference_trial"]) == {hf1.trial.trial_id, v1.trial.trial_id}
    across = eq[eq["against"] == "first engine"]
    assert len(across) == 1 and across["prompts"].iloc[0] == 8
    assert across["identical"].iloc[0] == sum(a == b for a, b in zip(hf1.outputs, v1.outputs)) / 8
    print(eq[["engine", "batch_size", "scenario", "against", "prompts", "identical", "first_divergence_mean"]])
