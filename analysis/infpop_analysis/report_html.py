"""``infpop report``: one self-contained ``report.html`` per study, a view of what exists.

A user wants one page to open (and send on) rather than folders of PNGs, CSVs and Markdown. The
page reads the tidy table and, when present beside it, what the other commands wrote: the
statistics (``stats/report.md``, ``stats/tables``, ``stats/configs.csv``), the figures
(``figures/``), the HPO replay and benchmark (``hpo/``) and a live search's summaries
(``.infpop/hpo``, ``.infpop/search``). It runs no statistics of its own: numbers come from those
files, or from the table through the functions the figures and the workload analysis use. What is
absent is said so, with the command that makes it.

The page works offline: styles and plotly.js are inline, once for every interactive figure (the
landscapes, drawn by :func:`~infpop_analysis.figures.landscape_plotly` as the figures' HTML files
are, and the online latency curves); the PNGs are inline as data URIs.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from infpop.atomic import INCOMPLETE, write_atomic

from infpop_analysis.engine_ratio import engine_ratios, interval_text
from infpop_analysis.figures import cell_table, landscape_plotly, landscape_states
from infpop_analysis.stats import choose_tokens
from infpop_analysis.summaries import ENGINE_COUNTERS
from infpop_analysis.table import config_axes, read_csv

#: Trial outcomes in the order they are shown (others follow, sorted).
STATUSES = ("ok", "oom", "skipped_oom", "skipped_enough", "timeout", "error")
#: Live-search summaries under ``<study>/.infpop``.
SEARCH_DIRS = ("search", "hpo")
#: Figure folders drawn by ``infpop figures`` that the page shows, with a sentence each.
CURVES = {
    "gpu_scaling": "Throughput against GPU count at batch size 1, one line per model (linear and log scale).",
    "batch_size": "Throughput against batch size for each GPU count, one line per model (linear and log scale).",
    "hardware": "Throughput of each (model, GPU count, batch size) cell measured on both GPU types; the dashed line is equal throughput.",
}
#: A sentence for each kind of statistics table, by file-name prefix.
TABLE_SENTENCES = {
    "gpu_scaling_": "Throughput (tokens/s) per model and GPU count at batch size 1.",
    "batch_size_": "Throughput (tokens/s) per model and batch size at one GPU count.",
    "table2_": "Speed-up of the faster engine over the baseline at batch size 1 (Table II).",
    "hardware_improvement": "Throughput improvement of the newer GPU over the older one, with Wilcoxon p and Cliff's delta.",
    "hardware_pairs": "Every cell measured on both GPU types.",
}


@dataclass(frozen=True)
class Sources:
    """Where the report looks; each folder may be absent."""

    table: Path
    stats: Path
    figures: Path
    hpo: Path
    search: tuple[Path, ...]

    @classmethod
    def beside(cls, table: Path, **given: Path | None) -> Sources:
        """The layout `make` writes: stats/, figures/ and hpo/ beside the table, the search
        summaries in the study's .infpop folder; ``given`` folders override."""
        base = table.parent
        search = given.get("search")
        return cls(
            table=table,
            stats=given.get("stats") or base / "stats",
            figures=given.get("figures") or base / "figures",
            hpo=given.get("hpo") or base / "hpo",
            search=(search,) if search else tuple(base / ".infpop" / d for d in SEARCH_DIRS),
        )


# --- HTML pieces ---------------------------------------------------------------------------


def esc(x: object) -> str:
    return html.escape(str(x))


def _cell(v: object, digits: int) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if abs(v) >= 10**6 and v.is_integer():  # a count or a size in bytes that CSV made a float
            return f"{v:,.0f}"
        return f"{v:.3g}" if v != 0 and abs(v) < 10**-digits else f"{v:,.{digits}f}"
    return str(v)


