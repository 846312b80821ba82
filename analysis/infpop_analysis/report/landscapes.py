"""One interactive landscape per (hardware, engine), drawn by
:func:`~infpop_analysis.figures.landscape_plotly` as the figures' HTML files are."""

from __future__ import annotations

import pandas as pd

from infpop_analysis.figures import cell_table, landscape_plotly, landscape_states
from infpop_analysis.formatting import esc
from infpop_analysis.report.html import plotly_div
from infpop_analysis.report.sources import Sources

KEY, HEADING = "landscapes", "Throughput landscapes"


def render(df: pd.DataFrame, src: Sources, tokens: int) -> str:
    cells = cell_table(df, tokens)
    if not len(cells):
        return f"<p class='missing'>No trial at max_new_tokens = {tokens}.</p>"
    parts = [
        f"<p>Median throughput (tokens/s) per (GPU count, batch size) cell at {tokens} new tokens, one surface per "
        "model (pick it in the menu above each scene; drag to turn). Cells without a throughput are never drawn as "
        "zero: they are holes in the surface, marked on the floor by what happened there (OOM, failed by error or "
        "timeout, or not measured); an OOM run's partial throughput is a red dot at its value.</p>"
    ]
    for (hw, engine), part in cells.groupby(["hardware", "engine"]):
        counts: dict[str, int] = {}
        for _, model_cells in part.groupby("model"):
            for state in landscape_states(model_cells)[1].ravel():
                counts[state] = counts.get(state, 0) + 1
        summary = ", ".join(f"{counts.get(s, 0)} {label}" for s, label in (
            ("ok", "measured"), ("oom", "OOM"), ("failed", "failed"), ("missing", "not measured")))  # fmt: skip
        fig = landscape_plotly(part, f"{engine} on {hw}, {tokens} new tokens")
        parts.append(
            f"<h3>{esc(engine)} on {esc(hw)}</h3><p class='note'>Grid cells over all models: {esc(summary)}.</p>"
            + plotly_div(fig, f"landscape-{hw}-{engine}")
        )
    return "".join(parts)
