"""Figures from the tidy table.

Each cell is one throughput (the median of its non-missing throughputs, as the statistics use
it). A cell never measured is a gap; an OOM cell is marked as OOM: drawn at its partial
throughput when the run left one, else as a red cross at the foot of the plot. Nothing missing
is ever drawn as zero.

Kinds (``draw_all(kinds=...)``, ``infpop figures --only``):
- ``landscape``: per (hardware, engine, model) a 3-D surface over batch size x GPU count, as PNG,
  one multi-page PDF per (hardware, engine), and one self-contained interactive HTML per
  (hardware, engine) with a model selector;
- ``gpu_scaling``: throughput vs GPU count at batch 1, one line per model;
- ``batch_size``: throughput vs batch size per GPU count, one line per model;
- ``hardware``: A100 vs V100 throughput of the cells measured on both;
- ``engines``: throughput vs batch size, one line per engine, per (hardware, model, GPU count)
  measured with several engines (the demo's vLLM vs HF).
Each 2-D figure has a linear and a log-scale panel side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from infpop.errors import InputError  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from infpop_analysis.stats import CELL, NEW_HW, OLD_HW, choose_tokens  # noqa: E402

KINDS = ("landscape", "gpu_scaling", "batch_size", "hardware", "engines")
OOM_STATUSES = ("oom", "skipped_oom")
OOM_COLOR = "tab:red"


def cell_table(df: pd.DataFrame, max_new_tokens: int) -> pd.DataFrame:
    """Per cell at ``max_new_tokens``: median non-missing throughput (NaN if none) and whether it hit OOM."""
    d = df[df["max_new_tokens"] == max_new_tokens]
    out = d.groupby(CELL, observed=True).agg(
        throughput=("throughput", "median"), oom=("status", lambda s: bool(s.isin(OOM_STATUSES).any()))
    )
    return out.reset_index().astype({"hardware": str, "engine": str, "model": str, "n_gpus": int, "batch_size": int})


def landscape_grid(cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """GPU count x batch size grids of throughput (NaN where none) and of OOM flags, for one model."""
    thp = cells.pivot_table(index="n_gpus", columns="batch_size", values="throughput", aggfunc="first", dropna=False)
    oom = cells.pivot_table(index="n_gpus", columns="batch_size", values="oom", aggfunc="any", dropna=False)
    rows, cols = sorted(cells["n_gpus"].unique()), sorted(cells["batch_size"].unique())
    return thp.reindex(index=rows, columns=cols), oom.reindex(index=rows, columns=cols).fillna(False).astype(bool)


def _save(fig: plt.Figure, out: Path) -> Path:
    """Save at a fixed layout: "tight" bounding boxes would draw every figure twice."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def landscape_figure(cells: pd.DataFrame, title: str) -> plt.Figure:
    """3-D surface of one (hardware, engine, model); axes are grid positions labelled with values."""
    thp, oom = landscape_grid(cells)
    Z = thp.to_numpy(dtype=float)
    X, Y = np.meshgrid(np.arange(Z.shape[1]), np.arange(Z.shape[0]))
    fig = plt.figure(figsize=(7, 5.5))
    ax = fig.add_subplot(projection="3d")
    fig.subplots_adjust(left=0, right=0.95, bottom=0.02, top=0.95)
    if Z.shape[0] > 1 and Z.shape[1] > 1 and np.isfinite(Z).sum() >= 3:
        ax.plot_surface(X, Y, np.ma.masked_invalid(Z), cmap="viridis", edgecolor="k", linewidth=0.3, alpha=0.85)
    ok = np.isfinite(Z) & ~oom.to_numpy()
    partial = np.isfinite(Z) & oom.to_numpy()
    none = ~np.isfinite(Z) & oom.to_numpy()
    ax.scatter(X[ok], Y[ok], Z[ok], color="k", s=10, label="measured")
    if partial.any():
        ax.scatter(X[partial], Y[partial], Z[partial], color=OOM_COLOR, s=18, label="OOM (partial throughput)")
    if none.any():
        ax.scatter(
            X[none], Y[none], np.zeros(none.sum()), color=OOM_COLOR, marker="x", s=25, label="OOM, no throughput (foot)"
        )
    ax.set_xticks(range(Z.shape[1]), [str(b) for b in thp.columns], fontsize=7)
    ax.set_yticks(range(Z.shape[0]), [str(g) for g in thp.index])
    ax.set_xlabel("batch size")
    ax.set_ylabel("GPUs")
    ax.set_zlabel("tokens/s")
    ax.set_zlim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=7)
    return fig