def table_html(df: pd.DataFrame, digits: int = 2, max_rows: int | None = None) -> str:
    """An HTML table of ``df`` (its index included when named); missing values are "–"."""
    named = any(n is not None for n in df.index.names)
    df = df.reset_index(drop=not named)
    more = ""
    if max_rows is not None and len(df) > max_rows:
        more = f"<p class='note'>First {max_rows} of {len(df)} rows.</p>"
        df = df.head(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(_cell(v, digits))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>{more}"


def png(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f"<figure><img alt='{esc(alt)}' src='data:image/png;base64,{data}'><figcaption>{esc(alt)}</figcaption></figure>"
    )


def missing(what: str, command: str) -> str:
    return f"<p class='missing'>No {esc(what)} found; <code>{esc(command)}</code> writes it.</p>"


def markdown_html(text: str) -> str:
    """report.md as HTML under the page's "Statistics" heading: its title dropped (the section is
    titled), its sections one level down."""
    from markdown_it import MarkdownIt

    text = re.sub(r"\A# [^\n]*\n", "", text)
    # HTML off: report.md carries table values (model, hardware names), which must never run.
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    body = re.sub(r"<(/?)h([1-5])>", lambda m: f"<{m[1]}h{int(m[2]) + 1}>", body)
    return body.replace("<table>", "<div class='scroll'><table>").replace("</table>", "</table></div>")


def plotly_div(fig, div_id: str) -> str:
    """The figure's div and script; the id goes into both unescaped, so only id characters are kept."""
    div_id = re.sub(r"[^A-Za-z0-9_-]", "_", div_id)
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"responsive": True})


def _present(df: pd.DataFrame, columns) -> list[str]:
    return [c for c in columns if c in df.columns and df[c].notna().any()]


def _unique(values: pd.Series, limit: int = 12) -> str:
    distinct = values.dropna().unique()
    try:
        distinct = sorted(distinct)  # numbers in numeric order
    except TypeError:
        distinct = sorted(distinct, key=str)
    items = list(dict.fromkeys(str(v) for v in distinct if str(v)))
    if not items:
        return "–"
    shown = ", ".join(items[:limit])
    return shown + (f" … ({len(items)} in all)" if len(items) > limit else "")


# --- sections -----------------------------------------------------------------------------


def _repetitions(df: pd.DataFrame) -> str:
    """How many times each configuration was measured (its repetition indices, counted; those
    adaptive repetitions left out as not needed are not)."""
    counts = df[df["status"] != "skipped_enough"].groupby(config_axes(df), dropna=False)["repetition"].nunique()
    low, high = int(counts.min()), int(counts.max())
    return f"{low} per configuration" if low == high else f"{low} to {high} per configuration"


def section_summary(df: pd.DataFrame, src: Sources) -> str:
    """What ran, where, with which images and versions."""
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
        (name, _repetitions(df) if col == "repetition" else _unique(df[col], 30))
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
        entry |= {name: _unique(part[col]) if col in part else "–" for name, col in prov_cols.items()}
        prov.append(entry)
    sources = sorted(df["source"].dropna().unique()) if "source" in df else []
    note = ""
    if "published" in sources:
        note = (
            "<p class='note'>Published data record no hosts, images or versions: those cells are \"–\". "
            "The study's own description is in its paper.</p>"
        )
    return f"{facts}<h3>Provenance per hardware and engine</h3>{note}" + table_html(pd.DataFrame(prov))


def section_outcomes(df: pd.DataFrame) -> str:
    """Trial outcomes per (hardware, engine), invalid runs, and error texts grouped."""
    order = [s for s in STATUSES if s in set(df["status"])] + sorted(set(df["status"].dropna()) - set(STATUSES))
    counts = pd.crosstab([df["hardware"], df["engine"]], df["status"]).reindex(columns=order, fill_value=0)
    counts["all"] = counts.sum(axis=1)
    invalid = (df["status"] == "ok") & df["valid"].eq(False).fillna(False).astype(bool)
    if invalid.any():
        counts["ok but invalid"] = df[invalid].groupby(["hardware", "engine"]).size()
    total = df["status"].value_counts()
    sentence = (
        f"{len(df)} trials: "
        + ", ".join(f"{int(total.get(s, 0))} {s}" for s in order)
        + ". OOM and timeout runs keep the partial throughput they measured (as the study did); error runs have none."
    )
    out = f"<p>{esc(sentence)}</p>" + table_html(counts.fillna(0).astype(int))
    failed = df[df["status"] != "ok"].copy()
    if len(failed):
        failed["error"] = failed["error"].fillna("(no error text)").astype(str).str.slice(0, 300)
        grouped = (
            failed.groupby(["status", "error"], dropna=False)
            .agg(
                trials=("status", "size"),
                models=("model", lambda s: _unique(s, 6)),
                where=("hardware", lambda s: _unique(s, 4)),
                example=("trial_id", lambda s: _unique(s, 2)),
            )
            .reset_index()
            .sort_values(["trials", "status"], ascending=[False, True])
        )
        out += "<h3>Errors, grouped by text</h3><p>Every run that did not finish ok, grouped by status and the last line of its error.</p>"
        out += table_html(grouped, max_rows=100)
    return out


