"""Analyses never pool what differs in configuration: ``infpop stats`` splits a table by every
configuration axis it varies (workload, request rate, ...), the HPO landscapes refuse such a
table naming the column, and both leave out invalid runs, saying how many.

The stats test runs a real online sweep shaped like ``manifests/workloads.yaml`` (two
workloads, two request rates) on the tiny model, in-process: 16 short trials (~15 s on 2 cores).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from infpop.cli import main
from infpop.errors import InputError
from infpop.manifest import load_manifest
from infpop.plan import plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.trial import run_group
from infpop_analysis.hpo.landscape import landscapes
from infpop_analysis.stats import analyse
from infpop_analysis.table import aggregate, config_axes, conform, valid_rows, write_table
from scipy import stats as sps

RATES = [100.0, 200.0]


@pytest.fixture(scope="module")
def workloads_table(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, humaneval_path: Path) -> Path:
    """The aggregate of a two-workload, two-rate online sweep of two models (one tiny Llama, two names)."""
    import yaml

    tmp = tmp_path_factory.mktemp("workloads")
    manifest = tmp / "workloads.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "study": "workloads",
                "output_root": str(tmp / "runs"),
                "models": [{"name": name, "source": str(tiny_model)} for name in ("tiny-a", "tiny-b")],
                "engines": ["hf"],
                "gpu_counts": [1],
                "batch_sizes": [1, 4],
                "max_new_tokens": [2],
                "dtype": "float32",
                "engine_options": {"hf": {"cpu_threads": 1}},
                "workloads": [
                    {"name": "humaneval-infilling", "path": str(humaneval_path), "limit": 20},
                    {
                        "name": "synthetic",
                        "synthetic": {
                            "n_prompts": 20,
                            "input_tokens": {"kind": "uniform", "min": 40, "max": 120},
                            "output_tokens": {"kind": "fixed", "tokens": 2},
                        },
                    },
                ],
                "scenario": {
                    "kind": "online",
                    "request_rates": RATES,
                    "duration_s": 0.2,
                    "min_duration_s": 0.1,
                    "min_requests": 5,
                },
            }
        )
    )
    for group in plan(load_manifest(manifest), "local", EMBEDDED_DEFAULT.partitions["local"]):
        run_group(group)
    df, corrupt = aggregate(tmp / "runs")
    assert not corrupt and len(df) == 16 and df["valid"].all(), df[["trial_id", "status", "invalid_reason"]]
    write_table(df, tmp / "table.parquet")
    return tmp / "table.parquet"


def test_stats_on_two_workloads_and_two_rates_never_pools_them(workloads_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "stats"
    assert main(["stats", str(workloads_table), "-o", str(out)]) == 0
    tests = pd.read_csv(out / "tests.csv")
    table = pd.read_parquet(workloads_table)

    assert {"workload", "request_rate"} <= set(tests.columns), "each test names its workload and request rate"
    anovas = tests[(tests["analysis"] == "batch_size") & (tests["test"] == "anova")]
    assert sorted(zip(anovas["workload"], anovas["request_rate"])) == sorted(
        (w, r) for w in ("humaneval-infilling", "synthetic") for r in RATES
    ), "one test per (workload, rate), never one over all of them"
    for row in anovas.itertuples():
        trials = table[(table["workload"] == row.workload) & (table["request_rate"] == row.request_rate)]
        assert trials["model"].value_counts().tolist() == [2, 2]
        groups = [part.sort_values("model")["throughput"].to_numpy() for _, part in trials.groupby("batch_size")]
        assert row.n == 4 and row.statistic == pytest.approx(sps.f_oneway(*groups).statistic, nan_ok=True)
        cells = pd.read_csv(
            out / "tables" / f"batch_size_cpu_hf_g1__workload-{row.workload}_request_rate-{row.request_rate:g}.csv",
            index_col="model",
        )
        measured = trials.pivot_table(index="model", columns="batch_size", values="throughput")
        assert np.allclose(cells.to_numpy(), measured.to_numpy()), "each cell is that workload and rate's trial"

    report = (out / "report.md").read_text()
    assert "The trials differ in workload, request_rate" in report
    assert "# workload = synthetic, request_rate = 200" in report


def test_landscapes_refuse_a_table_that_varies_another_axis(workloads_table: Path) -> None:
    table = pd.read_parquet(workloads_table)
    with pytest.raises(InputError, match=r"column 'workload' has 2 values \(humaneval-infilling, synthetic\)"):
        landscapes(table, max_new_tokens=2)
    one_workload = table[table["workload"] == "synthetic"]
    with pytest.raises(InputError, match=r"column 'request_rate' has 2 values \(100.0, 200.0\)"):
        landscapes(one_workload, max_new_tokens=2)
    (land_a, land_b) = landscapes(one_workload[one_workload["request_rate"] == 100.0], max_new_tokens=2)
    assert {land_a.model, land_b.model} == {"tiny-a", "tiny-b"} and len(land_a.points) == 2


def _table(valid: list[bool | None]) -> pd.DataFrame:
    """Two models x two batch sizes, one repetition each, then one more run per ``valid`` entry of
    model m0 at batch 1 whose throughput is absurd (1000): it must count only when valid."""
    rows = [
        dict(study="s", hardware="h", engine="hf", model=f"m{m}", n_gpus=1, batch_size=b, max_new_tokens=5,
             repetition=0, status="ok", throughput=10.0 * (m + 1) * b, valid=True)
        for m in range(3) for b in (1, 4)
    ]  # fmt: skip
    rows += [{**rows[0], "repetition": 1 + i, "throughput": 1000.0, "valid": v} for i, v in enumerate(valid)]
    return conform(pd.DataFrame(rows))


def test_invalid_runs_are_left_out_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = _table([False, False])
    kept, dropped = valid_rows(table)
    assert dropped == 2 and len(kept) == 6 and kept["throughput"].max() < 1000
    assert valid_rows(_table([None]))[1] == 0, "a run from before the validity rule counts"

    a = analyse(table)
    assert a.n_invalid == 2 and a.tables["batch_size_h_hf_g1"].loc["m0", 1] == 10.0
    assert main(["stats", str(write_table(table, tmp_path / "t.parquet")[0]), "-o", str(tmp_path / "s")]) == 0
    assert "2 invalid run(s) left out" in (tmp_path / "s" / "report.md").read_text()

    with caplog.at_level(logging.WARNING):
        (land,) = landscapes(table[table["model"] == "m0"])
    assert "left out 2 invalid run(s)" in caplog.text
    assert land.points[(1, 1)].throughput == 10.0


def test_config_axes_are_the_columns_a_table_has_values_for() -> None:
    table = _table([])
    assert config_axes(table) == ["hardware", "engine", "model", "n_gpus", "batch_size", "max_new_tokens"]
    online = table.assign(scenario="online", request_rate=4.0)
    assert config_axes(online)[-2:] == ["scenario", "request_rate"]
