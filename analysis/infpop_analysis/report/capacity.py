"""Serving capacity under a latency SLO: each search's p99 latencies against the rates it tried,
with the SLO's targets and the capacity marked; the capacity per GPU over the configuration
grid; and the configuration that serves most per GPU (:mod:`infpop.capacity`)."""

from __future__ import annotations

import pandas as pd

from infpop_analysis.capacity import MEASURES
from infpop_analysis.formatting import esc, table_html
from infpop_analysis.report.html import plotly_div
from infpop_analysis.report.sources import Sources

KEY, HEADING = "capacity", "Serving capacity under a latency SLO"

#: What names a configuration in this section's tables.
SETTING = ["hardware", "engine", "model", "n_gpus", "batch_size", "max_new_tokens", "workload"]


def render(df: pd.DataFrame, src: Sources, tokens: int) -> str:
    if "capacity_stopped" not in df or df["capacity_stopped"].isna().all():
        return (
            "<p class='missing'>No capacity searches in this study (a manifest's "
            "<code>scenario: {kind: online, slo: ..., capacity: ...}</code> runs them).</p>"
        )
    runs = df[df["capacity_stopped"].notna()]
    grid = (
        runs.groupby(SETTING, dropna=False)
        .agg(
            runs=("capacity_stopped", "size"),
            capacity_rps=("capacity_rps", "median"),
            capacity_rps_per_gpu=("capacity_rps_per_gpu", "median"),
            capacity_tokens_s_per_gpu=("capacity_tokens_s_per_gpu", "median"),
            violated_rps=("capacity_violated_rps", "median"),
            stopped=("capacity_stopped", lambda s: ", ".join(sorted(set(s)))),
        )
        .reset_index()
    )
    parts = [
        "<p>For each configuration, the highest request rate (requests/s) whose p99 latencies met the SLO, "
        "found by bisection inside one loaded engine: <em>capacity</em> met the SLO, <em>violated</em> (at most one "
        "tolerance above it) did not. Medians over repetitions; a search that stopped without a bracket says so "
        "(<code>met_at_max_rate</code>: the capacity is a lower bound; <code>violated_at_min_rate</code>: none).</p>",
        _best(grid),
        "<h3>Capacity over the configuration grid</h3>",
        _grid_figure(grid),
        table_html(grid.sort_values("capacity_rps_per_gpu", ascending=False, na_position="last")),
        "<h3>Latency against request rate</h3>",
        _probe_figures(src),
    ]
    return "".join(parts)


def _best(grid: pd.DataFrame) -> str:
    found = grid.dropna(subset=["capacity_rps_per_gpu"])
    if found.empty:
        return "<p class='note'>No configuration met the SLO at its min_rate.</p>"
    top = found.loc[found["capacity_rps_per_gpu"].idxmax()]
    bound = " (a lower bound: the SLO held at max_rate)" if "met_at_max_rate" in top["stopped"] else ""
    name = f"{top['model']} / {top['engine']} / {top['hardware']} x{top['n_gpus']}, batch {top['batch_size']}, {top['max_new_tokens']} tokens"
    return (
        f"<p><strong>Serves most per GPU:</strong> {esc(name)}: {top['capacity_rps_per_gpu']:.3g} requests/s per GPU"
        f" ({top['capacity_tokens_s_per_gpu']:.3g} generated tokens/s per GPU){esc(bound)}.</p>"
    )


def _grid_figure(grid: pd.DataFrame) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for key, line in grid.groupby(
        ["hardware", "engine", "model", "n_gpus", "max_new_tokens", "workload"], dropna=False
    ):
        hw, engine, model, n, t, workload = key
        fig.add_trace(
            go.Scatter(
                x=line["batch_size"],
                y=line["capacity_rps_per_gpu"],
                mode="lines+markers",
                name=f"{model} / {engine} / {hw} x{n}, {t} tokens, {workload}",
            )
        )
    fig.update_layout(
        xaxis=dict(title=dict(text="batch size (concurrency cap)"), type="log"),
        yaxis_title="capacity per GPU (requests/s)",
        height=380,
        showlegend=True,
    )
    return plotly_div(fig, "capacity-grid")


def _probe_figures(src: Sources) -> str:
    if not src.probes.is_file():
        return f"<p class='missing'>No probes table ({esc(src.probes.name)}, written by <code>infpop aggregate</code>).</p>"
    import plotly.graph_objects as go

    probes = pd.read_csv(src.probes)
    parts = [
        "<p>p99 latencies of every rate each search tried (filled: met the SLO; open: failed it), the SLO's "
        "targets as dashed lines of the same colour, the capacity as a vertical line.</p>"
    ]
    colours = {"ttft": "#1f77b4", "tpot": "#2ca02c", "e2e": "#d62728"}
    for k, (trial_id, search) in enumerate(probes.groupby("trial_id", sort=True)):
        search = search.sort_values("rate")
        fig = go.Figure()
        for name, _ in MEASURES:
            column = f"{name}_p99_s"
            if search[column].isna().all():
                continue
            fig.add_trace(
                go.Scatter(
                    x=search["rate"],
                    y=search[column],
                    mode="lines+markers",
                    name=f"{name} p99",
                    line=dict(color=colours[name]),
                    marker=dict(symbol=["circle" if m else "circle-open" for m in search["met"]], size=9),
                )
            )
            target = search[f"slo_{name}_p99_s"].iloc[0]
            if pd.notna(target):
                fig.add_hline(y=target, line=dict(color=colours[name], dash="dash"), annotation_text=f"SLO {name}")
        capacity = search["capacity_rps"].iloc[0]
        if pd.notna(capacity):
            fig.add_vline(x=capacity, line=dict(color="black"), annotation_text=f"capacity {capacity:.3g}/s")
        fig.update_layout(
            title=dict(text=f"{trial_id} ({search['stopped'].iloc[0]})"),
            xaxis_title="request rate (requests/s)",
            yaxis=dict(title=dict(text="p99 latency (s)"), type="log"),
            height=400,
        )
        parts.append(plotly_div(fig, f"capacity-{k}"))
    return "".join(parts)
