"""The analysis commands run unchanged on a table `infpop aggregate` made from a local sweep."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
from infpop.cli import main
from infpop_analysis.stats import TEST_COLUMNS


def test_stats_and_figures_on_an_aggregated_local_sweep(write_manifest, tiny_model: Path, tmp_path: Path) -> None:
    models = [{"name": n, "source": str(tiny_model), "params_b": p, "humaneval_pass1": h}
              for n, p, h in (("tiny-a", 0.002, 1.0), ("tiny-b", 0.004, 3.0), ("tiny-c", 0.003, 2.0))]  # fmt: skip
    manifest = write_manifest(models=models, gpu_counts=[1, 2], batch_sizes=[1, 4], max_new_tokens=[5])
    sweep = subprocess.run(
        [sys.executable, "-m", "infpop", "sweep", str(manifest)], capture_output=True, text=True, timeout=900
    )
    assert sweep.returncode == 0, sweep.stderr
    table = tmp_path / "table.parquet"
    assert main(["aggregate", str(tmp_path / "runs" / "t"), "-o", str(table)]) == 0

    assert main(["stats", str(table), "-o", str(tmp_path / "stats")]) == 0
    tests = pd.read_csv(tmp_path / "stats" / "tests.csv")
    assert list(tests.columns) == TEST_COLUMNS
    anova = tests[(tests["analysis"] == "gpu_scaling") & (tests["test"] == "anova")]
    assert len(anova) == 1 and anova["n"].iloc[0] == 6, "3 models x GPU counts 1, 2 at batch 1"
    configs = pd.read_csv(tmp_path / "stats" / "configs.csv")
    assert {"energy_j_per_token", "tokens_per_s_per_w", "roofline_fraction", "bound_by"} <= set(configs.columns)
    assert configs["roofline_fraction"].notna().all()
    report = (tmp_path / "stats" / "report.md").read_text()
    assert report.startswith("# Results: t") and "## GPU scaling at batch size 1" in report
    assert "The paper's text against the data" not in report, "paper checks only for the published study"
    assert (tmp_path / "stats" / "tables" / "gpu_scaling_cpu_hf.md").exists()

    assert main(["figures", str(table), "-o", str(tmp_path / "figs")]) == 0
    drawn = {p.relative_to(tmp_path / "figs").as_posix() for p in (tmp_path / "figs").rglob("*.*")}
    assert {"landscapes/cpu_hf_tiny-a.png", "landscapes/cpu_hf.pdf", "interactive/cpu_hf.html",
            "gpu_scaling/cpu_hf.png", "batch_size/cpu_hf_g1.png"} <= drawn  # fmt: skip


def test_bad_inputs_exit_2_with_the_file_named(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "nope.csv"
    bogus.write_text("a,b\n1,2\n")
    assert main(["stats", str(bogus), "-o", str(tmp_path / "out")]) == 2
    assert main(["import-published", str(bogus), "-o", str(tmp_path / "t.parquet")]) == 2
    err = capsys.readouterr().err
    assert f"{bogus}: not an infpop table" in err and f"{bogus}: not the published allData.csv" in err
