"""Figures from the tidy table.

Each cell is one throughput (the median of its non-missing throughputs, as the statistics use
it). An OOM cell is marked as OOM: drawn at its partial throughput when the run left one, else
as a red cross at the foot of the plot; a failed cell (error or timeout, no throughput) is a
black square at the foot; a landscape cell never measured is a gap with a hollow grey circle at
its foot. Nothing missing is ever drawn as zero: marks at the foot say what is missing there.

Kinds (``draw_all(kinds=...)``, ``infpop figures --only``):
- ``landscape``: per (hardware, engine, model) a 3-D surface over batch size x GPU count, as PNG,
  one multi-page PDF per (hardware, engine), and one interactive HTML per (hardware, engine)
  with a model selector, all reading the one ``plotly.min.js`` written beside them (offline);
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
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from infpop.atomic import atomic_file, output_folder, write_atomic  # noqa: E402
from infpop.errors import InputError  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from infpop_analysis.stats import CELL, NEW_HW, OLD_HW, choose_tokens  # noqa: E402
from infpop_analysis.table import path_name  # noqa: E402

KINDS = ("landscape", "gpu_scaling", "batch_size", "hardware", "engines")
OOM_STATUSES = ("oom", "skipped_oom")
FAILED_STATUSES = ("error", "timeout")
OOM_COLOR = "tab:red"
FAILED_COLOR = "black"
MISSING_COLOR = "grey"
#: The file every interactive landscape reads plotly.js from (written once per folder).
PLOTLY_JS = "plotly.min.js"


def cell_table(df: pd.DataFrame, max_new_tokens: int) -> pd.DataFrame:
    """Per cell at ``max_new_tokens``: median non-missing throughput (NaN if none), whether it hit
    OOM, and whether a run failed (error or timeout)."""
    d = df[df["max_new_tokens"] == max_new_tokens]
    d = d.assign(oom=d["status"].isin(OOM_STATUSES).astype(bool), failed=d["status"].isin(FAILED_STATUSES).astype(bool))
    out = d.groupby(CELL, observed=True).agg(
        throughput=("throughput", "median"), oom=("oom", "any"), failed=("failed", "any")
    )
    return out.reset_index().astype({"hardware": str, "engine": str, "model": str, "n_gpus": int, "batch_size": int})


def cell_states(thp: pd.DataFrame, oom: pd.DataFrame, failed: pd.DataFrame, measured: pd.DataFrame) -> np.ndarray:
    """Per grid cell: "ok", "oom" (with or without a partial throughput), "failed" (error or
    timeout, no throughput) or "missing" (never measured, or measured without a throughput)."""
    has = np.isfinite(thp.to_numpy(dtype=float))
    state = np.full(has.shape, "missing", dtype=object)
    state[has] = "ok"
    state[~has & failed.to_numpy() & measured.to_numpy()] = "failed"
    state[oom.to_numpy()] = "oom"
    return state


def landscape_grid(cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """GPU count x batch size grids of throughput (NaN where none) and of OOM flags, for one model."""
    rows, cols = sorted(cells["n_gpus"].unique()), sorted(cells["batch_size"].unique())
    thp = _grid(cells, "throughput", rows, cols).astype(float)
    return thp, _grid(cells, "oom", rows, cols).fillna(False).astype(bool)


def _grid(cells: pd.DataFrame, column: str, rows: list, cols: list) -> pd.DataFrame:
    """GPU count x batch size grid of one column of ``cells`` (one row per cell; NaN where none)."""
    at_row, at_col = {v: i for i, v in enumerate(rows)}, {v: j for j, v in enumerate(cols)}
    grid = np.full((len(rows), len(cols)), np.nan, dtype=object)
    for g, b, v in zip(cells["n_gpus"], cells["batch_size"], cells[column]):
        grid[at_row[g], at_col[b]] = v
    return pd.DataFrame(grid, index=pd.Index(rows, name="n_gpus"), columns=pd.Index(cols, name="batch_size"))


def landscape_states(cells: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Throughput grid of one model and the state of each grid cell (:func:`cell_states`)."""
    thp, oom = landscape_grid(cells)
    rows, cols = list(thp.index), list(thp.columns)
    failed = _grid(cells.assign(failed=cells.get("failed", False)), "failed", rows, cols).fillna(False).astype(bool)
    measured = _grid(cells.assign(measured=True), "measured", rows, cols).fillna(False).astype(bool)
    return thp, cell_states(thp, oom, failed, measured)