def landscape_html(cells: pd.DataFrame, title: str, out: Path) -> Path:
    """One self-contained interactive HTML for a (hardware, engine): a surface per model, chosen from a menu."""
    import plotly.graph_objects as go

    fig = go.Figure()
    buttons, n_traces = [], []
    models = sorted(cells["model"].unique())
    for model in models:
        thp, oom = landscape_grid(cells[cells["model"] == model])
        xs, ys = [str(b) for b in thp.columns], [str(g) for g in thp.index]
        Z = thp.to_numpy(dtype=float)
        visible = model == models[0]
        fig.add_trace(go.Surface(x=xs, y=ys, z=Z, colorscale="Viridis", visible=visible, name=model,
                                 colorbar=dict(title="tokens/s")))  # fmt: skip
        gi, bi = np.nonzero(oom.to_numpy())
        fig.add_trace(
            go.Scatter3d(
                x=[xs[j] for j in bi],
                y=[ys[i] for i in gi],
                z=[0 if np.isnan(Z[i, j]) else Z[i, j] for i, j in zip(gi, bi)],
                mode="markers",
                marker=dict(color="red", symbol="x", size=4),
                name="OOM",
                visible=visible,
            )  # fmt: skip
        )
        n_traces.append(2)
    for k, model in enumerate(models):
        mask = [m == k for m, n in enumerate(n_traces) for _ in range(n)]
        buttons.append(dict(label=model, method="update", args=[{"visible": mask}, {"title": f"{title}: {model}"}]))
    fig.update_layout(
        title=f"{title}: {models[0]}",
        scene=dict(
            xaxis_title="batch size",
            yaxis_title="GPUs",
            zaxis_title="tokens/s",
            xaxis_type="category",
            yaxis_type="category",
        ),
        updatemenus=[dict(buttons=buttons, direction="down", x=0, y=1.1, xanchor="left")],
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(out, include_plotlyjs=True, full_html=True)
    return out


def _oom_marks(ax: plt.Axes, xs: Iterable, color: str) -> None:
    """OOM cells without throughput: crosses at the foot of the axes (axes fraction), not at y = 0."""
    xs = list(xs)
    if xs:
        trans = blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter(xs, [0.02] * len(xs), transform=trans, marker="x", color=color, s=30, clip_on=False)


def lines_figure(cells: pd.DataFrame, x: str, title: str) -> plt.Figure:
    """Throughput vs ``x`` (n_gpus or batch_size), one line per model, on a linear and a log
    panel; gaps where missing."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    fig.subplots_adjust(left=0.06, right=0.83, top=0.88, bottom=0.12, wspace=0.22)
    positions = {v: i for i, v in enumerate(sorted(cells[x].unique()))}
    colors = plt.get_cmap("tab20")
    for ax, log in zip(axes, (False, True)):
        for k, (model, part) in enumerate(cells.groupby("model")):
            part = part.set_index(x).reindex(list(positions))
            color = colors(k % 20)
            ax.plot(list(positions.values()), part["throughput"], marker="o", ms=3, color=color, label=model)
            no_thp = part["oom"].astype("boolean").fillna(False) & part["throughput"].isna()
            _oom_marks(ax, [positions[v] for v in no_thp[no_thp].index], color)
        ax.set_xticks(list(positions.values()), [str(v) for v in positions])
        ax.set_xlabel({"n_gpus": "GPUs", "batch_size": "batch size"}[x])
        ax.set_ylabel("tokens/s" + (" (log scale)" if log else ""))
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    note = "  (x at the foot: OOM, no throughput)" if cells["oom"].any() else ""
    fig.suptitle(title + note, fontsize=11)
    axes[1].legend(fontsize=7, ncol=1, bbox_to_anchor=(1.02, 1), loc="upper left")
    return fig


def hardware_figure(pairs: pd.DataFrame, engine: str) -> plt.Figure:
    """Throughput on the newer vs the older GPU for every cell measured on both (linear and log-log
    panels); y = x for reference."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.4))
    fig.subplots_adjust(left=0.06, right=0.83, top=0.9, bottom=0.1, wspace=0.22)
    colors = plt.get_cmap("tab20")
    values = pairs[[NEW_HW, OLD_HW]].to_numpy()
    for ax, log in zip(axes, (False, True)):
        for k, (model, part) in enumerate(pairs.groupby("model")):
            ax.scatter(part[OLD_HW], part[NEW_HW], s=10, color=colors(k % 20), label=model)
        lo = float(np.nanmin(values[values > 0])) if log else 0.0
        hi = float(np.nanmax(values))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label="equal throughput")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"{OLD_HW.upper()} tokens/s")
        ax.set_ylabel(f"{NEW_HW.upper()} tokens/s")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{engine}: {NEW_HW.upper()} vs {OLD_HW.upper()}, same (model, GPUs, batch size)", fontsize=11)
    axes[1].legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    return fig


