"""Online serving: latency against request rate per workload (the workload analysis's curves,
drawn here as plotly traces), and throughput by workload."""

from __future__ import annotations

import pandas as pd

from infpop_analysis.formatting import esc, table_html
from infpop_analysis.report.html import plotly_div, unique
from infpop_analysis.report.sources import Sources
from infpop_analysis.workload_analysis import SETTING, latency_vs_rate, throughput_by_workload

KEY, HEADING = "online", "Online serving: latency against request rate"


def render(df: pd.DataFrame, src: Sources, tokens: int) -> str:
    if "scenario" not in df or not (df["scenario"] == "online").any():
        return "<p class='missing'>No online trials in this study (a manifest's <code>scenario: {kind: online}</code> runs them).</p>"
    import plotly.graph_objects as go

    curves = latency_vs_rate(df)
    parts = [
        "<p>p50 latency per output token against the request rate, one line per workload (and GPU memory share), "
        "for each serving setting; only valid runs (long and large enough) are drawn, invalid ones are listed below.</p>"
    ]
    for k, (setting, part) in enumerate(curves.groupby(SETTING, dropna=False)):
        hw, engine, model, n, b, t, length = setting
        fig = go.Figure()
        for (workload, memory), line in part[part["valid"]].groupby(
            ["workload", "gpu_memory_utilization"], dropna=False
        ):
            label = str(workload) if pd.isna(memory) else f"{workload}, gpu mem {memory:g}"
            fig.add_trace(
                go.Scatter(x=line["request_rate"], y=line["latency_per_token_p50_s"], mode="lines+markers", name=label)
            )
        fig.update_layout(
            title=dict(text=f"{model} / {engine} / {hw} x{n}, batch {b}, {t} tokens ({length})"),
            xaxis_title="request rate (requests/s)",
            yaxis=dict(title=dict(text="latency per output token, p50 (s)"), type="log"),
            height=420,
            showlegend=True,
        )
        parts.append(plotly_div(fig, f"online-{k}"))
        invalid = part[~part["valid"]]
        if len(invalid):
            parts.append(
                f"<p class='note'>Invalid runs not drawn: {len(invalid)} (rates {esc(unique(invalid['request_rate']))}).</p>"
            )
    parts.append(
        "<h3>Throughput by workload</h3><p>Best valid throughput (tokens/s) per setting and workload, and the ratio of the best workload to the worst.</p>"
    )
    parts.append(table_html(throughput_by_workload(df)))
    return "".join(parts)
