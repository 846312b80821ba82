"""The online scenario on the tiny model on CPU: Poisson arrivals replayed in real time,
latency from arrival, percentiles that rise with the request rate, validity, and the tidy
table's scenario columns. Also the planner's new axes (workloads, rates, GPU memory share),
which must leave the study's own trial ids unchanged.

The HF engine serves online trials in dynamic batches (``Engine.generate_timed``), which these
tests run; vLLM's continuous batching through its async engine is in tests/toolkit/test_vllm_engine.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from infpop.errors import InputError
from infpop.manifest import GoodputTargets, OnlineScenario, load_manifest, parse_manifest
from infpop.plan import plan
from infpop.profile import EMBEDDED_DEFAULT, PartitionProfile
from infpop.scenarios.metrics import RequestTiming, percentile, summarise, validity
from infpop.scenarios.online import poisson_arrivals
from infpop.trial import run_group
from minimal_manifest import manifest_text, write_manifest_file

LOCAL = EMBEDDED_DEFAULT.partitions["local"]
A100 = PartitionProfile(executor="slurm", hardware="a100", slurm_partition="gpu", gpu_type="a100", gpus_per_node=8)
BATCH, TOKENS = 4, 3


def _run(manifest: Path) -> list:
    return [r for g in plan(load_manifest(manifest), "local", LOCAL) for r in run_group(g)]


def test_poisson_arrivals_are_seeded_and_have_the_rate() -> None:
    a = poisson_arrivals(50.0, 200.0, seed=7)
    assert a == poisson_arrivals(50.0, 200.0, seed=7)
    assert a != poisson_arrivals(50.0, 200.0, seed=8)
    assert len(a) / 200.0 == pytest.approx(50.0, rel=0.05)
    assert all(0 < x < 200.0 for x in a) and a == sorted(a)
    # one stream of draws, scaled by the rate: trials at different rates see the same pattern
    assert poisson_arrivals(100.0, 100.0, seed=7)[:10] == pytest.approx([x / 2 for x in a[:10]])


def test_latency_percentiles_rise_with_the_request_rate(write_manifest, humaneval_path: Path, tmp_path: Path) -> None:
    # The tiny model's service rate depends on the machine and its neighbours, so the rates are
    # set from an offline run on this machine: a fifth of capacity, twice it and four times it.
    # Above capacity the queue grows for the whole window, so latency grows with the overload.
    threads = {"hf": {"cpu_threads": 1}}
    workload = {"path": str(humaneval_path), "limit": 40}
    common = {"batch_sizes": [BATCH], "max_new_tokens": [TOKENS], "engine_options": threads, "workload": workload}
    (offline,) = _run(write_manifest(**common))
    capacity = offline.throughput / TOKENS  # requests per second with full batches
    rates = [round(capacity / 5, 1), round(2 * capacity), round(4 * capacity)]
    scenario = {
        "kind": "online",
        "request_rates": rates,
        "duration_s": 2.0,
        "seed": 3,
        "min_duration_s": 1.0,
        "min_requests": 3,
        "goodput": {"latency_s": 0.5},
    }
    manifest = write_manifest("online.yaml", scenario=scenario, **common)
    results = sorted(_run(manifest), key=lambda r: r.trial.request_rate)

    assert [r.trial.request_rate for r in results] == rates
    for r in results:
        assert r.status == "ok" and r.valid, (r.error, r.invalid_reason)
        timings = r.online.requests
        assert [t.arrival_s for t in timings] == poisson_arrivals(r.trial.request_rate, 2.0, 3)  # reproducible load
        assert r.online.completed == r.online.n_requests == len(timings)
        assert all(t.output_tokens == TOKENS for t in timings) and r.generated_tokens == TOKENS * len(timings)
        assert all(t.arrival_s <= t.start_s < t.first_token_s <= t.finish_s for t in timings)
        print(
            f"rate {r.trial.request_rate:g}/s: {len(timings)} requests, latency {r.online.latency_s}, "
            f"ttft p50 {r.online.ttft_s.p50:.4f}, goodput {r.online.goodput:.1f}/s"
        )
    for measure in ("latency_s", "ttft_s", "latency_per_token_s"):
        for p in ("p50", "p90", "p99"):
            values = [getattr(getattr(r.online, measure), p) for r in results]
            assert values == sorted(values) and len(set(values)) == 3, (measure, p, values)

    from infpop_analysis.table import aggregate

    df, corrupt = aggregate(tmp_path / "runs")
    assert not corrupt
    assert list(df["scenario"]) == ["offline", "online", "online", "online"]
    assert df["trial_id"][0] == "t/cpu/hf/tiny/g1_b4_t3_r0"  # the study's id, unchanged
    assert list(df["trial_id"][1:]) == [f"t/cpu/hf/tiny/g1_b4_t3_r0_rate{r:g}" for r in rates]
    online = df[df["scenario"] == "online"]
    assert list(online["request_rate"]) == rates
    assert online["latency_p99_s"].is_monotonic_increasing and online["valid"].all()
    assert online["goodput"].notna().all() and online["n_requests"].gt(0).all()

    from infpop_analysis.workload_analysis import latency_vs_rate, throughput_by_workload, write_workload_report

    curves = latency_vs_rate(df)
    assert list(curves["request_rate"]) == rates and curves["valid"].all()
    best = throughput_by_workload(df)
    assert list(best["scenario"]) == ["offline", "online"] and best["humaneval-infilling"].gt(0).all()
    assert {p.name for p in write_workload_report(df, tmp_path / "report")} == {
        "latency_vs_rate.csv",
        "throughput_by_workload.csv",
        "latency_vs_rate_cpu_hf_tiny_g1_b4_t3_fixed.png",
    }


def test_a_run_below_the_minimum_is_marked_invalid(write_manifest) -> None:
    scenario = {"kind": "online", "request_rates": [20], "duration_s": 0.3, "min_duration_s": 0.1, "min_requests": 1000}
    (r,) = _run(write_manifest(batch_sizes=[2], max_new_tokens=[2], scenario=scenario))
    assert r.status == "ok" and r.valid is False
    assert "below min_requests 1000" in r.invalid_reason


def test_validity_and_percentiles_are_pure() -> None:
    rules = OnlineScenario(kind="online", request_rates=[1], duration_s=10, min_duration_s=5, min_requests=3)
    assert validity(rules, "ok", 6.0, 3) == (True, None)
    assert validity(rules, "ok", 4.0, 3)[1] == "ran 4 s, below min_duration_s 5"
    assert validity(rules, "timeout", 9.0, 30)[0] is False
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5], 99) == 5
    reqs = [
        RequestTiming(prompt_index=0, arrival_s=0, start_s=0, first_token_s=None, finish_s=f, output_tokens=2)
        for f in (0.1, 0.2, 0.9)
    ]
    m = summarise(reqs, 3, wall_s=1.0, targets=rules.goodput)
    assert m.ttft_s is None and m.goodput is None and m.latency_per_token_s.p50 == pytest.approx(0.1)


def test_goodput_counts_tpot_as_vllm_bench_serve_does() -> None:
    """TPOT = (end - first token) / (tokens - 1); a one-token request's TPOT counts as 0, as in
    ``vllm bench serve --goodput tpot:..``; goodput is good requests over the run's wall time."""
    timing = dict(prompt_index=0, arrival_s=0.0, start_s=0.0, first_token_s=0.1)
    reqs = [
        RequestTiming(**timing, finish_s=0.1 + 0.05 * 4, output_tokens=5),  # TPOT 0.05
        RequestTiming(**timing, finish_s=0.1 + 0.20 * 4, output_tokens=5),  # TPOT 0.20
        RequestTiming(**timing, finish_s=0.1, output_tokens=1),  # TPOT 0 by that rule
    ]
    m = summarise(reqs, 3, wall_s=2.0, targets=GoodputTargets(tpot_s=0.1))
    assert m.goodput == pytest.approx(2 / 2.0)
    no_first = [r.model_copy(update={"first_token_s": None}) for r in reqs]
    assert summarise(no_first, 3, wall_s=2.0, targets=GoodputTargets(tpot_s=0.1)).goodput is None


