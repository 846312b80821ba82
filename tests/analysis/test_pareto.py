"""Pareto fronts and knees as the report marks them."""

from __future__ import annotations

import pandas as pd
import pytest
from infpop_analysis.pareto import front, knee


def test_the_front_keeps_exactly_the_undominated_configurations() -> None:
    df = pd.DataFrame(
        {
            "tps": [100, 200, 300, 150, 300, 50],
            "jpt": [1.0, 1.5, 3.0, 2.0, 3.0, None],  # 150 t/s at 2 J is beaten by 200 t/s at 1.5 J
        },
        index=list("abcdef"),
    )
    got = front(df, more="tps", less="jpt")
    assert list(got.index) == ["a", "b", "c", "e"], "ties on both measures stay; a missing measure leaves"
    assert list(front(df, more="tps", more2="jpt").index) == ["c", "e"]


def test_the_knee_is_where_the_front_bends_most() -> None:
    # Throughput rises fast and then flattens while energy keeps rising: the bend is at 'b'.
    rows = pd.DataFrame({"tps": [100, 190, 200, 205], "jpt": [1.0, 1.2, 2.0, 4.0]}, index=list("abcd"))
    assert knee(front(rows, more="tps", less="jpt"), "tps", "jpt") == "b"
    on_a_line = pd.DataFrame({"tps": [1, 2, 3], "jpt": [1, 2, 3]}, index=list("xyz"))
    assert knee(on_a_line, "tps", "jpt") is None, "a straight front has no knee"
    assert knee(rows.iloc[:2], "tps", "jpt") is None


def test_one_second_measure_exactly() -> None:
    with pytest.raises(ValueError):
        front(pd.DataFrame({"a": [1]}), more="a")


def test_the_report_marks_the_energy_front_and_its_knee(tmp_path) -> None:
    from infpop_analysis.report import efficiency
    from infpop_analysis.report.sources import Sources

    rows = []
    for batch, tps, jpt in [(1, 100, 1.0), (8, 190, 1.2), (16, 200, 2.0), (32, 205, 4.0), (4, 120, 3.0)]:
        for rep in (0, 1):
            rows.append(
                dict(hardware="a100", engine="hf", model="m", n_gpus=1, batch_size=batch, max_new_tokens=32,
                     status="ok", repetition=rep, throughput=tps + rep, energy_j_per_token=jpt,
                     roofline_fraction=tps / 1000, bound_by="bandwidth")
            )  # fmt: skip
    page = efficiency.render(pd.DataFrame(rows), Sources.beside(tmp_path / "table.parquet"), 32)
    assert "4 configurations on the front. Knee: g1 b8." in page, "b4 is dominated by b8"
    assert "energy-front-0" in page and "Energy was not measured here" not in page


def test_the_report_says_energy_was_not_measured_rather_than_zero(tmp_path) -> None:
    from infpop_analysis.report import efficiency
    from infpop_analysis.report.sources import Sources

    table = pd.DataFrame(
        dict(hardware="cpu", engine="hf", model="m", n_gpus=1, batch_size=[1, 2], max_new_tokens=8, status="ok",
             repetition=0, throughput=[10.0, 18.0], energy_j_per_token=None, roofline_fraction=[0.01, 0.02])
    )  # fmt: skip
    page = efficiency.render(table, Sources.beside(tmp_path / "table.parquet"), 8)
    assert "Energy was not measured here" in page and "energy-front" not in page
    assert "0.020" in page, "the roofline fraction is shown"