def section_best(df: pd.DataFrame, stats: Path, tokens: int) -> str:
    """The best configuration per (model, engine, hardware) at the analysed max_new_tokens (the
    landscapes' slice): from configs.csv (with its interval) when `infpop stats` wrote one, else the
    median over repetitions of the ok, valid runs."""
    group = ["hardware", "engine", "model"]
    configs = stats / "configs.csv"
    c = read_csv(configs) if configs.exists() else None
    if c is not None and "max_new_tokens" in c:
        c = c[c["max_new_tokens"] == tokens]
    df = df[df["max_new_tokens"] == tokens]
    if c is not None and "mean" in c and c["mean"].notna().any():
        keys = [k for k in group if k in c]
        best = c.loc[c.dropna(subset=["mean"]).groupby(keys)["mean"].idxmax()].reset_index(drop=True)
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
            f"From {configs.name}, at {tokens} new tokens: per (hardware, engine, model) the configuration with the "
            "highest mean throughput "
            f"(tokens/s) over its repetitions, with the 95% {method} interval of the mean where it has two or more; "
            "`noisy` marks a coefficient of variation above the stats threshold."
        )
        return f"<p>{esc(sentence)}</p>" + table_html(best[shown].sort_values(keys), max_rows=500)
    ok = df[(df["status"] == "ok") & df["throughput"].notna() & (df["valid"].fillna(True).astype(bool))]
    if not len(ok):
        return "<p class='missing'>No run finished ok with a throughput.</p>"
    axes = config_axes(ok)
    measures = ["throughput"] + _present(ok, ENGINE_COUNTERS)
    per_config = ok.groupby(axes, dropna=False).agg(
        repetitions=("throughput", "size"), **{m: (m, "median") for m in measures}
    )
    per_config = per_config.reset_index()
    best = per_config.loc[per_config.groupby(group)["throughput"].idxmax()]
    varying = [a for a in axes if a not in group and per_config[a].nunique(dropna=False) > 1]
    best = best[group + varying + ["repetitions"] + measures].rename(columns={"throughput": "tokens/s (median)"})
    reps = int(per_config["repetitions"].max())
    interval = (
        "Intervals need repetitions and `infpop stats` (configs.csv); none was found."
        if reps > 1
        else "Each configuration ran once, so there is no interval."
    )
    sentence = (
        f"At {tokens} new tokens, per (hardware, engine, model) the configuration with the highest median throughput "
        f"over its ok, valid runs (tokens/s; OOM partial throughputs are not candidates). {interval}"
    )
    return f"<p>{esc(sentence)}</p>" + table_html(best.sort_values(group), max_rows=500)


