"""The scaling, batch-size and hardware curves drawn by `infpop figures`."""

from __future__ import annotations

import pandas as pd

from infpop_analysis.formatting import esc
from infpop_analysis.report.html import incomplete, missing, png
from infpop_analysis.report.sources import Sources

KEY, HEADING = "curves", "Scaling, batch-size and hardware curves"
#: Figure folders drawn by ``infpop figures`` that the page shows, with a sentence each.
CURVES = {
    "gpu_scaling": "Throughput against GPU count at batch size 1, one line per model (linear and log scale).",
    "batch_size": "Throughput against batch size for each GPU count, one line per model (linear and log scale).",
    "hardware": "Throughput of each (model, GPU count, batch size) cell measured on both GPU types; the dashed line is equal throughput.",
}


def render(df: pd.DataFrame, src: Sources, tokens: int) -> str:
    figures = src.figures
    if not figures.is_dir():
        return missing("figures folder", "infpop figures TABLE -o DIR")
    parts = [incomplete(figures, "infpop figures TABLE -o DIR")]
    for kind, sentence in CURVES.items():
        pngs = sorted((figures / kind).glob("*.png"))
        if pngs:
            title = kind.replace("_", " ")
            parts.append(
                f"<h3>{esc(title)}</h3><p>{esc(sentence)} Marks at the foot of an axis: cells without a throughput (x OOM, ■ failed, ○ not measured).</p>"
            )
            parts += [png(p, f"{title}: {p.stem}") for p in pngs]
    return "".join(parts) or missing("scaling, batch-size or hardware figure", "infpop figures TABLE -o DIR")
