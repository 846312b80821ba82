"""Importing the published allData.csv: hardware and max_new_tokens recovered from row order.

The decoding rules are checked on small hand-made frames (always), and the import of the real
file against the appendix's derived tables in the same folder (when ../shared is present).
"""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import PUBLISHED, REPO
from infpop.errors import InputError
from infpop_analysis.published import decode, import_published
from infpop_analysis.stats import cells, hardware, hardware_pairs, table_ii
from infpop_analysis.table import COLUMNS

ALLDATA = PUBLISHED / "allData.csv"
needs_published = pytest.mark.skipif(not ALLDATA.exists(), reason=f"published data not found at {ALLDATA}")


def _raw(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["model", "engine", "nrGPUs", "batchSize", "throughput", "errors_l"])


def test_row_order_gives_hardware_tokens_and_drops_a_repeated_block() -> None:
    rows = [
        # A100: 1 GPU (batch 1: 5/10/20 tokens; batch 2: killed after 5), 2 GPUs, then the 2-GPU block again
        ("M", "vLLM", 1, 1, 10.0, "ok"), ("M", "vLLM", 1, 1, 20.0, "ok"), ("M", "vLLM", 1, 1, 40.0, "ok"),
        ("M", "vLLM", 1, 2, 15.0, "killed-noInfo"),
        ("M", "vLLM", 2, 1, 9.0, "ok"), ("M", "vLLM", 2, 2, 3.0, "CUDA out of memory"),
        ("M", "vLLM", 2, 1, 9.0, "ok"), ("M", "vLLM", 2, 2, 3.0, "CUDA out of memory"),
        # GPU count stops increasing (2 -> 1): V100 starts
        ("M", "vLLM", 1, 1, 5.0, "ok"), ("M", "vLLM", 1, 2, None, "CUDA out of memory"),
        # a new (model, engine) block with one part is A100
        ("N", "autohf", 8, 1, 1.0, "ok"),
    ]  # fmt: skip
    df = decode(_raw(rows))
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert len(df) == len(rows) - 2
    got = list(zip(df["model"], df["engine"], df["hardware"], df["n_gpus"], df["batch_size"], df["max_new_tokens"]))
    assert got == [
        ("M", "vllm", "a100", 1, 1, 5), ("M", "vllm", "a100", 1, 1, 10), ("M", "vllm", "a100", 1, 1, 20),
        ("M", "vllm", "a100", 1, 2, 5), ("M", "vllm", "a100", 2, 1, 5), ("M", "vllm", "a100", 2, 2, 5),
        ("M", "vllm", "v100", 1, 1, 5), ("M", "vllm", "v100", 1, 2, 5), ("N", "hf", "a100", 8, 1, 5),
    ]  # fmt: skip
    oom = df[(df["hardware"] == "a100") & (df["n_gpus"] == 2) & (df["batch_size"] == 2)].iloc[0]
    assert oom["status"] == "oom" and oom["throughput"] == 3.0, "an OOM row keeps its partial throughput"
    assert df["status"].tolist().count("error") == 1
    assert set(df["study"]) == {"infpop-paper"} and set(df["source"]) == {"published"}


def test_unreadable_inputs_are_named() -> None:
    with pytest.raises(InputError, match="column 'errors_l' is missing"):
        decode(_raw([("M", "vLLM", 1, 1, 1.0, "ok")]).drop(columns="errors_l"))
    with pytest.raises(InputError, match="unknown engine 'tgi'"):
        decode(_raw([("M", "tgi", 1, 1, 1.0, "ok")]))
    with pytest.raises(InputError, match="4 rows; at most 3"):
        decode(_raw([("M", "vLLM", 1, 1, 1.0, "ok")] * 4))
    three_parts = [("M", "vLLM", g, 1, 1.0, "ok") for g in (1, 2, 1, 2, 1)]
    with pytest.raises(InputError, match="more than 2 hardware parts"):
        decode(_raw(three_parts))


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return import_published(ALLDATA, catalog=REPO / "manifests" / "paper.yaml")


@needs_published
def test_import_shape(published: pd.DataFrame) -> None:
    raw = pd.read_csv(ALLDATA, index_col=0)
    assert len(published) == len(raw) - 33, "one repeated 11-batch x 3-token block is dropped"
    assert not published.duplicated(["hardware", "engine", "model", "n_gpus", "batch_size", "max_new_tokens"]).any()
    assert set(published["hardware"]) == {"a100", "v100"} and set(published["engine"]) == {"hf", "vllm"}
    assert set(published["max_new_tokens"]) == {5, 10, 20}
    assert published["model"].nunique() == 20 and published["params_b"].notna().all()
    partial = published[(published["status"] == "oom") & published["throughput"].notna()]
    assert len(partial) == 283, "every OOM row with a partial throughput is kept as such"
    codestral = published[(published["model"] == "Codestral-22b") & (published["engine"] == "vllm")
                          & (published["hardware"] == "a100") & (published["n_gpus"] == 8) & (published["batch_size"] == 32)]  # fmt: skip
    assert sorted(codestral["max_new_tokens"]) == [5, 20]