def section_engines(df: pd.DataFrame, figures: Path, num: str = "vllm", den: str = "hf") -> str:
    """The study's central comparison: vLLM over HF, each at its own best batch size, per setting
    measured with both; and the engines figures of `infpop figures` (both engines over batch size)."""
    ratios = engine_ratios(df, num, den)
    if ratios.empty:
        return (
            f"<p class='missing'>No setting has ok offline results for both {esc(num)} and {esc(den)}; "
            f"the manifest's <code>engines: [{esc(den)}, {esc(num)}]</code> measures both.</p>"
        )
    shown = pd.DataFrame(
        {
            "hardware": ratios["hardware"],
            "model": ratios["model"],
            "GPUs": ratios["n_gpus"],
            "new tokens": ratios["max_new_tokens"],
            f"{num} best batch": ratios[f"batch_size_{num}"],
            f"{num} tokens/s (median)": ratios[f"throughput_{num}"],
            f"{den} best batch": ratios[f"batch_size_{den}"],
            f"{den} tokens/s (median)": ratios[f"throughput_{den}"],
            f"{num}/{den}": ratios["ratio"],
            "interval": [interval_text(r) for r in ratios.itertuples()],
            "repetitions": [f"{a}/{b}" for a, b in zip(ratios[f"n_{num}"], ratios[f"n_{den}"])],
        }
    )
    sentence = (
        f"{num}'s throughput over {den}'s, each engine at the batch size where its median throughput is highest "
        "(offline trials, ok runs). The interval resamples each engine's repetitions there; it leaves out the "
        "choice of the best batch size, so it is too narrow where two batch sizes are close."
    )
    parts = [f"<p>{esc(sentence)}</p>", table_html(shown.sort_values(["hardware", "model", "GPUs"]), max_rows=500)]
    pngs = sorted((figures / "engines").glob("*.png")) if figures.is_dir() else []
    if pngs:
        parts.append("<p>Both engines over batch size, one figure per (hardware, model, GPU count).</p>")
        parts += [png(p, f"engines: {p.stem}") for p in pngs]
    return "".join(parts)


def section_landscapes(df: pd.DataFrame, tokens: int) -> str:
    """One interactive landscape per (hardware, engine), as the figures' HTML files draw them."""
    cells = cell_table(df, tokens)
    if not len(cells):
        return f"<p class='missing'>No trial at max_new_tokens = {tokens}.</p>"
    parts = [
        f"<p>Median throughput (tokens/s) per (GPU count, batch size) cell at {tokens} new tokens, one surface per "
        "model (pick it in the menu above each scene; drag to turn). Cells without a throughput are never drawn as "
        "zero: they are holes in the surface, marked on the floor by what happened there (OOM, failed by error or "
        "timeout, or not measured); an OOM run's partial throughput is a red dot at its value.</p>"
    ]
    for (hw, engine), part in cells.groupby(["hardware", "engine"]):
        counts: dict[str, int] = {}
        for _, model_cells in part.groupby("model"):
            for state in landscape_states(model_cells)[1].ravel():
                counts[state] = counts.get(state, 0) + 1
        summary = ", ".join(f"{counts.get(s, 0)} {label}" for s, label in (
            ("ok", "measured"), ("oom", "OOM"), ("failed", "failed"), ("missing", "not measured")))  # fmt: skip
        fig = landscape_plotly(part, f"{engine} on {hw}, {tokens} new tokens")
        parts.append(
            f"<h3>{esc(engine)} on {esc(hw)}</h3><p class='note'>Grid cells over all models: {esc(summary)}.</p>"
            + plotly_div(fig, f"landscape-{hw}-{engine}")
        )
    return "".join(parts)


def incomplete(folder: Path, command: str) -> str:
    """A warning when ``folder`` is marked incomplete (its command failed or still runs)."""
    marker = folder / INCOMPLETE
    if not marker.exists():
        return ""
    why = marker.read_text(errors="replace").strip().splitlines()[:1] or [""]
    return (
        f"<p class='missing'>{esc(folder)} is incomplete: {esc(why[0])} What follows may be partial or older; "
        f"rerun <code>{esc(command)}</code>.</p>"
    )


def section_curves(figures: Path) -> str:
    """The scaling, batch-size and hardware curves drawn by `infpop figures`."""
    if not figures.is_dir():
        return missing("figures folder", "infpop figures TABLE -o DIR")
    parts = [incomplete(figures, "infpop figures TABLE -o DIR")]
    for kind, sentence in CURVES.items():
        pngs = sorted((figures / kind).glob("*.png"))
        if pngs:
            title = kind.replace("_", " ")
            parts.append(
                f"<h3>{esc(title)}</h3><p>{esc(sentence)} Marks at the foot of an axis: cells without a throughput (x OOM, ■ failed, ○ not measured).</p>"
            )
            parts += [png(p, f"{title}: {p.stem}") for p in pngs]
    return "".join(parts) or missing("scaling, batch-size or hardware figure", "infpop figures TABLE -o DIR")


