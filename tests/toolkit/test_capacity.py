"""Serving capacity under a latency SLO: the search's logic on a probe that is a function of the
rate (its edge cases and a noisy one), the manifest's fields, and a real search on the tiny model
on CPU with HF (vLLM's is in tests/toolkit/test_vllm_engine.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from browser import chromium, render
from capacity_checks import CALIBRATION, assert_bracketed, calibrated_fields
from infpop.capacity import Probe, probe_record, search
from infpop.errors import InputError
from infpop.manifest import CapacitySearch, Slo, load_manifest, parse_manifest
from infpop.plan import plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.scenarios.metrics import OnlineMetrics, Percentiles
from infpop.trial import run_group
from minimal_manifest import manifest_text

LOCAL = EMBEDDED_DEFAULT.partitions["local"]
SLO = Slo(e2e_p99_s=1.0)


def _metrics(latency: float | None, completed: int = 10, ttft: bool = True) -> OnlineMetrics:
    """Online measures whose p99 end-to-end latency is ``latency`` (none without requests)."""
    p = None if latency is None else Percentiles(p50=latency / 2, p90=latency, p99=latency)
    return OnlineMetrics(
        n_requests=completed,
        completed=completed,
        request_throughput=completed,
        latency_s=p,
        ttft_s=p if ttft else None,
        latency_per_token_s=p,
        goodput=None,
        requests=[],
    )


def _probe(latency_of, tried: list[float]):
    """A probe whose p99 end-to-end latency is ``latency_of(rate)``."""

    def probe(rate: float) -> Probe:
        tried.append(rate)
        return probe_record(rate, "ok", _metrics(latency_of(rate)), 3 * rate, True, None, SLO)

    return probe


def test_bisection_brackets_the_capacity_within_the_tolerance() -> None:
    spec = CapacitySearch(min_rate=1, max_rate=33, tolerance=1)
    tried: list[float] = []
    found = search(spec, SLO, _probe(lambda rate: rate / 10, tried))  # meets up to 10/s
    assert found.stopped == "converged"
    assert tried[:2] == [1, 33] and tried[2] == 17, "the ends first, then the middle"
    assert len(tried) == 2 + 5, "log2(32 / 1) halvings"
    assert_bracketed(found, 1)
    assert 9 <= found.capacity_rps <= 10 < found.violated_rps


def test_no_bracket_says_which_end_and_stops() -> None:
    spec = CapacitySearch(min_rate=1, max_rate=8, tolerance=0.5)
    tried: list[float] = []
    held = search(spec, SLO, _probe(lambda rate: 0.1, tried))
    assert held.stopped == "met_at_max_rate" and tried == [1, 8] and "raise it" in held.why
    assert held.capacity_rps == 8 and held.violated_rps is None, "a lower bound, said as such"
    tried.clear()
    failed = search(spec, SLO, _probe(lambda rate: 5.0, tried))
    assert failed.stopped == "violated_at_min_rate" and tried == [1] and "lower it" in failed.why
    assert failed.capacity_rps is None and failed.capacity_tokens_s is None and failed.violated_rps == 1


def test_a_noisy_non_monotone_probe_still_gives_a_bracket() -> None:
    """Latency that dips and rises at random around the threshold: the bracket's ends are still
    a rate that met and one that failed, at most one tolerance apart. Where the SLO fails in a
    band and holds again above it, the search keeps one crossing, below the band."""
    rng = random.Random(4)
    spec = CapacitySearch(min_rate=1, max_rate=65, tolerance=2)
    found = search(spec, SLO, _probe(lambda rate: rate / 20 * rng.uniform(0.5, 1.5), []))
    assert found.stopped == "converged"
    assert_bracketed(found, 2)
    assert all(m.rate < v.rate for m in found.probes if m.met for v in found.probes if not v.met)
    found = search(spec, SLO, _probe(lambda rate: 2.0 if 16 <= rate < 20 or rate > 30 else 0.5, []))
    assert_bracketed(found, 2)
    assert found.capacity_rps < 16 <= found.violated_rps


def test_max_probes_and_a_failed_probe_stop_the_search() -> None:
    spec = CapacitySearch(min_rate=1, max_rate=1025, tolerance=1, max_probes=4)
    found = search(spec, SLO, _probe(lambda rate: rate / 100, []))
    assert found.stopped == "max_probes" and len(found.probes) == 4
    assert (found.capacity_rps, found.violated_rps) == (1, 257) and "wider than the tolerance" in found.why

    def failing(rate: float) -> Probe:
        return probe_record(
            rate, "oom" if rate > 1 else "ok", None if rate > 1 else _metrics(0.1), None, None, None, SLO
        )

    failed = search(CapacitySearch(min_rate=1, max_rate=9, tolerance=1), SLO, failing)
    assert failed.stopped == "probe_failed" and failed.probes[-1].violations == ["status oom"]
    assert failed.capacity_rps == 1


def test_an_unmeasured_slo_term_fails_the_rate() -> None:
    """HF's dynamic batches have a first-token time; an engine without one cannot meet a TTFT SLO."""
    record = probe_record(1.0, "ok", _metrics(0.1, ttft=False), 1.0, True, None, Slo(ttft_p99_s=1.0, e2e_p99_s=1.0))
    assert not record.met and record.violations == ["ttft p99 not measured"]


def _scenario(**fields: object) -> dict:
    return {"kind": "online", "duration_s": 5, "min_duration_s": 0, **fields}


