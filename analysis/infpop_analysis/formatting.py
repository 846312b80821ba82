"""Numbers and tables as text, the bottom layer every writer of prose shares: report.md
(``infpop stats`` and the paper's claims), report.html and compare.html.

It imports no other module of the package, so anything that writes text can use it without
pulling in what it formats.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd


def missing_value(v: object) -> bool:
    """None, pandas' NA and NaN: the values every table shows as "–"."""
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for prose: fixed point, or 3 significant digits when smaller than its last digit; "n/a" when missing."""
    if missing_value(x):
        return "n/a"
    x = float(x)
    if x != 0 and abs(x) < 10**-digits:
        return f"{x:.3g}"
    return f"{x:.{digits}f}"


def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal; "n/a" when missing."""
    return "n/a" if x is None or pd.isna(x) else f"{100 * x:.1f}%"


def markdown_table(df: pd.DataFrame, digits: int = 2) -> str:
    """GitHub Markdown of ``df`` (index included when named); missing cells are "–"."""
    if df.index.name is not None or not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()

    def cell(v: object) -> str:
        if missing_value(v):
            return "–"
        if isinstance(v, (float, np.floating)):
            return fmt(float(v), digits)
        return str(v)

    head = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def esc(x: object) -> str:
    """Any value as HTML text: table values (model, hardware, error texts) must never run."""
    return html.escape(str(x))


def cell_text(v: object, digits: int) -> str:
    """A table cell for HTML: thousands separated, small numbers in significant digits, missing as "–"."""
    if missing_value(v):
        return "–"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if abs(v) >= 10**6 and v.is_integer():  # a count or a size in bytes that CSV made a float
            return f"{v:,.0f}"
        return f"{v:.3g}" if v != 0 and abs(v) < 10**-digits else f"{v:,.{digits}f}"
    return str(v)


def table_html(df: pd.DataFrame, digits: int = 2, max_rows: int | None = None) -> str:
    """An HTML table of ``df`` (its index included when named); every cell escaped, missing values "–"."""
    named = any(n is not None for n in df.index.names)
    df = df.reset_index(drop=not named)
    more = ""
    if max_rows is not None and len(df) > max_rows:
        more = f"<p class='note'>First {max_rows} of {len(df)} rows.</p>"
        df = df.head(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(cell_text(v, digits))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>{more}"
