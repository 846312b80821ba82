"""Energy and the physical bound: joules per token across the landscape, how close each
configuration comes to its roofline, and the Pareto fronts with their knees (offline: throughput
against energy per token; online: per-user against per-GPU throughput)."""

from __future__ import annotations

import pandas as pd

from infpop_analysis import layout
from infpop_analysis.formatting import esc, table_html
from infpop_analysis.pareto import front, knee
from infpop_analysis.report.html import plotly_div
from infpop_analysis.report.sources import Sources
from infpop_analysis.summaries import config_summaries
from infpop_analysis.table import config_axes, read_csv

KEY, HEADING = "efficiency", "Energy and the physical bound"
SEARCHED = ("n_gpus", "batch_size")
SHOWN = ("mean", "roofline_fraction", "bound_by", "energy_j_per_token", "tokens_per_s_per_w", "energy_parts")


def _landscapes(configs: pd.DataFrame, axes: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """Configurations grouped by every axis but those a search varies."""
    keys = [a for a in axes if a not in SEARCHED and a in configs]
    return list(configs.groupby(keys, dropna=False, sort=True)) if keys else [((), configs)]


def _front_html(rows: pd.DataFrame, x: str, y: str, less: bool, name: str, div: str) -> str:
    import plotly.graph_objects as go

    best = front(rows, more=x, less=y) if less else front(rows, more=x, more2=y)
    bend = knee(best, x, y)
    label = [f"g{g} b{b}" for g, b in zip(rows["n_gpus"], rows["batch_size"])]
    fig = go.Figure(go.Scatter(x=rows[x], y=rows[y], mode="markers", name="configurations", text=label))
    fig.add_trace(go.Scatter(x=best[x], y=best[y], mode="lines+markers", name="Pareto front"))
    if bend is not None:
        fig.add_trace(
            go.Scatter(x=[best.loc[bend, x]], y=[best.loc[bend, y]], mode="markers", name="knee", marker_size=14)
        )
    fig.update_layout(title=dict(text=name), xaxis_title=x, yaxis_title=y, height=380)
    where = "" if bend is None else f" Knee: g{best.loc[bend, 'n_gpus']} b{best.loc[bend, 'batch_size']}."
    return plotly_div(fig, div) + f"<p>{esc(f'{len(best)} configurations on the front.{where}')}</p>"


def _online(df: pd.DataFrame, axes: list[str]) -> list[str]:
    """Per-user (1 / p50 time per output token) against per-GPU throughput, per configuration."""
    if "scenario" not in df or "tpot_p50_s" not in df:
        return []
    on = df[(df["scenario"] == "online") & (df["status"] == "ok")].dropna(subset=["tpot_p50_s", "throughput"])
    if on.empty:
        return []
    on = on.assign(per_user=1 / on["tpot_p50_s"], per_gpu=on["throughput"] / on["n_gpus"])
    keys = [a for a in axes if a in on]
    per = on.groupby(keys, dropna=False)[["per_user", "per_gpu"]].median().reset_index()
    parts = ["<h3>Online: per-user against per-GPU throughput</h3>"]
    for k, (name, rows) in enumerate(_landscapes(per, axes)):
        title = " / ".join(str(v) for v in (name if isinstance(name, tuple) else (name,)) if pd.notna(v))
        parts.append(_front_html(rows, "per_gpu", "per_user", False, title, f"online-front-{k}"))
    return parts


def render(df: pd.DataFrame, src: Sources, tokens: int) -> str:
    path = src.stats / layout.CONFIGS
    configs = read_csv(path) if path.exists() else config_summaries(df)
    if "max_new_tokens" in configs:
        configs = configs[configs["max_new_tokens"] == tokens]
    axes = [a for a in config_axes(df) if a in configs]
    has = {c: c in configs and configs[c].notna().any() for c in SHOWN}
    if not (has["roofline_fraction"] or has["energy_j_per_token"]):
        return (
            "<p class='missing'>No trial recorded a bound or its energy (results from before they were kept, or "
            "published data, which has neither).</p>"
        )
    parts = [
        "<p>"
        + esc(
            f"At {tokens} new tokens. roofline_fraction: measured throughput over the configuration's physical bound "
            "(the model's FLOPs and bytes per token against the hardware's datasheet peak; bound_by names the resource "
            "that sets it); energy_j_per_token: joules of the GPUs (NVML) or CPU packages (RAPL) during the timed loop "
            "over the tokens generated, medians over repetitions. Missing means not measured, never zero."
        )
        + "</p>"
    ]
    if not has["energy_j_per_token"]:
        parts.append(
            "<p class='missing'>Energy was not measured here: no NVIDIA GPU through NVML and no readable RAPL "
            "counters (see each result's <code>unmeasured</code>).</p>"
        )
    cols = [c for c in (*axes, *SHOWN) if c in configs and (c in axes or has.get(c, False))]
    parts.append(table_html(configs[cols].sort_values(axes), 3, max_rows=500))
    if has["energy_j_per_token"]:
        parts.append("<h3>Offline: throughput against energy per token</h3>")
        offline = configs[configs["scenario"] != "online"] if "scenario" in configs else configs
        measured = offline.dropna(subset=["mean", "energy_j_per_token"])
        for k, (name, rows) in enumerate(_landscapes(measured, axes)):
            title = " / ".join(str(v) for v in (name if isinstance(name, tuple) else (name,)) if pd.notna(v))
            parts.append(_front_html(rows, "mean", "energy_j_per_token", True, title, f"energy-front-{k}"))
    parts += _online(df, config_axes(df))
    return "".join(parts)
