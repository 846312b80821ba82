"""Why each configuration of an adaptive study stopped, from the tiny model's real trials to configs.csv.

Real trials: the tiny model on transformers, the trial loop, the result files, the table and
its summaries. Which configuration is quiet cannot be chosen on a real model on a shared
machine, so the two outcomes come from two targets instead: one no timing can meet (a
half-width of a millionth of the mean), and one any run short of chaos meets by 6 repetitions
(99% of the mean: a coefficient of variation under 94% at 6; this machine under load has shown
the tiny model's throughput at 3 tokens vary by 50-70%).
"""

from __future__ import annotations

from pathlib import Path

from infpop.manifest import load_manifest
from infpop.plan import plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.trial import run_group
from infpop_analysis.report import best
from infpop_analysis.report.sources import Sources
from infpop_analysis.summaries import config_summaries
from infpop_analysis.table import aggregate


def test_a_configuration_says_it_reached_the_target_with_its_n_and_another_that_it_ran_to_max(
    write_manifest, tmp_path: Path
) -> None:
    for study, target, most in (("reached", 0.99, 6), ("tomax", 1e-6, 4)):
        rule = {"min": 3, "max": most, "target_rel_halfwidth": target}
        manifest = write_manifest(f"{study}.yaml", study=study, batch_sizes=[2], repetitions=rule)
        (group,) = plan(load_manifest(manifest), "local", EMBEDDED_DEFAULT.partitions["local"])
        run_group(group)
    table, corrupt = aggregate(tmp_path / "runs")
    assert not corrupt
    configs = config_summaries(table).set_index("study")
    reached, tomax = configs.loc["reached"], configs.loc["tomax"]
    assert reached["stop_reason"] == "target" and 3 <= reached["repetitions"] == reached["n"] <= 6, reached
    assert tomax["stop_reason"] == "max" and tomax["repetitions"] == tomax["n"] == 4, tomax
    tomax_rows = table[table["study"] == "tomax"].sort_values("repetition")
    assert tomax_rows["stop_reason"].fillna("-").tolist() == ["-", "-", "-", "max"], "said on the last repetition"

    src = Sources.beside(tmp_path / "runs" / "table.parquet")
    for study, reason in (("reached", "target"), ("tomax", "max")):
        page = best.render(table[table["study"] == study], src, tokens=3)
        assert "stop_reason</th>" in page and f"<td>{reason}</td>" in page, page
        assert "ran to max with its interval still wider than the target" in page
