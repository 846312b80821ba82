"""The best configuration per (model, engine, hardware) at the analysed max_new_tokens (the
landscapes' slice), with its interval: from the configs.csv `infpop stats` wrote, else from the
same per-configuration summaries computed from the table."""

from __future__ import annotations

import pandas as pd

from infpop_analysis import layout
from infpop_analysis.formatting import esc, table_html
from infpop_analysis.report.sources import Sources
from infpop_analysis.summaries import STOP_REASONS, config_summaries
from infpop_analysis.table import read_csv

KEY, HEADING = "best", "Best configuration per model, engine and hardware"
GROUP = ["hardware", "engine", "model"]


def render(df: pd.DataFrame, src: Sources, tokens: int) -> str:
    path = src.stats / layout.CONFIGS
    if path.exists():
        configs, origin = read_csv(path), path.name
    else:
        configs = config_summaries(df)
        origin = f"the table (no {layout.CONFIGS} of `infpop stats` was found; these are its summaries)"
    if "max_new_tokens" in configs:
        configs = configs[configs["max_new_tokens"] == tokens]
    if "mean" not in configs or not configs["mean"].notna().any():
        return "<p class='missing'>No run finished ok with a throughput.</p>"
    keys = [k for k in GROUP if k in configs]
    best = configs.loc[configs.dropna(subset=["mean"]).groupby(keys)["mean"].idxmax()].reset_index(drop=True)
    method = "percentile-bootstrap"  # what configs.csv gave before it had a ci_method column
    if "ci_method" in best and best["ci_method"].notna().any():
        method = best["ci_method"].dropna().iloc[0]
    if {"ci_low", "ci_high"} <= set(best.columns):
        best["95% CI"] = [
            "–" if pd.isna(lo) else f"[{lo:,.2f}, {hi:,.2f}]" for lo, hi in zip(best["ci_low"], best["ci_high"])
        ]
    shown = [
        col
        for col in best.columns
        if col not in ("ci_low", "ci_high", "ci_level", "ci_method") and not col.startswith("latency_")
    ]
    sentence = (
        f"From {origin}, at {tokens} new tokens: per (hardware, engine, model) the configuration with the "
        "highest mean throughput "
        f"(tokens/s) over its repetitions, with the 95% {method} interval of the mean where it has two or more; "
        "`noisy` marks a coefficient of variation above the stats threshold."
    )
    if "stop_reason" in best:
        sentence += f" {stopping_sentence()}"
    return f"<p>{esc(sentence)}</p>" + table_html(best[shown].sort_values(keys), max_rows=500)


def stopping_sentence() -> str:
    """What configs.csv's ``repetitions`` and ``stop_reason`` mean, each reason spelled out."""
    reasons = "; ".join(f"{name}: {why}" for name, why in STOP_REASONS.items())
    return f"`repetitions` counts the repetitions that ran and `stop_reason` says why no more did ({reasons})."
