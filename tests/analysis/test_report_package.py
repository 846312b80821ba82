"""The report package: its best configurations come from the statistics `infpop stats` writes
(one computation, whether configs.csv is there or not), and its styles ship in the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from infpop.cli import main
from infpop_analysis.table import conform, write_table

ROOT = Path(__file__).resolve().parents[2]


def _best_rows(page: str) -> str:
    """The rows of the best-configuration table, without the sentence that names their source."""
    best = page[page.index("<section id='best'>") : page.index("<section id='engines'>")]
    return best[best.index("<table>") :]


def test_best_configuration_without_stats_is_what_stats_would_write(tmp_path: Path) -> None:
    """Without stats/ the page computes the per-configuration summaries configs.csv holds, so
    running `infpop stats` afterwards changes the sentence naming the source, not the table."""
    rng = np.random.default_rng(0)
    rows = [
        dict(study="s", hardware="a100", engine="hf", model=m, n_gpus=1, batch_size=b, max_new_tokens=5,
             repetition=r, status="ok", throughput=b * (2 if m == "m1" else 1) + rng.normal(0, 0.3),
             trial_id=f"{m}_b{b}_r{r}")
        for m in ("m0", "m1") for b in (1, 8) for r in range(3)
    ]  # fmt: skip
    table = tmp_path / "table.parquet"
    write_table(conform(pd.DataFrame(rows)), table)

    assert main(["report", str(table), "-o", str(tmp_path / "before")]) == 0
    before = (tmp_path / "before" / "report.html").read_text()
    assert "no configs.csv of `infpop stats` was found" in before
    assert main(["stats", str(table), "-o", str(tmp_path / "stats")]) == 0
    assert main(["report", str(table), "-o", str(tmp_path / "after")]) == 0
    after = (tmp_path / "after" / "report.html").read_text()
    assert "From configs.csv" in after

    assert _best_rows(before) == _best_rows(after)
    assert "<th>95% CI</th>" in _best_rows(after), "three repetitions give each best configuration an interval"


@pytest.mark.slow
def test_wheel_ships_the_report_styles(tmp_path: Path) -> None:
    """A non-editable install reads report.css from the package: the wheel must carry it."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    for folder in ("toolkit", "analysis"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        cwd=src,
    )
    (wheel,) = tmp_path.glob("infpop-*.whl")
    assert "infpop_analysis/report/report.css" in zipfile.ZipFile(wheel).namelist()
