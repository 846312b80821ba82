"""The page: the sections in order, a navigation bar and the styles, written as one file.

:func:`page_html` is also the frame of ``infpop compare``'s page, so both look alike.
"""

from __future__ import annotations

from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path

import pandas as pd
from infpop.atomic import write_atomic

from infpop_analysis import layout
from infpop_analysis.formatting import esc
from infpop_analysis.report import (
    best,
    capacity,
    curves,
    efficiency,
    engines,
    equivalence,
    landscapes,
    online,
    outcomes,
    search,
    statistics,
    summary,
)
from infpop_analysis.report.sources import Sources
from infpop_analysis.stats import choose_tokens

#: The sections in page order; each has ``KEY``, ``HEADING`` and ``render(df, src, tokens)``.
SECTIONS = (
    summary,
    outcomes,
    best,
    equivalence,
    efficiency,
    engines,
    landscapes,
    curves,
    statistics,
    online,
    capacity,
    search,
)


def render_report(df: pd.DataFrame, src: Sources, max_new_tokens: int | None = None) -> str:
    """The whole page as one string."""
    import plotly.offline

    tokens = choose_tokens(df, max_new_tokens)
    studies = ", ".join(sorted(df["study"].dropna().unique())) or "unnamed study"
    sections = [(s.KEY, s.HEADING, s.render(df, src, tokens)) for s in SECTIONS]
    script = f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script>"
    return page_html(f"infpop report: {studies}", f"{len(df)} trials", "infpop report", sections, script)


def page_html(title: str, facts: str, command: str, sections: list[tuple[str, str, str]], head: str = "") -> str:
    """A self-contained page: ``title`` (text), a line of ``facts`` (text), and one section per
    (anchor, heading, HTML content), with a navigation bar; ``head`` (HTML) goes into its head."""
    style = files(__package__).joinpath("report.css").read_text()
    nav = "".join(f"<a href='#{key}'>{esc(heading.split(':')[0])}</a>" for key, heading, _ in sections)
    body = "".join(f"<section id='{key}'><h2>{esc(h)}</h2>{content}</section>" for key, h, content in sections)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>{style}</style>{head}</head><body>"
        f"<header><h1>{esc(title)}</h1><div>{esc(facts)}; generated {when} by "
        f"<code>{esc(command)}</code>; works offline.</div></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>"
    )


def write_report(df: pd.DataFrame, src: Sources, out_dir: str | Path, max_new_tokens: int | None = None) -> Path:
    """Write ``out_dir/report.html`` atomically (a reader never sees half a page)."""
    out = Path(out_dir) / layout.REPORT
    write_atomic(out, render_report(df, src, max_new_tokens))
    return out
