"""The search: the HPO replay, the optimizer benchmark and live searches, when their files exist."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from infpop.search_state import read_searches

from infpop_analysis import layout
from infpop_analysis.formatting import cell_text, esc, table_html
from infpop_analysis.report.html import missing
from infpop_analysis.report.sources import Sources

KEY, HEADING = "hpo", "Search: HPO replay, benchmark and live searches"
#: The most JSON characters of one entry of a summary file the page embeds: the summaries are
#: kilobytes, while the benchmark's per-run records and per-landscape detail run to megabytes
#: (8.3 MB over the published data), which stay in their file, named.
EMBED_LIMIT = 50_000


def live_searches(folder: Path) -> list[tuple[str, object]]:
    """Each live search's state as `infpop hpo search` saved it, by the search's target: the
    page reads them through the toolkit's one reader of search states."""
    states = read_searches(folder) if folder.is_dir() else []
    return [(state.target, state.model_dump(mode="json")) for state in states]


def json_html(obj: object) -> str:
    """A JSON summary as tables: a dict of dicts is one row per key, a list of dicts a table."""
    if isinstance(obj, dict) and obj and all(isinstance(v, dict) for v in obj.values()):
        flat = {
            k: {c: (json.dumps(x) if isinstance(x, (dict, list)) else x) for c, x in v.items()} for k, v in obj.items()
        }
        return table_html(pd.DataFrame.from_dict(flat, orient="index").rename_axis("key"), 3)
    if isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        return table_html(pd.DataFrame(obj), 3, max_rows=200)
    if isinstance(obj, dict):
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{json_value(v)}</td></tr>" for k, v in obj.items())
        return f"<div class='scroll'><table class='facts'>{rows}</table></div>"
    return esc(json.dumps(obj))


def json_value(v: object) -> str:
    """A value in a JSON summary; long lists and dicts (per-run detail) folded away."""
    if not isinstance(v, (dict, list)):
        return esc(cell_text(v, 3))
    if len(v) > 12:
        return f"<details><summary>{len(v)} entries</summary>{json_html(v)}</details>"
    return json_html(v)


def embedded(data: object, path: Path) -> tuple[object, str]:
    """``data`` without its entries above :data:`EMBED_LIMIT`, and a sentence naming those
    left in ``path`` (empty where none is)."""
    if not isinstance(data, dict):
        return data, ""
    kept, left = {}, []
    for key, value in data.items():
        size = len(json.dumps(value))
        if size <= EMBED_LIMIT:
            kept[key] = value
        else:
            count = f"{len(value)} entries, " if isinstance(value, (dict, list)) else ""
            left.append(f"{key} ({count}{size / 1e6:.1f} MB)")
    sentence = f"<p>Not embedded, in {esc(path)}: {esc('; '.join(left))}.</p>" if left else ""
    return kept, sentence


def render(df: pd.DataFrame, src: Sources, tokens: int) -> str:
    parts = []
    replay = src.hpo / layout.HPO_SUMMARY
    if replay.exists():
        data, left = embedded(json.loads(replay.read_text()), replay)
        summary = {
            k: {c: x for c, x in v.items() if c not in ("medians", "excluded_negative")}
            for k, v in data.get("summary", {}).items()
        }
        parts.append(
            "<h3>HPO replay</h3><p>Per engine and direction (upgrade: the old GPU's best configuration carried to the new "
            "one, then searched; downgrade: the reverse), the percentage gained by searching, over models: the median and "
            "mean of the per-model medians, the mean without models above 300 %, and how many models gained.</p>"
            + json_html(summary)
            + "<details><summary>settings and per-model medians</summary>"
            + json_html(data)
            + "</details>"
            + left
        )
    bench = src.hpo / layout.HPO_BENCHMARK
    if bench.exists():
        data, left = embedded(json.loads(bench.read_text()), bench)
        parts.append(
            "<h3>Optimizer benchmark</h3><p>Trials and GPU time each search method needs to reach a configuration "
            "within 1 % of the optimum, over every measured landscape and the seeds of the run.</p>"
            + json_html(data)
            + left
        )
    searches = live_searches(src.search)
    if searches:
        parts.append("<h3>Live searches</h3>")
        for name, state in searches:
            parts.append(f"<h4>{esc(name)}</h4>" + json_html(state))
    return "".join(parts) or missing("HPO replay, benchmark or live search", "infpop hpo replay TABLE -o DIR")
