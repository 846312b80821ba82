"""What `infpop stats` wrote: report.md, every statistics table with a sentence, and the
repeatability of configs.csv."""

from __future__ import annotations

import pandas as pd

from infpop_analysis import layout
from infpop_analysis.formatting import esc, table_html
from infpop_analysis.report.best import stopping_sentence
from infpop_analysis.report.html import incomplete, markdown_html, missing
from infpop_analysis.report.sources import Sources
from infpop_analysis.table import read_csv

KEY, HEADING = "statistics", "Statistics"
#: A sentence for each kind of statistics table, by file-name prefix.
TABLE_SENTENCES = {
    "gpu_scaling_": "Throughput (tokens/s) per model and GPU count at batch size 1.",
    "batch_size_": "Throughput (tokens/s) per model and batch size at one GPU count.",
    "table2_": "Speed-up of the faster engine over the baseline at batch size 1 (Table II).",
    "hardware_improvement": "Throughput improvement of the newer GPU over the older one, with Wilcoxon p and Cliff's delta.",
    "hardware_pairs": "Every cell measured on both GPU types.",
}


def render(df: pd.DataFrame, src: Sources, tokens: int) -> str:
    stats = src.stats
    report = stats / layout.STATS_REPORT
    parts = [incomplete(stats, "infpop stats TABLE -o DIR")]
    if report.exists():
        parts.append(f"<div class='md'>{markdown_html(report.read_text())}</div>")
    else:
        parts.append(missing("statistics (report.md)", "infpop stats TABLE -o DIR"))
    configs = stats / layout.CONFIGS
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
        if "stop_reason" in c:
            counts = c["stop_reason"].value_counts()
            said = ", ".join(f"{n} {reason}" for reason, n in counts.items())
            parts.append(f"<p>Why their repetitions stopped: {esc(said)}. {esc(stopping_sentence())}</p>")
    tables = sorted((stats / layout.TABLES_DIR).glob("*.csv"))
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