def _save(fig: plt.Figure, out: Path) -> Path:
    """Save at a fixed layout ("tight" bounding boxes would draw every figure twice), atomically."""
    with atomic_file(out) as tmp:
        fig.savefig(tmp, dpi=100, format=out.suffix[1:])
    return out


#: Marks at the foot of a plot for cells without a throughput: (state, matplotlib style, legend label).
FOOT_MARKS = (
    ("oom", dict(color=OOM_COLOR, marker="x", s=25), "OOM, no throughput (foot)"),
    ("failed", dict(color=FAILED_COLOR, marker="s", s=14), "failed, error or timeout (foot)"),
    ("missing", dict(facecolors="none", edgecolors=MISSING_COLOR, marker="o", s=16), "not measured (foot)"),
)


def landscape_figure(cells: pd.DataFrame, title: str) -> plt.Figure:
    """3-D surface of one (hardware, engine, model); axes are grid positions labelled with values."""
    thp, state = landscape_states(cells)
    Z = thp.to_numpy(dtype=float)
    X, Y = np.meshgrid(np.arange(Z.shape[1]), np.arange(Z.shape[0]))
    fig = plt.figure(figsize=(7, 5.5))
    ax = fig.add_subplot(projection="3d")
    fig.subplots_adjust(left=0, right=0.95, bottom=0.02, top=0.95)
    if Z.shape[0] > 1 and Z.shape[1] > 1 and np.isfinite(Z).sum() >= 3:
        ax.plot_surface(X, Y, np.ma.masked_invalid(Z), cmap="viridis", edgecolor="k", linewidth=0.3, alpha=0.85)
    ok = state == "ok"
    partial = np.isfinite(Z) & (state == "oom")
    ax.scatter(X[ok], Y[ok], Z[ok], color="k", s=10, label="measured")
    if partial.any():
        ax.scatter(X[partial], Y[partial], Z[partial], color=OOM_COLOR, s=18, label="OOM (partial throughput)")
    for name, style, label in FOOT_MARKS:
        at = ~np.isfinite(Z) & (state == name)
        if at.any():
            ax.scatter(X[at], Y[at], np.zeros(at.sum()), label=label, **style)
    ax.set_xticks(range(Z.shape[1]), [str(b) for b in thp.columns], fontsize=7)
    ax.set_yticks(range(Z.shape[0]), [str(g) for g in thp.index])
    ax.set_xlabel("batch size")
    ax.set_ylabel("GPUs")
    ax.set_zlabel("tokens/s")
    ax.set_zlim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=7)
    return fig


#: Plotly marks of the interactive landscape for cells not drawn on the surface: (state, whether
#: at its partial throughput, marker, legend name). gl3d draws symbols as glyphs, so only the
#: basic shapes every font has are used.
PLOTLY_MARKS = (
    ("oom", True, dict(color="red", symbol="circle", size=4), "OOM (partial throughput)"),
    ("oom", False, dict(color="red", symbol="diamond", size=5), "OOM, no throughput (floor)"),
    ("failed", False, dict(color="black", symbol="square", size=4), "failed, error or timeout (floor)"),
    ("missing", False, dict(color="grey", symbol="circle-open", size=4), "not measured (floor)"),
)