def section_statistics(stats: Path) -> str:
    """report.md, every statistics table with a sentence, and the repeatability of configs.csv."""
    report = stats / "report.md"
    parts = [incomplete(stats, "infpop stats TABLE -o DIR")]
    if report.exists():
        parts.append(f"<div class='md'>{markdown_html(report.read_text())}</div>")
    else:
        parts.append(missing("statistics (report.md)", "infpop stats TABLE -o DIR"))
    configs = stats / "configs.csv"
    if configs.exists():
        c = read_csv(configs)
        repeated = c[c["n"] >= 2] if "n" in c else c.iloc[:0]
        noisy = repeated[repeated["noisy"].astype(bool)] if "noisy" in repeated else repeated.iloc[:0]
        parts.append(
            "<h3>Repeatability (configs.csv)</h3>"
            f"<p>{len(c)} configurations; {len(repeated)} measured two or more times, of which {len(noisy)} noisy "
            "(coefficient of variation above the threshold of <code>infpop stats</code>).</p>"
        )
        if len(noisy):
            parts.append(table_html(noisy.sort_values("cv", ascending=False), 3, max_rows=100))
    tables = sorted((stats / "tables").glob("*.csv"))
    if tables:
        parts.append("<h3>All statistics tables</h3>")
        for path in tables:
            sentence = next((s for p, s in TABLE_SENTENCES.items() if path.stem.startswith(p)), "")
            t = read_csv(path)
            parts.append(
                f"<details><summary>{esc(path.stem)} ({len(t)} rows)</summary><p>{esc(sentence)}</p>"
                + table_html(t, 2, max_rows=300)
                + "</details>"
            )
    return "".join(parts)


def section_online(df: pd.DataFrame) -> str:
    """Latency against request rate per workload (the workload analysis's curves), and throughput by workload."""
    from infpop_analysis.workload_analysis import SETTING, latency_vs_rate, throughput_by_workload

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
                f"<p class='note'>Invalid runs not drawn: {len(invalid)} (rates {esc(_unique(invalid['request_rate']))}).</p>"
            )
    parts.append(
        "<h3>Throughput by workload</h3><p>Best valid throughput (tokens/s) per setting and workload, and the ratio of the best workload to the worst.</p>"
    )
    parts.append(table_html(throughput_by_workload(df)))
    return "".join(parts)


def _json_html(obj: object) -> str:
    """A JSON summary as tables: a dict of dicts is one row per key, a list of dicts a table."""
    if isinstance(obj, dict) and obj and all(isinstance(v, dict) for v in obj.values()):
        flat = {
            k: {c: (json.dumps(x) if isinstance(x, (dict, list)) else x) for c, x in v.items()} for k, v in obj.items()
        }
        return table_html(pd.DataFrame.from_dict(flat, orient="index").rename_axis("key"), 3)
    if isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        return table_html(pd.DataFrame(obj), 3, max_rows=200)
    if isinstance(obj, dict):
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{_json_value(v)}</td></tr>" for k, v in obj.items())
        return f"<div class='scroll'><table class='facts'>{rows}</table></div>"
    return esc(json.dumps(obj))


def _json_value(v: object) -> str:
    """A value in a JSON summary; long lists and dicts (per-run detail) folded away."""
    if not isinstance(v, (dict, list)):
        return esc(_cell(v, 3))
    if len(v) > 12:
        return f"<details><summary>{len(v)} entries</summary>{_json_html(v)}</details>"
    return _json_html(v)