def _draw_lines(c: pd.DataFrame, out_dir: Path) -> list[Path]:
    paths = []
    for (hw, engine), part in c[c["batch_size"] == 1].groupby(["hardware", "engine"]):
        fig = lines_figure(part, "n_gpus", f"{engine} on {hw}: throughput vs GPU count at batch size 1")
        paths.append(_save(fig, out_dir / "gpu_scaling" / f"{hw}_{engine}.png"))
        plt.close(fig)
    return paths


def _draw_batches(c: pd.DataFrame, out_dir: Path) -> list[Path]:
    paths = []
    for (hw, engine, g), part in c.groupby(["hardware", "engine", "n_gpus"]):
        fig = lines_figure(part, "batch_size", f"{engine} on {hw}: throughput vs batch size with {g} GPU(s)")
        paths.append(_save(fig, out_dir / "batch_size" / f"{hw}_{engine}_g{g}.png"))
        plt.close(fig)
    return paths


def _draw_hardware(c: pd.DataFrame, out_dir: Path) -> list[Path]:
    s = c.set_index(CELL)["throughput"]
    if not {NEW_HW, OLD_HW} <= set(c["hardware"]):
        return []
    pairs = pd.concat([s.xs(NEW_HW).rename(NEW_HW), s.xs(OLD_HW).rename(OLD_HW)], axis=1, join="inner").dropna()
    paths = []
    for engine, part in pairs.reset_index().groupby("engine"):
        fig = hardware_figure(part, engine)
        paths.append(_save(fig, out_dir / "hardware" / f"{engine}.png"))
        plt.close(fig)
    return paths


def _draw_engines(c: pd.DataFrame, out_dir: Path) -> list[Path]:
    paths = []
    for (hw, model, g), part in c.groupby(["hardware", "model", "n_gpus"]):
        if part["engine"].nunique() > 1:
            title = f"{model} on {hw} with {g} GPU(s): throughput vs batch size per engine"
            fig = lines_figure(part.assign(model=part["engine"]), "batch_size", title)  # a line per engine
            paths.append(_save(fig, out_dir / "engines" / f"{hw}_{model}_g{g}.png"))
    return paths


def _draw_landscapes(c: pd.DataFrame, out_dir: Path, tokens: int, hw: str, engine: str) -> list[Path]:
    """PNG per model, a multi-page PDF and an interactive HTML, for the cells ``c`` of one (hardware, engine)."""
    paths = []
    pdf_path = out_dir / "landscapes" / f"{hw}_{engine}.pdf"
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    with PdfPages(pdf_path) as pdf:
        for model, cells in c.groupby("model"):
            fig = landscape_figure(cells, f"{model} / {engine} / {hw} / {tokens} new tokens")
            paths.append(_save(fig, out_dir / "landscapes" / f"{hw}_{engine}_{model}.png"))
            pdf.savefig(fig)
            plt.close(fig)
    paths.append(pdf_path)
    paths.append(
        landscape_html(c, f"{engine} on {hw}, {tokens} new tokens", out_dir / "interactive" / f"{hw}_{engine}.html")
    )
    return paths


def _tasks(c: pd.DataFrame, out_dir: Path, kinds: Iterable[str], tokens: int) -> list[tuple[Callable, tuple]]:
    """Independent drawing jobs, the longest (landscapes per hardware and engine) first."""
    tasks: list[tuple[Callable, tuple]] = []
    if "landscape" in kinds:
        tasks += [
            (_draw_landscapes, (part, out_dir, tokens, hw, e)) for (hw, e), part in c.groupby(["hardware", "engine"])
        ]
    if "batch_size" in kinds:
        tasks += [(_draw_batches, (part, out_dir)) for _, part in c.groupby("hardware")]
    if "gpu_scaling" in kinds:
        tasks.append((_draw_lines, (c, out_dir)))
    if "hardware" in kinds:
        tasks.append((_draw_hardware, (c, out_dir)))
    if "engines" in kinds:
        tasks.append((_draw_engines, (c, out_dir)))
    return tasks


def _run(task: tuple[Callable, tuple]) -> list[Path]:
    fn, args = task
    return fn(*args)


def draw_all(
    df: pd.DataFrame,
    out_dir: str | Path,
    kinds: Iterable[str] = KINDS,
    max_new_tokens: int | None = None,
    workers: int = 1,
) -> list[Path]:
    """Draw the chosen kinds of figure for one max_new_tokens (default as the statistics choose
    it); with ``workers`` > 1 the independent jobs run in that many processes."""
    kinds = list(kinds)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise InputError(f"unknown figure kind {unknown[0]!r}; known: {', '.join(KINDS)}")
    tokens = choose_tokens(df, max_new_tokens)
    tasks = _tasks(cell_table(df, tokens), Path(out_dir), kinds, tokens)
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(min(workers, len(tasks))) as pool:
            results = list(pool.map(_run, tasks))
    else:
        results = [_run(t) for t in tasks]
    return [p for paths in results for p in paths]