def test_a_client_that_fell_behind_makes_the_run_invalid() -> None:
    """At 10 requests/s the mean gap is 0.1 s: a send lateness p99 above 0.01 s is too late."""
    rules = OnlineScenario(kind="online", request_rates=[10], duration_s=10, min_duration_s=0, min_requests=0)
    reqs = [RequestTiming(prompt_index=0, arrival_s=0, start_s=0, first_token_s=0.1, finish_s=0.2, output_tokens=2)]
    on_time = summarise(reqs, 1, wall_s=1.0, targets=None, lateness=[0.001] * 99 + [0.005])
    late = summarise(reqs, 1, wall_s=1.0, targets=None, lateness=[0.001] * 90 + [0.05] * 10)
    assert on_time.send_lateness_s.p99 == pytest.approx(0.00104)  # numpy's linear rule
    assert validity(rules, "ok", 1.0, 1, on_time, 10) == (True, None)
    valid, why = validity(rules, "ok", 1.0, 1, late, 10)
    assert not valid and "client fell behind" in why and "0.05" in why


@pytest.mark.parametrize(
    "scenario,message",
    [
        ({"kind": "online", "request_rates": [], "duration_s": 5}, "request_rates"),
        ({"kind": "online", "request_rates": [1, -2], "duration_s": 5}, "must be positive"),
        ({"kind": "online", "request_rates": [1], "duration_s": 5}, "duration_s: is below min_duration_s 60"),
        ({"kind": "online", "request_rates": [1], "duration_s": 5, "min_duration_s": 0, "goodput": {}}, "at least one"),
        ({"kind": "streaming"}, "scenario"),
    ],
)
def test_malformed_scenarios_name_the_field(scenario: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_manifest(manifest_text(workload={"path": "p"}, scenario=scenario), "m.yaml")


def _axes_manifest(tmp_path: Path, **fields) -> Path:
    axes = {
        "engines": ["hf", "vllm"],
        "batch_sizes": [1, 8],
        "max_new_tokens": [64],
        "output_length": "reference",
        "workloads": [{"path": "he.jsonl"}, {"name": "alpaca", "path": "alpaca.json"}],
        "scenario": {"kind": "online", "request_rates": [0.5, 2], "duration_s": 60},
        "gpu_memory_utilization": [0.9, 0.3],
    }
    return write_manifest_file(tmp_path / "m.yaml", **(axes | fields))


def test_workload_rate_and_memory_axes_expand_with_readable_unique_ids(tmp_path: Path) -> None:
    groups = plan(load_manifest(_axes_manifest(tmp_path)), "a100", A100)
    trials = [t for g in groups for t in g.trials]
    # hf: 2 workloads x 2 batches x 2 rates; vllm: the same x 2 memory shares
    assert len(trials) == 8 + 16 and len({t.trial_id for t in trials}) == 24
    ids = {t.trial_id for t in trials}
    assert "s/a100/hf/m/g1_b1_t64_r0_ref_rate0.5" in ids
    # vLLM serves online continuously: the batch size is its concurrency cap, set at load
    assert "s/a100/vllm/m/g1_b8_t64_r0_w-alpaca_mem0.3_seqs8_ref_rate2" in ids
    # a job per workload (hf), and per workload, memory share and concurrency cap (vllm)
    assert len({g.group_id for g in groups}) == len(groups) == 2 + 8
    assert "s/a100/vllm/m/g1_w-alpaca_mem0.9_seqs1" in {g.group_id for g in groups}
    for g in groups:
        assert g.workload_path == str(tmp_path / ("alpaca.json" if g.first.workload.name == "alpaca" else "he.jsonl"))
        assert {t.engine_options.get("gpu_memory_utilization") for t in g.trials} == {g.first.gpu_memory_utilization}
        assert {t.engine_options.get("max_num_seqs") for t in g.trials} == {g.first.max_num_seqs}
        assert g.first.max_num_seqs == (g.first.batch_size if g.first.engine == "vllm" else None)


def test_kv_cache_bytes_is_the_memory_axis_on_cpu(tmp_path: Path) -> None:
    sizes = {"gpu_memory_utilization": None, "kv_cache_bytes": [1 << 30, 64 << 20], "scenario": {"kind": "offline"}}
    groups = plan(load_manifest(_axes_manifest(tmp_path, **sizes)), "local", LOCAL)
    vllm = [g for g in groups if g.first.engine == "vllm"]
    assert [g.group_id for g in vllm if g.first.workload.name == "alpaca"] == [
        "s/cpu/vllm/m/g1_w-alpaca_kv64MiB",
        "s/cpu/vllm/m/g1_w-alpaca_kv1024MiB",
    ]
    assert all(t.engine_options["kv_cache_memory_bytes"] == g.first.kv_cache_bytes for g in vllm for t in g.trials)
    with pytest.raises(InputError, match="'vllm' on CPU .* needs an explicit KV-cache size"):
        plan(load_manifest(_axes_manifest(tmp_path, gpu_memory_utilization=None)), "local", LOCAL)


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"engines": ["hf"]}, "gpu_memory_utilization: applies to \\['vllm'\\]"),
        ({"gpu_memory_utilization": [0, 0.5]}, "fractions in \\(0, 1\\]"),
        ({"engine_options": {"vllm": {"gpu_memory_utilization": 0.5}}}, "engine_options.vllm sets it too"),
        ({"workloads": [{"path": "a"}, {"path": "b"}]}, "'humaneval-infilling' repeats"),
        ({"workload": {"path": "a"}}, "not both"),
        ({"workloads": None}, "give 'workload' \\(one\\) or 'workloads'"),
        ({"output_length": "longest"}, "output_length"),
        ({"kv_cache_bytes": [1 << 20]}, "kv_cache_bytes: gpu_memory_utilization is swept too"),
        ({"kv_cache_bytes": [0], "gpu_memory_utilization": None}, "kv_cache_bytes: must be positive"),
        ({"engines": ["hf"], "gpu_memory_utilization": None, "prefix_caching": [True]}, "prefix_caching: applies to"),
        ({"prefix_caching": [True, True]}, "prefix_caching: has duplicates"),
        (
            {"engine_options": {"vllm": {"enable_prefix_caching": True}}},
            "prefix_caching: engine_options.vllm sets enable_prefix_caching too",
        ),
    ],
)
def test_malformed_axes_name_the_field(tmp_path: Path, fields: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_manifest(_axes_manifest(tmp_path, **fields))