def landscape_plotly(cells: pd.DataFrame, title: str):
    """Interactive landscape of one (hardware, engine): a surface per model, chosen from a menu
    above the scene; cells without a throughput are marked on the floor by what they are."""
    import plotly.graph_objects as go

    fig = go.Figure()
    buttons, n_traces, ranges = [], [], []
    models = sorted(cells["model"].unique())
    measured = cells.groupby("model")["throughput"].count()
    first = next((m for m in models if measured[m] > 0), models[0])  # open on a model that has a surface
    for model in models:
        thp, state = landscape_states(cells[cells["model"] == model])
        xs, ys = [str(b) for b in thp.columns], [str(g) for g in thp.index]
        Z = thp.to_numpy(dtype=float)
        visible = model == first
        # The floor is 0 tokens/s: the scale starts there, so floor marks never read as a measured zero.
        top = float(np.nanmax(Z)) * 1.05 if np.isfinite(Z).any() else 1.0
        ranges.append([0, top])
        # A floor mark's centre sits a glyph's radius (about 1.5% of the axis) above the floor, so
        # the whole glyph shows instead of half of it sinking below the scene's floor.
        floor = 0.015 * top
        fig.add_trace(go.Surface(x=xs, y=ys, z=Z, colorscale="Viridis", visible=visible, name=model, cmin=0, cmax=top,
                                 showscale=bool(np.isfinite(Z).any()),
                                 colorbar=dict(title=dict(text="tokens/s", side="right"), len=0.75)))  # fmt: skip
        n = 1
        for name, at_value, marker, label in PLOTLY_MARKS:
            gi, bi = np.nonzero((state == name) & (np.isfinite(Z) == at_value))
            if not len(gi):
                continue
            fig.add_trace(
                go.Scatter3d(
                    x=[xs[j] for j in bi],
                    y=[ys[i] for i in gi],
                    z=[Z[i, j] if at_value else floor for i, j in zip(gi, bi)],
                    mode="markers",
                    marker=marker,
                    name=label,
                    text=[f"{label}: batch {xs[j]}, {ys[i]} GPU(s)" for i, j in zip(gi, bi)],
                    hoverinfo="text",
                    visible=visible,
                )  # fmt: skip
            )
            n += 1
        n_traces.append(n)
    for k, model in enumerate(models):
        mask = [m == k for m, n in enumerate(n_traces) for _ in range(n)]
        buttons.append(
            dict(
                label=model,
                method="update",
                args=[{"visible": mask}, {"title.text": f"{title}: {model}", "scene.zaxis.range": ranges[k]}],
            )
        )
    fig.update_layout(
        title=dict(text=f"{title}: {first}", x=0.01, xanchor="left", y=0.98, yanchor="top", yref="container"),
        height=640,
        margin=dict(l=0, r=30, t=100, b=50),
        showlegend=True,
        scene=dict(
            xaxis=dict(title=dict(text="batch size"), type="category"),
            yaxis=dict(title=dict(text="GPUs"), type="category"),
            zaxis=dict(title=dict(text="tokens/s"), range=ranges[models.index(first)]),
            # Far and low enough, and looking a little below the centre, that the whole box fits the scene.
            camera=dict(eye=dict(x=1.75, y=1.75, z=0.9), center=dict(x=0, y=0, z=-0.15)),
        ),
        legend=dict(orientation="h", x=0, y=0, yanchor="top"),
        # In paper coordinates: just above the scene, below the title, so neither hides the other.
        updatemenus=[
            dict(
                buttons=buttons,
                active=models.index(first),
                direction="down",
                x=0,
                xanchor="left",
                y=1,
                yanchor="bottom",
                pad=dict(b=6),
            )
        ],
    )
    return fig


def write_plotly_js(folder: Path) -> Path:
    """plotly.js, once per folder, for the interactive files beside it (atomic: drawing processes race)."""
    import plotly.offline

    path = folder / PLOTLY_JS
    if not path.exists():
        write_atomic(path, plotly.offline.get_plotlyjs())
    return path