@pytest.mark.parametrize(
    "scenario,message",
    [
        (_scenario(), "give request_rates .* or capacity"),
        (_scenario(capacity={"min_rate": 1, "max_rate": 4, "tolerance": 1}), "capacity and slo go together"),
        (
            _scenario(slo={"e2e_p99_s": 1}, capacity={"min_rate": 4, "max_rate": 2, "tolerance": 1}),
            "max_rate 2 is not above min_rate 4",
        ),
        (
            _scenario(slo={}, capacity={"min_rate": 1, "max_rate": 2, "tolerance": 0.5}),
            "at least one of ttft_p99_s",
        ),
        (
            _scenario(slo={"e2e_p99_s": 1}, capacity={"min_rate": 1, "max_rate": 2, "tolerance": 3}),
            "nothing to search",
        ),
        (
            _scenario(slo={"e2e_p99_s": 1}, capacity={"min_rate": 1, "max_rate": float("inf"), "tolerance": 1}),
            "max_rate.*finite number",
        ),
        (
            _scenario(slo={"ttft_p99_s": float("nan")}, capacity={"min_rate": 1, "max_rate": 2, "tolerance": 0.5}),
            "ttft_p99_s.*finite",
        ),
    ],
)
def test_malformed_capacity_scenarios_name_the_field(scenario: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        parse_manifest(manifest_text(scenario=scenario), "m.yaml")
    assert "scenario" in str(err.value)


def test_a_real_capacity_search_on_cpu(write_manifest, tmp_path: Path) -> None:
    """The tiny model served by HF on CPU, the search set from a run on this machine
    (:func:`capacity_checks.calibrated_fields`). The capacity is one trial per configuration,
    its probes in one loaded engine; the table, configs.csv and the report show it."""
    tokens, batch = 3, 4
    common = {"batch_sizes": [batch], "max_new_tokens": [tokens], "engine_options": {"hf": {"cpu_threads": 1}}}
    calibrate = write_manifest("calibrate.yaml", scenario=CALIBRATION, **common)
    (calibration,) = [r for g in plan(load_manifest(calibrate), "local", LOCAL) for r in run_group(g)]
    fields = calibrated_fields(calibration, batch)
    scenario = fields["scenario"]
    slo, capacity = scenario["slo"], scenario["capacity"]
    groups = plan(load_manifest(write_manifest("capacity.yaml", **fields, **common)), "local", LOCAL)
    assert [len(g.trials) for g in groups] == [1], "one trial per configuration"
    (result,) = run_group(groups[0])
    found = result.capacity
    print(found.why, [(p.rate, p.met, p.latency_s.p99 if p.latency_s else None) for p in found.probes])
    assert result.status == "ok" and found.stopped == "converged", found.why
    assert_bracketed(found, capacity["tolerance"])
    assert result.trial.request_rate is None and result.trial.trial_id == "t/cpu/hf/tiny/g1_b4_t3_r0_capacity"
    assert result.online.latency_s.p99 <= slo["e2e_p99_s"], "the record's own measures are the capacity's probe"
    assert result.throughput == found.capacity_tokens_s

    from infpop.cli import main
    from infpop_analysis.report import capacity as section
    from infpop_analysis.report.sources import Sources
    from infpop_analysis.summaries import config_summaries
    from infpop_analysis.table import read_table

    table = tmp_path / "out" / "table.parquet"
    assert main(["aggregate", str(tmp_path / "runs"), "-o", str(table)]) == 0
    df = read_table(table)
    row = df[df["capacity_stopped"].notna()].iloc[0]
    assert row["capacity_rps"] == found.capacity_rps and row["capacity_rps_per_gpu"] == found.capacity_rps
    assert row["capacity_stopped"] == "converged"
    configs = config_summaries(df)
    assert configs["capacity_rps_per_gpu"].dropna().tolist() == [found.capacity_rps]
    page = section.render(df, Sources.beside(table), tokens)
    assert "Serves most per GPU" in page and f"{found.capacity_rps:.3g} requests/s per GPU" in page
    if chromium() is None:
        pytest.skip("chromium is not installed (Debian's `chromium` package; .ci/run installs it)")
    assert main(["report", str(table), "-o", str(tmp_path / "out")]) == 0
    figures = "[...document.querySelectorAll('#capacity .js-plotly-plot')]"
    seen = render(
        tmp_path / "out" / "report.html",
        ready=f"{figures}.length == 2 && {figures}.every(p => p.querySelector('.scatterlayer .trace'))",
        expressions={
            "probes": "[...document.querySelectorAll('#capacity-0 .scatterlayer .trace')]"
            ".map(t => t.querySelectorAll('.points path').length)",
            "lines": "document.getElementById('capacity-0').layout.shapes.length",
            "marked": "[...document.querySelectorAll('#capacity-0 .annotation-text')].map(a => a.textContent)",
        },
        screenshots={},
    )
    assert seen.values["probes"] == [len(found.probes)] * 3, "ttft, tpot and e2e p99 at every rate tried"
    assert seen.values["lines"] == 2, "the SLO's e2e target and the capacity"
    assert f"capacity {found.capacity_rps:.3g}/s" in seen.values["marked"] and not seen.exceptions


def test_a_probe_without_requests_fails_with_the_reason() -> None:
    record = probe_record(0.1, "ok", _metrics(None, completed=0), None, True, None, SLO)
    assert not record.met and record.violations == ["no request completed: raise the rate or duration_s"]
