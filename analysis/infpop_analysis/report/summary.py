"""What ran, where, with which images and versions."""

from __future__ import annotations

import hashlib

import pandas as pd

from infpop_analysis.formatting import esc, table_html
from infpop_analysis.report.html import unique
from infpop_analysis.report.sources import Sources
from infpop_analysis.table import config_axes

KEY, HEADING = "summary", "Study and provenance"


def repetitions(df: pd.DataFrame) -> str:
    """How many times each configuration was measured (its repetition indices, counted; those
    adaptive repetitions left out as not needed are not)."""
    counts = df[df["status"] != "skipped_enough"].groupby(config_axes(df), dropna=False)["repetition"].nunique()
    low, high = int(counts.min()), int(counts.max())
    return f"{low} per configuration" if low == high else f"{low} to {high} per configuration"


def render(df: pd.DataFrame, src: Sources, tokens: int) -> str:
    axes = {
        "studies": "study",
        "hardware": "hardware",
        "engines": "engine",
        "models": "model",
        "GPU counts": "n_gpus",
        "batch sizes": "batch_size",
        "max_new_tokens": "max_new_tokens",
        "repetitions": "repetition",
        "workloads": "workload",
        "scenarios": "scenario",
        "request rates": "request_rate",
    }
    rows = [
        (name, repetitions(df) if col == "repetition" else unique(df[col], 30))
        for name, col in axes.items()
        if col in df and df[col].notna().any()
    ]
    started, finished = df["started_at"].dropna(), df["finished_at"].dropna()
    if len(started):
        rows.append(("ran", f"{started.min()} to {finished.max() if len(finished) else '?'}"))
    digest = hashlib.sha256(src.table.read_bytes()).hexdigest()
    rows.append(("table", f"{src.table} (sha256 {digest})"))
    facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    facts = f"<div class='scroll'><table class='facts'>{facts}</table></div>"
    prov_cols = {
        "hosts": "host",
        "GPUs": "gpu_names",
        "images": "container_image",
        "image sha256": "container_sha256",
        "library versions": "versions",
        "manifest sha256": "manifest_sha256",
    }
    prov = []
    for (hw, engine), part in df.groupby(["hardware", "engine"], dropna=False):
        entry = {"hardware": hw, "engine": engine, "trials": len(part)}
        entry |= {name: unique(part[col]) if col in part else "–" for name, col in prov_cols.items()}
        prov.append(entry)
    sources = sorted(df["source"].dropna().unique()) if "source" in df else []
    note = ""
    if "published" in sources:
        note = (
            "<p class='note'>Published data record no hosts, images or versions: those cells are \"–\". "
            "The study's own description is in its paper.</p>"
        )
    return f"{facts}<h3>Provenance per hardware and engine</h3>{note}" + table_html(pd.DataFrame(prov))