def landscape_html(cells: pd.DataFrame, title: str, out: Path) -> Path:
    """Interactive HTML of a (hardware, engine), reading plotly.js from the file beside it (offline)."""
    write_plotly_js(out.parent)
    write_atomic(out, landscape_plotly(cells, title).to_html(include_plotlyjs=PLOTLY_JS, full_html=True))
    return out


def _foot_marks(ax: plt.Axes, xs: Iterable, style: dict) -> None:
    """Cells without throughput: marks at the foot of the axes (axes fraction), not at y = 0."""
    xs = list(xs)
    if xs:
        trans = blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter(xs, [0.02] * len(xs), transform=trans, clip_on=False, **style)


def _line_foot_styles(color) -> dict[str, dict]:
    """Foot marks of one line's cells by state, in the line's colour (shapes as in :data:`FOOT_MARKS`)."""
    return {
        "oom": dict(marker="x", color=color, s=30),
        "failed": dict(marker="s", color=color, s=16),
        "missing": dict(marker="o", facecolors="none", edgecolors=color, s=16),
    }


def lines_figure(cells: pd.DataFrame, x: str, title: str) -> plt.Figure:
    """Throughput vs ``x`` (n_gpus or batch_size), one line per model, on a linear and a log
    panel; gaps where missing, with a mark at the foot saying why (OOM, failed, not measured)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    fig.subplots_adjust(left=0.06, right=0.83, top=0.88, bottom=0.12, wspace=0.22)
    positions = {v: i for i, v in enumerate(sorted(cells[x].unique()))}
    colors = plt.get_cmap("tab20")
    seen: set[str] = set()
    for ax, log in zip(axes, (False, True)):
        for k, (model, part) in enumerate(cells.groupby("model")):
            part = part.set_index(x).reindex(list(positions))
            color = colors(k % 20)
            ax.plot(list(positions.values()), part["throughput"], marker="o", ms=3, color=color, label=model)
            no_thp = part["throughput"].isna()
            oom = part["oom"].astype("boolean").fillna(False)
            failed = part.get("failed", pd.Series(False, index=part.index)).astype("boolean").fillna(False)
            state = pd.Series(np.where(oom, "oom", np.where(failed, "failed", "missing")), index=part.index)
            for name, style in _line_foot_styles(color).items():
                at = no_thp & (state == name)
                _foot_marks(ax, [positions[v] for v in at[at].index], style)
                seen |= {name} if at.any() else set()
        ax.set_xticks(list(positions.values()), [str(v) for v in positions])
        ax.set_xlabel({"n_gpus": "GPUs", "batch_size": "batch size"}[x])
        ax.set_ylabel("tokens/s" + (" (log scale)" if log else ""))
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    labels = {"oom": "x OOM", "failed": "\u25a0 failed", "missing": "\u25cb not measured"}
    note = f"  (at the foot, no throughput: {', '.join(labels[n] for n in labels if n in seen)})" if seen else ""
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


@dataclass(frozen=True)
class Skipped:
    """A figure that cannot be drawn, and why: reported, never a crash or an empty file."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"skipped {self.path}: {self.reason}"


def _drawable(cells: pd.DataFrame, draw: Callable[..., plt.Figure], *args) -> Callable[[], plt.Figure] | str:
    """``draw(cells, *args)`` to call later, or why not: a 2-D figure with no positive
    throughput has no line to draw and no log scale to set."""
    if not (cells["throughput"] > 0).any():
        return "no successful trial with a positive throughput to draw"
    return partial(draw, cells, *args)


def _save_all(figures: Iterable[tuple[Callable[[], plt.Figure] | str, Path]]) -> list[Path | Skipped]:
    """Draw and save each figure (or skip it, with the reason), then close it: pyplot holds every
    open figure in memory, and a study draws hundreds."""
    paths: list[Path | Skipped] = []
    for draw, out in figures:
        if isinstance(draw, str):
            paths.append(Skipped(out, draw))
            continue
        fig = draw()
        paths.append(_save(fig, out))
        plt.close(fig)
    return paths


