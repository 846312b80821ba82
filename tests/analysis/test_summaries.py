"""Repetitions in the analysis: configs.csv with Student-t intervals, the CV flag, and the
permutation tests that say whether a difference exceeds the noise. Tables are generated from
known distributions, so what the numbers should be is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from infpop.cli import main
from infpop_analysis.replicates import repetition_tests
from infpop_analysis.stats import TEST_COLUMNS
from infpop_analysis.summaries import CI_LEVEL, CI_METHOD, config_summaries
from infpop_analysis.table import conform, write_table

CONTRACT = ["n", "mean", "median", "std", "cv", "ci_low", "ci_high", "ci_level", "ci_method"]


def _table(throughputs: dict[tuple, np.ndarray], **extra) -> pd.DataFrame:
    """Tidy rows: one per repetition of each (engine, model, n_gpus, batch_size) configuration."""
    rows = [
        dict(study="s", hardware="cpu", engine=e, model=m, n_gpus=g, batch_size=b, max_new_tokens=5, repetition=r,
             status="ok", throughput=float(x), **extra)
        for (e, m, g, b), xs in throughputs.items() for r, x in enumerate(xs)
    ]  # fmt: skip
    return conform(pd.DataFrame(rows))


@pytest.mark.parametrize("noise", ["normal", "lognormal"])
def test_the_interval_covers_the_true_mean_95_percent_of_the_time_at_few_repetitions(noise: str) -> None:
    """400 configurations for each of n = 3, 5 and 10 repetitions, drawn from a known
    distribution (normal with CV 5%, or right-skewed log-normal with sigma 0.2, scaled to the
    same mean): configs.csv's 95% interval must cover the true mean in 92-97.5% of them at every
    n (a 95% rate over 400 draws has a standard error of 1.1 points). The percentile bootstrap
    this replaced covered about 76% at n = 3. About a second."""
    rng = np.random.default_rng(26)
    mean, draws = 200.0, 400
    for n in (3, 5, 10):
        if noise == "normal":
            x = rng.normal(mean, 0.05 * mean, (draws, n))
        else:
            x = rng.lognormal(np.log(mean) - 0.2**2 / 2, 0.2, (draws, n))
        configs = config_summaries(_table({("hf", noise, n, b): x[b] for b in range(draws)}))
        assert len(configs) == draws and (configs["n"] == n).all() and (configs["ci_method"] == CI_METHOD).all()
        covered = ((configs["ci_low"] <= mean) & (mean <= configs["ci_high"])).mean()
        assert 0.92 <= covered <= 0.975, (n, covered)


def test_configs_csv_has_the_contract_columns_and_invents_no_interval(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    table = _table(
        {
            ("hf", "m", 1, 1): rng.normal(100, 5, 3),
            ("hf", "m", 1, 4): np.array([400.0]),  # measured once: no spread, no interval
            ("hf", "m", 1, 16): np.array([900.0, 900.0, 900.0]),  # identical repetitions
            ("hf", "m", 1, 64): np.array([600.0, 1000.0, 1400.0]),  # noisy: cv 0.4
        }
    )
    path = tmp_path / "table.parquet"
    write_table(table, path)
    assert main(["stats", str(path), "-o", str(tmp_path / "stats"), "--cv-threshold", "0.2"]) == 0
    configs = pd.read_csv(tmp_path / "stats" / "configs.csv")
    axes = ["study", "hardware", "engine", "model", "n_gpus", "batch_size", "max_new_tokens"]
    assert list(configs.columns) == [*axes, *CONTRACT, "noisy", "repetitions", "stop_reason"]
    by_b = configs.set_index("batch_size")
    assert (by_b["ci_level"] == CI_LEVEL).all()
    ok = by_b.loc[1]
    assert ok["n"] == 3 and ok["ci_low"] < ok["mean"] < ok["ci_high"] and not ok["noisy"]
    assert ok["cv"] == pytest.approx(ok["std"] / ok["mean"])
    once = by_b.loc[4]
    assert once["n"] == 1 and once["mean"] == 400 and np.isnan([once["std"], once["cv"], once["ci_low"]]).all()
    same = by_b.loc[16]
    assert same["ci_low"] == same["ci_high"] == 900 and same["cv"] == 0
    assert by_b.loc[64, "noisy"] and by_b["noisy"].sum() == 1
    assert list(by_b["repetitions"]) == [3, 1, 3, 3] and (by_b["stop_reason"] == "planned").all()
    report = (tmp_path / "stats" / "report.md").read_text()
    assert "1 configuration(s) have a CV above 0.20" in report and "**noisy**" in report
    assert f"[{ok['ci_low']:.1f}, {ok['ci_high']:.1f}]" in report


def test_a_negative_cv_threshold_is_refused_naming_the_option(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["stats", str(tmp_path / "t.parquet"), "-o", str(tmp_path / "s"), "--cv-threshold", "-1"])
    assert info.value.code == 2 and "--cv-threshold" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_online_latency_percentiles_get_intervals_too() -> None:
    rng = np.random.default_rng(1)
    table = _table({("hf", "m", 1, 4): rng.normal(50, 2, 4)}, scenario="online", request_rate=2.0)
    table["latency_p50_s"] = rng.normal(0.5, 0.05, 4)
    configs = config_summaries(table)
    assert "request_rate" in configs.columns and "scenario" in configs.columns
    row = configs.iloc[0]
    assert row["latency_p50_ci_low"] < row["latency_p50_mean"] < row["latency_p50_ci_high"]
    assert "ttft_p50_mean" not in configs.columns, "only the percentiles the table has"


def _effect_table(rng: np.random.Generator, ratio: float, noise: float, reps: int = 3) -> pd.DataFrame:
    """Three models at batch sizes 1 and 2; batch 2 is ``ratio`` times faster; multiplicative noise."""
    cells = {}
    for m, scale in (("a", 100.0), ("b", 1000.0), ("c", 30.0)):
        for b, factor in ((1, 1.0), (2, ratio)):
            cells[("hf", m, 1, b)] = scale * factor * rng.lognormal(0, noise, reps)
    return _table(cells)


def test_a_difference_beyond_the_noise_is_found_and_one_within_it_is_not() -> None:
    rng = np.random.default_rng(5)
    (real,) = [r for r in repetition_tests(_effect_table(rng, 1.3, 0.03), 5) if r["analysis"] == "batch_size"]
    assert set(real) == set(TEST_COLUMNS) and real["test"] == "permutation"
    assert real["reject"] and real["effect"] == pytest.approx(1 / 1.3, rel=0.05), "side 1 (batch 1) over side 2"
    (noise,) = [r for r in repetition_tests(_effect_table(rng, 1.02, 0.3), 5) if r["analysis"] == "batch_size"]
    assert not noise["reject"] and noise["p_value"] > 0.05


def test_one_cell_with_3_repetitions_a_side_can_never_exceed_the_noise() -> None:
    """20 ways to split 6 values: the exact smallest two-sided p is 2/20, whatever the effect."""
    table = _table({("hf", "m", 1, 1): np.array([10.0, 10.1, 10.2]), ("hf", "m", 1, 2): np.array([50.0, 50.1, 50.2])})
    (row,) = repetition_tests(table, 5)
    assert row["p_value"] == pytest.approx(0.1, abs=0.02) and not row["reject"]


def test_a_table_measured_once_gets_no_repetition_test_and_says_so(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    table = _table({("hf", m, 1, b): rng.normal(100 * b, 5, 1) for m in "abc" for b in (1, 2, 4)})
    assert repetition_tests(table, 5) == []
    write_table(table, tmp_path / "t.parquet")
    assert main(["stats", str(tmp_path / "t.parquet"), "-o", str(tmp_path / "s")]) == 0
    report = (tmp_path / "s" / "report.md").read_text()
    assert "Every configuration was measured once" in report and "one repetition per configuration" in report
    assert "permutation" not in set(pd.read_csv(tmp_path / "s" / "tests.csv")["test"])


def test_a_configuration_that_never_ran_ok_says_failed_before_any_adaptive_reason() -> None:
    """The precedence of ``stop_reason``: a configuration whose every repetition ended in OOM
    (or was pruned) has no measurement to stop on, whatever its last repetition recorded. A
    repetition skipped as not needed belongs to its configuration (it records the batching its
    runs had) without counting as one of its repetitions."""
    table = _table({("hf", "m", 1, 1): np.array([100.0, 101.0, 99.0, 100.0])}, batching="static")
    table.loc[3, ["status", "throughput", "stop_reason"]] = ["skipped_enough", np.nan, "target"]
    oom = _table({("hf", "m", 1, 8): np.array([5.0, 5.0, 5.0])}, batching="static")
    oom = oom.assign(status="oom", stop_reason=[pd.NA, pd.NA, "max"])
    pruned = _table({("hf", "m", 1, 16): np.array([np.nan])}, batching="static").assign(status="skipped_oom")
    configs = config_summaries(conform(pd.concat([table, oom, pruned]))).set_index("batch_size")
    assert configs["stop_reason"].to_dict() == {1: "target", 8: "failed", 16: "failed"}, configs
    assert configs.loc[1, "n"] == 3 and configs.loc[1, "batching"] == "static"
    assert configs["repetitions"].to_dict() == {1: 3, 8: 3, 16: 0}


def test_a_skipped_record_from_before_it_carried_its_jobs_settings_joins_its_configuration(tmp_path: Path) -> None:
    """Result trees written before skipped records carried their job's engine settings hold
    ``skipped_enough`` and ``skipped_oom`` records without ``batching``. Aggregated, each takes the
    batching its configuration ran with, so it does not form a configuration of its own; a
    pruned batch whose configuration never ran keeps it missing."""
    from infpop.manifest import ModelSpec, WorkloadSpec
    from infpop.plan import TrialSpec
    from infpop.results import Provenance, ResultStore, TrialResult, utcnow
    from infpop_analysis.table import aggregate

    def result(batch: int, rep: int, status: str, batching: str | None) -> TrialResult:
        trial = TrialSpec(
            study="s", hardware="cpu", partition="local", engine="hf", model=ModelSpec(name="m", source="org/m"),
            n_gpus=1, batch_size=batch, max_new_tokens=5, repetition=rep, dtype="float32",
            workload=WorkloadSpec(path="p.jsonl"),
        )  # fmt: skip
        prov = Provenance(
            host="h", gpus=["cpu"], versions={}, manifest_sha256="0" * 64, started_at=utcnow(), finished_at=utcnow()
        )
        ok = status == "ok"
        return TrialResult(
            trial=trial, status=status, n_prompts=10 if ok else 0, generated_tokens=50 if ok else 0,
            wall_s=1.0 if ok else 0.0, throughput=50.0 + rep if ok else None, provenance=prov, batching=batching,
        )  # fmt: skip

    store = ResultStore(tmp_path)
    for rep in range(3):
        store.write(result(1, rep, "ok", "static"))
    store.write(result(1, 3, "skipped_enough", None))
    store.write(result(64, 0, "skipped_oom", None))
    table, corrupt = aggregate(tmp_path)
    assert not corrupt
    batching = table.set_index(["batch_size", "repetition"])["batching"]
    assert batching.loc[1].tolist() == ["static"] * 4 and batching.loc[64].isna().all()
    assert table.dtypes.equals(conform(table).dtypes)
    configs = config_summaries(table).set_index("batch_size")
    assert list(configs.index) == [1, 64] and configs.loc[1, "n"] == 3
