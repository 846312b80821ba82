"""Trial outcomes per (hardware, engine), invalid runs, and error texts grouped."""

from __future__ import annotations

import pandas as pd

from infpop_analysis.formatting import esc, table_html
from infpop_analysis.report.html import unique
from infpop_analysis.report.sources import Sources

KEY, HEADING = "outcomes", "Trial outcomes"
#: Trial outcomes in the order they are shown (others follow, sorted).
STATUSES = ("ok", "oom", "skipped_oom", "skipped_enough", "timeout", "error")


def render(df: pd.DataFrame, src: Sources, tokens: int) -> str:
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
                models=("model", lambda s: unique(s, 6)),
                where=("hardware", lambda s: unique(s, 4)),
                example=("trial_id", lambda s: unique(s, 2)),
            )
            .reset_index()
            .sort_values(["trials", "status"], ascending=[False, True])
        )
        out += "<h3>Errors, grouped by text</h3><p>Every run that did not finish ok, grouped by status and the last line of its error.</p>"
        out += table_html(grouped, max_rows=100)
    return out