@needs_published
@pytest.mark.parametrize("hw,engine", [("a100", "autohf"), ("a100", "vLLM"), ("tesla", "autohf"), ("tesla", "vLLM")])
def test_gpu_scaling_tables_match_the_appendix(published: pd.DataFrame, hw: str, engine: str) -> None:
    expected = pd.read_csv(PUBLISHED / f"RQ1_table_gpuscale_{hw}_{engine}.csv", index_col="model")
    c = cells(published)
    ours = c[(c["hardware"] == {"a100": "a100", "tesla": "v100"}[hw]) & (c["engine"] == {"autohf": "hf", "vLLM": "vllm"}[engine])
             & (c["batch_size"] == 1)].pivot_table(index="model", columns="n_gpus", values="throughput")  # fmt: skip
    ours = ours.reindex(index=expected.index, columns=[1, 2, 4, 8])
    exp = expected.set_axis([1, 2, 4, 8], axis=1)
    assert (ours.isna() == exp.isna()).all().all(), "the same cells are missing"
    # the appendix rounds HF to 0.1 t/s and prints vLLM in full
    tol = 0.05 + 1e-9 if engine == "autohf" else 1e-9
    assert ((ours - exp).abs().fillna(0) <= tol).all().all()


def _appendix_comparison(hw: str) -> pd.DataFrame:
    return pd.read_csv(PUBLISHED / f"RQ1_table_comparison_{hw}.csv", index_col=0).set_index("model")


@needs_published
def test_table_ii_matches_the_paper_cell_for_cell(published: pd.DataFrame) -> None:
    t2 = table_ii(cells(published), "a100").set_index("model")
    exp = _appendix_comparison("a100").reindex(t2.index)
    assert (t2["hf_gpus"] == exp["nrGPUshf"]).all() and (t2["vllm_best_gpus"] == exp["nrGPUsvllm"]).all()
    for ours, theirs in (
        ("hf_thp", "throughputhf"),
        ("vllm_same_thp", "throughputvllmi"),
        ("vllm_best_thp", "throughputvllm"),
    ):
        assert (t2[ours].round(1) == exp[theirs]).all(), ours
    # the paper's speed-ups are ratios of the throughputs as printed (rounded to 0.1 t/s)
    shown = t2[["hf_thp", "vllm_same_thp", "vllm_best_thp"]].round(1)
    assert (
        (shown["vllm_same_thp"] / shown["hf_thp"]).round(1) == exp["throughputXi"].str.rstrip("X").astype(float)
    ).all()
    assert (
        (shown["vllm_best_thp"] / shown["hf_thp"]).round(1) == exp["throughputX"].str.rstrip("X").astype(float)
    ).all()


@needs_published
def test_v100_comparison_matches_except_the_appendix_row_shift(published: pd.DataFrame) -> None:
    t2 = table_ii(cells(published), "v100").set_index("model")
    exp = _appendix_comparison("tesla")
    assert list(t2.index) == list(exp.index), "HF has no Phi-1 on V100, so neither table has that row"
    assert (t2["hf_gpus"] == exp["nrGPUshf"]).all()
    assert (t2["hf_thp"].round(1) == exp["throughputhf"]).all()
    assert (t2["vllm_same_thp"].round(1) == exp["throughputvllmi"]).all()
    shift = list(t2.index).index("Phi-1_5")
    best = t2["vllm_best_thp"].round(1)
    assert (best.iloc[:shift] == exp["throughputvllm"].iloc[:shift]).all()
    # From Phi-1_5 down, the appendix's vLLM-best column holds the row above's value; the first
    # shifted row holds Phi-1's, which the table lacks.
    assert (best.iloc[shift:-1].to_numpy() == exp["throughputvllm"].iloc[shift + 1 :].to_numpy()).all()
    phi1 = cells(published).query("hardware == 'v100' and engine == 'vllm' and model == 'Phi-1' and batch_size == 1")
    assert round(phi1["throughput"].max(), 1) == exp.loc["Phi-1_5", "throughputvllm"]


@needs_published
@pytest.mark.parametrize("engine,name", [("hf", "autohf"), ("vllm", "vLLM")])
def test_hardware_improvement_matches_the_appendix(published: pd.DataFrame, engine: str, name: str) -> None:
    summary, _ = hardware(hardware_pairs(cells(published)))
    ours = summary[summary["engine"] == engine].set_index("model")
    exp = pd.read_csv(PUBLISHED / f"RQ3_improvement_hardware_{name}.csv", index_col=0).set_index("model")
    ours = ours.reindex(exp.index)
    assert ((ours["mean_improvement"] * 100).round(1) == exp["meanImpr"].str.rstrip("%").astype(float)).all()
    assert ((ours["median_improvement"] * 100).round(1) == exp["medianImpr"].str.rstrip("%").astype(float)).all()
    assert (ours["cliffs_delta"].round(1) == exp["cliff_delta"]).all()
    assert (ours["significant"] == exp["significant"]).all()
