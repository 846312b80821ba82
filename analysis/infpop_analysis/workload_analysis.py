"""The workload study's analyses: latency against request rate per workload (and GPU memory
share), and throughput by workload, the comparison behind its "workload choice moves
throughput by about 3x".

Only valid runs (MLPerf LoadGen's rule, recorded per result) enter a figure or a comparison;
the tables keep every finished run with its ``valid`` flag, so nothing invalid is reported as if
it were valid and nothing is silently dropped. Repetitions are summarised by their median.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from infpop.atomic import atomic_file, output_folder  # noqa: E402

from infpop_analysis.table import path_name  # noqa: E402

#: A serving setting whose curve is one figure: everything but workload, memory and rate.
SETTING = ["hardware", "engine", "model", "n_gpus", "batch_size", "max_new_tokens", "output_length"]
MEASURES = [
    "latency_p50_s",
    "latency_p90_s",
    "latency_p99_s",
    "ttft_p50_s",
    "latency_per_token_p50_s",
    "latency_per_token_p90_s",
    "latency_per_token_p99_s",
    "request_throughput",
    "throughput",
    "goodput",
]


def latency_vs_rate(df: pd.DataFrame) -> pd.DataFrame:
    """Online runs that finished: median measures per (setting, workload, memory, rate), and
    whether every repetition was valid."""
    online = df[(df["scenario"] == "online") & (df["status"] == "ok")]
    keys = SETTING + ["workload", "gpu_memory_utilization", "request_rate"]
    grouped = online.groupby(keys, dropna=False, sort=True)
    out = grouped[MEASURES].median()
    out["valid"] = grouped["valid"].agg(lambda v: bool(v.fillna(False).all()))
    out["repetitions"] = grouped.size()
    return out.reset_index()


def throughput_by_workload(df: pd.DataFrame) -> pd.DataFrame:
    """Best valid throughput (tokens/s, median over repetitions, best over batch sizes and
    rates) per setting and workload, one column per workload, and the spread best/worst."""
    ok = df[(df["status"] == "ok") & df["valid"].fillna(False).astype(bool) & df["throughput"].notna()]
    keys = ["hardware", "engine", "model", "n_gpus", "scenario", "output_length", "gpu_memory_utilization"]
    runs = ok.groupby(keys + ["workload", "batch_size", "max_new_tokens", "request_rate"], dropna=False)["throughput"]
    best = runs.median().groupby(level=keys + ["workload"], dropna=False).max()
    table = best.unstack("workload")
    table.columns.name = None
    workloads = list(table.columns)
    table["best/worst"] = table[workloads].max(axis=1) / table[workloads].min(axis=1)
    return table.reset_index()


def draw_latency_vs_rate(curves: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One figure per serving setting: normalised latency (p50 latency per output token, as
    the workload study plots it) against request rate, a line per workload and memory share."""
    paths = []
    for setting, part in curves[curves["valid"]].groupby(SETTING, dropna=False):
        fig, ax = plt.subplots(figsize=(6, 4))
        for (workload, memory), line in part.groupby(["workload", "gpu_memory_utilization"], dropna=False):
            label = workload if pd.isna(memory) else f"{workload}, gpu mem {memory:g}"
            ax.plot(line["request_rate"], line["latency_per_token_p50_s"], marker="o", label=label)
        ax.set_xlabel("request rate (requests/s)")
        ax.set_ylabel("latency per output token, p50 (s)")
        ax.set_yscale("log")
        hw, engine, model, n, b, t, length = setting
        ax.set_title(f"{model} / {engine} / {hw} x{n}, batch {b}, {t} tokens ({length})", fontsize=9)
        ax.legend(fontsize=8)
        path = out_dir / f"{path_name(f'latency_vs_rate_{hw}_{engine}_{model}_g{n}_b{b}_t{t}_{length}')}.png"
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
        plt.close(fig)
        paths.append(path)
    return paths


def write_workload_report(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """The tables (CSV) and figures of the workload study, into ``out_dir``."""
    out_dir = Path(out_dir)
    curves = latency_vs_rate(df)
    paths = []
    with output_folder(out_dir, "infpop workloads"):
        for name, table in (
            ("latency_vs_rate.csv", curves),
            ("throughput_by_workload.csv", throughput_by_workload(df)),
        ):
            with atomic_file(out_dir / name) as tmp:
                table.to_csv(tmp, index=False)
            paths.append(out_dir / name)
        return paths + draw_latency_vs_rate(curves, out_dir)
