"""The report's search section embeds the HPO summaries and names the per-run detail it leaves
in its file: the benchmark over the published data writes 8.3 MB, nearly all of it per-run
records, which made report.html megabytes larger."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from infpop.cli import main
from infpop_analysis.table import conform, write_table


def _report(tmp_path: Path, runs: int) -> str:
    """report.html of a small study whose hpo/ holds a benchmark file shaped as `infpop hpo
    benchmark` writes it (its method summaries, then one record per search run)."""
    folder = tmp_path / f"runs{runs}"
    rng = np.random.default_rng(0)
    rows = [
        dict(study="s", hardware="a100", engine="hf", model="m", n_gpus=1, batch_size=b, max_new_tokens=5,
             repetition=r, status="ok", throughput=b + rng.normal(0, 0.3), trial_id=f"b{b}_r{r}")
        for b in (1, 8) for r in range(3)
    ]  # fmt: skip
    write_table(conform(pd.DataFrame(rows)), folder / "table.parquet")
    methods = {m: {"median_trials_to_stop": 7.0, "final_hit_rate": 0.9} for m in ("tpe", "random", "hillclimb")}
    record = {"method": "tpe", "landscape": "hf/m/a100", "seed": 1, "stop_reason": "patience", "pick": [1, 8]}
    bench = {"tolerance": 0.01, "methods": methods, "runs": [record | {"seed": i} for i in range(runs)]}
    (folder / "hpo").mkdir()
    (folder / "hpo" / "hpo_benchmark.json").write_text(json.dumps(bench))
    assert main(["report", str(folder / "table.parquet"), "-o", str(folder / "out")]) == 0
    return (folder / "out" / "report.html").read_text()


def test_the_benchmark_s_per_run_records_stay_in_their_file_and_the_page_stays_small(tmp_path: Path) -> None:
    few, many = _report(tmp_path, 10), _report(tmp_path, 60_000)
    for page in (few, many):
        assert "Optimizer benchmark" in page and ">hillclimb<" in page, "the method summaries are shown"
    assert "Not embedded" not in few
    assert "runs (60000 entries, " in many and "hpo_benchmark.json" in many
    assert len(many.encode()) <= len(few.encode()) + 1_000, "megabytes of runs add one sentence to the page"
