"""The HTML pieces several sections share: inline images, notes on what is absent or
incomplete, Markdown and plotly figures, lists of distinct values."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
from infpop.atomic import INCOMPLETE

from infpop_analysis.formatting import esc


def png(path: Path, alt: str) -> str:
    """A PNG inline as a data URI, so the page needs no file beside it."""
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f"<figure><img alt='{esc(alt)}' src='data:image/png;base64,{data}'><figcaption>{esc(alt)}</figcaption></figure>"
    )


def missing(what: str, command: str) -> str:
    """A note that ``what`` is absent, naming the ``command`` that writes it."""
    return f"<p class='missing'>No {esc(what)} found; <code>{esc(command)}</code> writes it.</p>"


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


def unique(values: pd.Series, limit: int = 12) -> str:
    """The distinct values, sorted (numbers in numeric order), the first ``limit`` of them."""
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
