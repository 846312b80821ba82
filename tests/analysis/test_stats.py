"""The statistics recipes: the paper's numbers from its published data, and the recipes'
behaviour on small generated tables (missing cells dropped, never read as zero)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import PUBLISHED, REPO
from infpop.cli import main
from infpop_analysis.stats import TEST_COLUMNS, analyse, anova, cells
from infpop_analysis.table import conform

ALLDATA = PUBLISHED / "allData.csv"
needs_published = pytest.mark.skipif(not ALLDATA.exists(), reason=f"published data not found at {ALLDATA}")


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory):
    """`infpop import-published` then `infpop stats`, as a user runs them; the analysis folder."""
    out = tmp_path_factory.mktemp("paper")
    catalog = REPO / "manifests" / "paper.yaml"
    assert main(["import-published", str(ALLDATA), "-o", str(out / "table.parquet"), "--catalog", str(catalog)]) == 0
    assert main(["stats", str(out / "table.parquet"), "-o", str(out / "stats")]) == 0
    return out / "stats"


def _tests(stats_dir) -> pd.DataFrame:
    return pd.read_csv(stats_dir / "tests.csv")


def _one(t: pd.DataFrame, **where) -> pd.Series:
    for k, v in where.items():
        t = t[t[k] == v]
    assert len(t) == 1, where
    return t.iloc[0]


@needs_published
def test_tests_csv_is_one_tidy_table(paper) -> None:
    t = _tests(paper)
    assert list(t.columns) == TEST_COLUMNS
    assert set(t["analysis"]) == {"gpu_scaling", "batch_size", "engines", "hardware", "correlation"}
    assert set(t["test"]) == {"anova", "tukey", "wilcoxon", "cliffs_delta", "pearson"}
    assert t.loc[t["test"] == "cliffs_delta", "p_value"].isna().all(), "empty where a column does not apply"


@needs_published
def test_gpu_scaling_anova_as_published(paper) -> None:
    t = _tests(paper)
    v = _one(t, analysis="gpu_scaling", hardware="a100", engine="vllm", test="anova", group1="1,2,4,8")
    assert v["statistic"] == pytest.approx(5.4459, abs=1e-4) and v["p_value"] == pytest.approx(0.00213, abs=1e-5)
    h = _one(t, analysis="gpu_scaling", hardware="a100", engine="hf", test="anova", group1="1,2,4,8")
    assert h["statistic"] == pytest.approx(0.3716, abs=1e-4) and h["p_value"] == pytest.approx(0.774, abs=1e-3)
    # "re-execution of the ANOVA test by just considering 2, 4 and 8 GPUs failed to reject H0"
    assert not _one(t, analysis="gpu_scaling", hardware="a100", engine="vllm", test="anova", group1="2,4,8")["reject"]
    tukey = t[
        (t["analysis"] == "gpu_scaling") & (t["hardware"] == "a100") & (t["engine"] == "vllm") & (t["test"] == "tukey")
    ]
    significant = {(int(r.group1), int(r.group2)) for r in tukey.itertuples() if r.reject}
    assert significant == {(1, 2), (1, 4), (1, 8)}


@needs_published
def test_table_ii_speedups_as_published(paper) -> None:
    s = pd.read_csv(paper / "tables" / "table2_a100_summary.csv", index_col="comparison")
    # the paper's text prints "mean (median) 4.3X (6.47X)": the data give them the other way round
    assert s.loc["same_gpus", "mean"] == pytest.approx(6.47, abs=0.01)
    assert s.loc["same_gpus", "median"] == pytest.approx(4.3, abs=0.03)
    assert s.loc["best_gpus", "mean"] == pytest.approx(7.26, abs=0.015)
    assert s.loc["best_gpus", "median"] == pytest.approx(4.80, abs=0.015)


@needs_published
def test_batch_size_and_engine_comparison_as_published(paper) -> None:
    t = _tests(paper)
    anovas = t[(t["analysis"] == "batch_size") & (t["test"] == "anova")]
    for (hw, engine), part in anovas.groupby(["hardware", "engine"]):
        rejected = set(part.loc[part["reject"], "n_gpus"].astype(int))
        assert rejected == ({1, 2, 4} if engine == "hf" else {1, 2, 4, 8}), (hw, engine)
    tukeys = t[(t["analysis"] == "batch_size") & (t["test"] == "tukey")]
    assert set(map(tuple, tukeys[["hardware", "engine", "n_gpus"]].drop_duplicates().to_numpy())) == {
        (r.hardware, r.engine, r.n_gpus) for r in anovas[anovas["reject"]].itertuples()
    }, "Tukey HSD exactly where the ANOVA rejects"
    eng = t[t["analysis"] == "engines"]
    assert eng.loc[eng["test"] == "wilcoxon", "reject"].all()
    deltas = eng[eng["test"] == "cliffs_delta"]
    assert len(deltas) == 8 and deltas["effect"].mean() == pytest.approx(0.876, abs=5e-4)
    assert ((deltas["ci_low"] < deltas["effect"]) & (deltas["effect"] < deltas["ci_high"])).all()


@needs_published
def test_hardware_comparison_as_published(paper) -> None:
    s = pd.read_csv(paper / "tables" / "hardware_improvement.csv", index_col=0).set_index(["engine", "model"])
    for engine, mean, median, delta in (("vllm", 0.835, 0.776, 0.406), ("hf", 0.470, 0.233, 0.1333)):
        r = s.loc[(engine, "all")]
        assert r["mean_improvement"] == pytest.approx(mean, abs=5e-4)
        assert r["median_improvement"] == pytest.approx(median, abs=5e-4)
        assert r["cliffs_delta"] == pytest.approx(delta, abs=5e-4)
        assert r["significant"]


@needs_published
def test_correlations_as_published(paper) -> None:
    t = _tests(paper)
    a100 = t[(t["analysis"] == "correlation") & (t["hardware"] == "a100")]
    r = {(x.group1, x.group2): (x.statistic, x.p_value) for x in a100.itertuples()}
    assert r[("humaneval_pass1", "hf_thp")] == pytest.approx((-0.58, 0.0072), abs=(0.005))
    assert r[("humaneval_pass1", "vllm_best_thp")] == pytest.approx((-0.35, 0.122), abs=0.01)
    assert r[("params_b", "hf_thp")][0] == pytest.approx(-0.67, abs=0.005)
    assert r[("params_b", "vllm_best_thp")][0] == pytest.approx(-0.666, abs=0.005)


@needs_published
def test_report_reads_like_the_results_and_flags_disagreements(paper) -> None:
    report = (paper / "report.md").read_text()
    assert "F = 5.4459, p = 0.0021" in report
    assert "## The paper's text against the data" in report
    assert "| 4.3X (6.47X) | 6.46X (4.28X)" in report, "the swapped mean/median is shown with both numbers"
    for name in ("gpu_scaling_a100_vllm", "table2_a100", "batch_size_v100_hf_g8", "hardware_improvement"):
        assert (paper / "tables" / f"{name}.csv").exists() and (paper / "tables" / f"{name}.md").exists()


@needs_published
def test_published_data_has_one_repetition_and_no_invented_interval(paper) -> None:
    configs = pd.read_csv(paper / "configs.csv")
    measured = configs[configs["n"] > 0]
    assert (measured["n"] == 1).all() and configs[["std", "cv", "ci_low", "ci_high"]].isna().all().all()
    assert "permutation" not in set(_tests(paper)["test"])
    report = (paper / "report.md").read_text()
    assert "Every configuration was measured once" in report and "one repetition per configuration" in report


def _synthetic(missing: bool) -> pd.DataFrame:
    """Two engines, three GPU counts, 6 models; vllm is 3x faster; GPU count 1 is twice as fast."""
    rng = np.random.default_rng(0)
    rows = []
    for engine, speed in (("hf", 1.0), ("vllm", 3.0)):
        for m in range(6):
            for g in (1, 2, 4):
                for b in (1, 4, 16):
                    thp = speed * (2 if g == 1 else 1) * (10 + m) * (1 + 0.1 * rng.standard_normal())
                    gone = missing and m == 0 and g == 4
                    rows.append(dict(study="s", hardware="h", engine=engine, model=f"m{m}", n_gpus=g, batch_size=b,
                                     max_new_tokens=5, repetition=0, status="oom" if gone else "ok",
                                     throughput=np.nan if gone else thp))  # fmt: skip
    return conform(pd.DataFrame(rows))


def test_missing_cells_are_dropped_not_zero() -> None:
    full, holed = analyse(_synthetic(False)), analyse(_synthetic(True))
    n = lambda a: a.tests.query("analysis == 'gpu_scaling' and engine == 'hf' and test == 'anova'")["n"].iloc[0]  # noqa: E731
    assert n(holed) == n(full) - 1
    assert holed.tables["gpu_scaling_h_hf"].loc["m0", 4] != holed.tables["gpu_scaling_h_hf"].loc["m0", 4]  # NaN
    engines = holed.tests.query("analysis == 'engines' and test == 'cliffs_delta'")
    assert (engines["effect"] == 1.0).all(), "vLLM is faster in every pair"
    t2 = holed.tables["table2_h"].set_index("model")
    assert (t2["hf_gpus"] == 1).all() and t2["speedup_same"].between(2, 4).all()


def test_anova_needs_replication_and_detects_a_shift() -> None:
    assert anova({1: [1.0], 2: [2.0]}) is None, "one value per group: undefined, left out"
    row = anova({"a": [1.0, 1.1, 0.9], "b": [5.0, 5.1, 4.9]}, analysis="x")
    assert row["reject"] and row["n"] == 6 and row["group1"] == "a,b"


def test_cells_take_the_median_of_repetitions_and_keep_partial_oom_throughput() -> None:
    df = conform(pd.DataFrame([
        dict(hardware="h", engine="hf", model="m", n_gpus=1, batch_size=1, max_new_tokens=5, repetition=r, status=s, throughput=t)
        for r, s, t in ((0, "ok", 1.0), (1, "ok", 3.0), (2, "oom", 10.0), (3, "error", np.nan))
    ]))  # fmt: skip
    assert cells(df)["throughput"].tolist() == [3.0]  # median of 1, 3 and the partial 10; the error row has none


@needs_published
def test_report_computes_each_verdict_of_the_papers_text(paper) -> None:
    """Verdicts come from the numbers: the RQ4 Wilcoxon lines are the data's p-values printed
    without their exponent, Table II's mean and median are swapped, the V100 column is shifted."""
    report = (paper / "report.md").read_text()
    wilcoxon = [line for line in report.splitlines() if "| Wilcoxon p-value |" in line]
    assert len(wilcoxon) == 2 and all(line.endswith("| **no: printed without its exponent** |") for line in wilcoxon)
    assert "| 2.01 | 2.019e-116 |" in report and "| 3.88 | 3.886e-60 |" in report
    assert "**no: mean and median swapped**" in report and "**no: shifted one row**" in report
    assert "an exponent is missing" not in report and "the text swaps" not in report