def _draw_lines(c: pd.DataFrame, out_dir: Path) -> list[Path | Skipped]:
    return _save_all(
        (
            _drawable(part, lines_figure, "n_gpus", f"{engine} on {hw}: throughput vs GPU count at batch size 1"),
            out_dir / "gpu_scaling" / f"{hw}_{engine}.png",
        )
        for (hw, engine), part in c[c["batch_size"] == 1].groupby(["hardware", "engine"])
    )


def _draw_batches(c: pd.DataFrame, out_dir: Path) -> list[Path | Skipped]:
    return _save_all(
        (
            _drawable(part, lines_figure, "batch_size", f"{engine} on {hw}: throughput vs batch size with {g} GPU(s)"),
            out_dir / "batch_size" / f"{hw}_{engine}_g{g}.png",
        )
        for (hw, engine, g), part in c.groupby(["hardware", "engine", "n_gpus"])
    )


def _draw_hardware(c: pd.DataFrame, out_dir: Path) -> list[Path | Skipped]:
    s = c.set_index(CELL)["throughput"]
    if not {NEW_HW, OLD_HW} <= set(c["hardware"]):
        return []
    pairs = pd.concat([s.xs(NEW_HW).rename(NEW_HW), s.xs(OLD_HW).rename(OLD_HW)], axis=1, join="inner").dropna()
    return _save_all(
        (partial(hardware_figure, part, engine), out_dir / "hardware" / f"{engine}.png")  # pairs measured on both
        for engine, part in pairs.reset_index().groupby("engine")
    )


def _draw_engines(c: pd.DataFrame, out_dir: Path) -> list[Path | Skipped]:
    return _save_all(
        (
            # a line per engine
            _drawable(
                part.assign(model=part["engine"]),
                lines_figure,
                "batch_size",
                f"{model} on {hw} with {g} GPU(s): throughput vs batch size per engine",
            ),
            out_dir / "engines" / f"{hw}_{model}_g{g}.png",
        )
        for (hw, model, g), part in c.groupby(["hardware", "model", "n_gpus"])
        if part["engine"].nunique() > 1
    )


def _draw_landscapes(c: pd.DataFrame, out_dir: Path, tokens: int, hw: str, engine: str) -> list[Path]:
    """PNG per model, a multi-page PDF and an interactive HTML, for the cells ``c`` of one (hardware, engine)."""
    paths = []
    pdf_path = out_dir / "landscapes" / f"{hw}_{engine}.pdf"
    with atomic_file(pdf_path) as tmp, PdfPages(tmp) as pdf:
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


def _run(task: tuple[Callable, tuple]) -> list[Path | Skipped]:
    fn, args = task
    return fn(*args)


def draw_all(
    df: pd.DataFrame,
    out_dir: str | Path,
    kinds: Iterable[str] = KINDS,
    max_new_tokens: int | None = None,
    workers: int = 1,
) -> list[Path | Skipped]:
    """Draw the chosen kinds of figure for one max_new_tokens (default as the statistics choose
    it); with ``workers`` > 1 the independent jobs run in that many processes. A figure that
    cannot be drawn comes back as :class:`Skipped`, with the reason."""
    kinds = list(kinds)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise InputError(f"unknown figure kind {unknown[0]!r}; known: {', '.join(KINDS)}")
    tokens = choose_tokens(df, max_new_tokens)
    cells = cell_table(df, tokens)
    for column in ("hardware", "engine", "model"):  # they name the files: checked before any is written
        for name in cells[column].unique():
            path_name(name, column)
    tasks = _tasks(cells, Path(out_dir), kinds, tokens)
    with output_folder(Path(out_dir), "infpop figures"):
        if workers > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(min(workers, len(tasks))) as pool:
                results = list(pool.map(_run, tasks))
        else:
            results = [_run(t) for t in tasks]
    return [p for paths in results for p in paths]
