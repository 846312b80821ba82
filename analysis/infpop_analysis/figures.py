"""Figures from the tidy table. Missing and OOM cells are drawn as gaps, never as zero."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def landscape_grid(df: pd.DataFrame) -> pd.DataFrame:
    """GPU count x batch size grid of median throughput over repetitions; NaN where nothing ran ok."""
    ok = df[df["status"].isin(["ok"]) & df["throughput"].notna()]
    grid = ok.pivot_table(index="n_gpus", columns="batch_size", values="throughput", aggfunc="median")
    return grid.reindex(index=sorted(df["n_gpus"].unique()), columns=sorted(df["batch_size"].unique()))


def draw_landscape(df: pd.DataFrame, title: str, out: Path) -> Path:
    grid = landscape_grid(df)
    x = np.log2(grid.columns.to_numpy(dtype=float))
    y = grid.index.to_numpy(dtype=float)
    X, Y = np.meshgrid(x, y)
    Z = np.ma.masked_invalid(grid.to_numpy(dtype=float))
    fig = plt.figure(figsize=(7, 5))
    ax = fig.add_subplot(projection="3d")
    if Z.shape[0] > 1 and Z.shape[1] > 1:
        ax.plot_surface(X, Y, Z, cmap="viridis", edgecolor="k", linewidth=0.3, alpha=0.85)
    ax.scatter(X[~Z.mask], Y[~Z.mask], Z.compressed(), color="k", s=10)
    ax.set_xticks(x, [str(int(b)) for b in grid.columns])
    ax.set_yticks(y, [str(int(g)) for g in grid.index])
    ax.set_xlabel("batch size")
    ax.set_ylabel("GPUs")
    ax.set_zlabel("tokens/s")
    ax.set_title(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def draw_all(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    paths = []
    for (hw, engine, model, tokens), part in df.groupby(["hardware", "engine", "model", "max_new_tokens"]):
        title = f"{model} / {engine} / {hw} / {tokens} new tokens"
        paths.append(draw_landscape(part, title, out_dir / "landscapes" / f"{hw}_{engine}_{model}_t{tokens}.png"))
    return paths