def section_hpo(src: Sources) -> str:
    """The HPO replay, the optimizer benchmark and live searches, when their files exist."""
    parts = []
    replay = src.hpo / "hpo_summary.json"
    if replay.exists():
        data = json.loads(replay.read_text())
        summary = {
            k: {c: x for c, x in v.items() if c not in ("medians", "excluded_negative")}
            for k, v in data.get("summary", {}).items()
        }
        parts.append(
            "<h3>HPO replay</h3><p>Per engine and direction (upgrade: the old GPU's best configuration carried to the new "
            "one, then searched; downgrade: the reverse), the percentage gained by searching, over models: the median and "
            "mean of the per-model medians, the mean without models above 300 %, and how many models gained.</p>"
            + _json_html(summary)
            + "<details><summary>settings and per-model medians</summary>"
            + _json_html(data)
            + "</details>"
        )
    bench = src.hpo / "hpo_benchmark.json"
    if bench.exists():
        data = json.loads(bench.read_text())
        summary = data.get("summary", data) if isinstance(data, dict) else data
        parts.append(
            "<h3>Optimizer benchmark</h3><p>Trials and GPU time each search method needs to reach a configuration "
            "within 1 % of the optimum, over every measured landscape and the seeds of the run.</p>"
            + _json_html(summary)
        )
    searches = [p for d in src.search if d.is_dir() for p in sorted(d.glob("*.json"))]
    if searches:
        parts.append("<h3>Live searches</h3>")
        for path in searches:
            data = json.loads(path.read_text())
            parts.append(f"<h4>{esc(path.stem)}</h4>" + _json_html(data))
    return "".join(parts) or missing("HPO replay, benchmark or live search", "infpop hpo replay TABLE -o DIR")


# --- the page -------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; line-height: 1.45; }
header { background: #1f3b57; color: white; padding: 1em 2em; }
header h1 { margin: 0; font-size: 1.6em; }
nav { padding: 0.5em 2em; background: #eef2f6; }
nav a { margin-right: 1.2em; color: #1f3b57; }
main { padding: 0 2em 3em; max-width: 1400px; }
section { margin-top: 2em; border-top: 1px solid #ccd; }
h2 { color: #1f3b57; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccd; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
thead th { background: #eef2f6; position: sticky; top: 0; }
table.facts th { background: #f6f8fa; white-space: nowrap; }
.scroll { overflow: auto; max-height: 40em; max-width: 100%; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: 0.9em; }
.missing { color: #8a5a00; background: #fff6e0; padding: 0.4em 0.8em; }
.md h2 { font-size: 1.3em; } .md h3 { font-size: 1.1em; }
details { margin: 0.4em 0; } summary { cursor: pointer; }
.plotly-graph-div { margin: 0.5em 0 1.5em; }
"""


def render_report(df: pd.DataFrame, src: Sources, max_new_tokens: int | None = None) -> str:
    """The whole page as one string."""
    import plotly.offline

    tokens = choose_tokens(df, max_new_tokens)
    studies = ", ".join(sorted(df["study"].dropna().unique())) or "unnamed study"
    sections = [
        ("summary", "Study and provenance", section_summary(df, src)),
        ("outcomes", "Trial outcomes", section_outcomes(df)),
        ("best", "Best configuration per model, engine and hardware", section_best(df, src.stats, tokens)),
        ("engines", "Engines: vLLM against HF", section_engines(df, src.figures)),
        ("landscapes", "Throughput landscapes", section_landscapes(df, tokens)),
        ("curves", "Scaling, batch-size and hardware curves", section_curves(src.figures)),
        ("statistics", "Statistics", section_statistics(src.stats)),
        ("online", "Online serving: latency against request rate", section_online(df)),
        ("hpo", "Search: HPO replay, benchmark and live searches", section_hpo(src)),
    ]
    script = f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script>"
    return page_html(f"infpop report: {studies}", f"{len(df)} trials", "infpop report", sections, script)


def page_html(title: str, facts: str, command: str, sections: list[tuple[str, str, str]], head: str = "") -> str:
    """A self-contained page: ``title`` (text), a line of ``facts`` (text), and one section per
    (anchor, heading, HTML content), with a navigation bar; ``head`` (HTML) goes into its head."""
    nav = "".join(f"<a href='#{key}'>{esc(heading.split(':')[0])}</a>" for key, heading, _ in sections)
    body = "".join(f"<section id='{key}'><h2>{esc(h)}</h2>{content}</section>" for key, h, content in sections)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>{STYLE}</style>{head}</head><body>"
        f"<header><h1>{esc(title)}</h1><div>{esc(facts)}; generated {when} by "
        f"<code>{esc(command)}</code>; works offline.</div></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>"
    )


def write_report(df: pd.DataFrame, src: Sources, out_dir: str | Path, max_new_tokens: int | None = None) -> Path:
    """Write ``out_dir/report.html`` atomically (a reader never sees half a page)."""
    out = Path(out_dir) / "report.html"
    write_atomic(out, render_report(df, src, max_new_tokens))
    return out
