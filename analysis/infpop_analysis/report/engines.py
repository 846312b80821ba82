"""The study's central comparison: vLLM over HF, each at its own best batch size, per setting
measured with both; and the engines figures of `infpop figures` (both engines over batch size)."""

from __future__ import annotations

import pandas as pd

from infpop_analysis.engine_ratio import engine_ratios, interval_text
from infpop_analysis.formatting import esc, table_html
from infpop_analysis.report.html import png
from infpop_analysis.report.sources import Sources
from infpop_analysis.stats import BASE, FAST

KEY, HEADING = "engines", "Engines: vLLM against HF"


def render(df: pd.DataFrame, src: Sources, tokens: int) -> str:
    num, den, figures = FAST, BASE, src.figures
    ratios = engine_ratios(df, num, den)
    if ratios.empty:
        return (
            f"<p class='missing'>No setting has ok offline results for both {esc(num)} and {esc(den)}; "
            f"the manifest's <code>engines: [{esc(den)}, {esc(num)}]</code> measures both.</p>"
        )
    shown = pd.DataFrame(
        {
            "hardware": ratios["hardware"],
            "model": ratios["model"],
            "GPUs": ratios["n_gpus"],
            "new tokens": ratios["max_new_tokens"],
            f"{num} best batch": ratios[f"batch_size_{num}"],
            f"{num} tokens/s (median)": ratios[f"throughput_{num}"],
            f"{den} best batch": ratios[f"batch_size_{den}"],
            f"{den} tokens/s (median)": ratios[f"throughput_{den}"],
            f"{num}/{den}": ratios["ratio"],
            "interval": [interval_text(r) for r in ratios.itertuples()],
            "repetitions": [f"{a}/{b}" for a, b in zip(ratios[f"n_{num}"], ratios[f"n_{den}"])],
        }
    )
    sentence = (
        f"{num}'s throughput over {den}'s, each engine at the batch size where its median throughput is highest "
        "(offline trials, ok runs). The interval resamples each engine's repetitions there; it leaves out the "
        "choice of the best batch size, so it is too narrow where two batch sizes are close."
    )
    parts = [f"<p>{esc(sentence)}</p>", table_html(shown.sort_values(["hardware", "model", "GPUs"]), max_rows=500)]
    pngs = sorted((figures / "engines").glob("*.png")) if figures.is_dir() else []
    if pngs:
        parts.append("<p>Both engines over batch size, one figure per (hardware, model, GPU count).</p>")
        parts += [png(p, f"engines: {p.stem}") for p in pngs]
    return "".join(parts)
