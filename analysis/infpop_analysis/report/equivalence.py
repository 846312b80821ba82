"""Output equivalence beside throughput: does each configuration generate what its reference
generates, and does the fastest one? From the equivalence.csv `infpop stats` wrote, else computed
from the table the same way."""

from __future__ import annotations

import pandas as pd

from infpop_analysis import layout
from infpop_analysis.equivalence import COLUMNS, equivalence
from infpop_analysis.formatting import esc, table_html
from infpop_analysis.report.sources import Sources
from infpop_analysis.summaries import config_summaries
from infpop_analysis.table import read_csv

KEY, HEADING = "equivalence", "Output equivalence: the same text at every configuration?"


def _tables(df: pd.DataFrame, src: Sources) -> tuple[pd.DataFrame, pd.DataFrame]:
    eq_path, configs_path = src.stats / layout.EQUIVALENCE, src.stats / layout.CONFIGS
    eq = read_csv(eq_path) if eq_path.exists() else equivalence(df)
    configs = read_csv(configs_path) if configs_path.exists() else config_summaries(df)
    return eq, configs


def render(df: pd.DataFrame, src: Sources, tokens: int) -> str:
    eq, configs = _tables(df, src)
    if eq.empty or not eq["prompts"].gt(0).any():
        return (
            "<p class='missing'>No trial recorded the fingerprints of its outputs (results from before they "
            "were kept, or an engine that reports no token ids).</p>"
        )
    keys = [c for c in configs.columns if c in eq.columns and c not in ("trials",)]
    merged = eq.merge(configs[[*keys, "mean"]], on=keys, how="left") if "mean" in configs else eq.assign(mean=None)
    if "max_new_tokens" in merged:
        merged = merged[merged["max_new_tokens"] == tokens]
    same = merged[merged["against"] == "same engine"]
    flags = []
    # The fastest of each landscape: every axis but those a search varies (GPUs, batch size).
    landscape = [c for c in eq.columns if c not in COLUMNS and c not in ("n_gpus", "batch_size")]
    for _, rows in same.dropna(subset=["mean"]).groupby(landscape, dropna=False, sort=True):
        best = rows.loc[rows["mean"].idxmax()]
        if best["prompts"] > 0 and best["identical"] < 1:
            where = ", ".join(f"{k} {best[k]}" for k in (*landscape, "n_gpus", "batch_size") if pd.notna(best[k]))
            flags.append(
                f"The fastest configuration ({where}) generates different text from its reference "
                f"(g{best['reference_n_gpus']} b{best['reference_batch_size']}) for "
                f"{1 - best['identical']:.0%} of its prompts."
            )
    shown = [c for c in merged.columns if c not in ("reference_trial", "reference_engine")]
    sentence = (
        f"At {tokens} new tokens, each configuration's generated token ids, prompt by prompt, against its "
        "reference: the same engine's configuration with the fewest GPUs at the smallest batch ('same engine'; "
        "the reference's own later repetitions show run-to-run nondeterminism), and each engine's reference "
        "against the first engine's ('first engine'). identical: share of prompts with the same ids; "
        "identical_head: the same in the first `head` ids; first_divergence_mean: the mean position of the first "
        "differing token where the head shows it; mean: throughput (tokens/s)."
    )
    alert = "".join(f"<p class='missing'>{esc(f)}</p>" for f in flags) or (
        "<p>Every fastest configuration generates what its reference generates.</p>"
    )
    return f"<p>{esc(sentence)}</p>{alert}" + table_html(merged[shown], 3, max_rows=500)
