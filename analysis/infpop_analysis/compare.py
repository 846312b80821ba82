"""``infpop compare A B``: what changed between two studies, configuration by configuration.

After a GPU upgrade, a driver or vLLM bump or a move to another site, a user measures the same
configurations again and asks which of them changed beyond the noise of repetition. For every
configuration measured in both (matched on the configuration axes,
:data:`~infpop_analysis.table.CONFIG_AXES`), ``compare.csv`` gives the ratio B/A of the
throughput with its 95% interval, the p-value of the difference and whether it exceeds
noise after Holm's adjustment over all matched configurations; the configurations
present in one study only; and, from the tables' provenance, what differs between the studies
(GPUs, library versions, images). ``compare.html`` shows the same on one self-contained page.

An axis that takes one value in each study but not the same one (``hardware: a100`` against
``h100``) is what was changed on purpose: it is listed as a difference and not matched on, so
the A100 study's configurations meet their H100 counterparts.

The ratio is that of the geometric means of the ok, valid runs' throughputs; its interval and
test are Welch's on log throughput (``scipy.stats.ttest_ind(..., equal_var=False)``), which
takes each study's own spread. By simulation (``benchmarks/intervals.py``, 2000 draws per cell)
that interval holds the true ratio of means 95.2-96.9% of the time at 3, 5 and 10 repetitions a
side under normal and log-normal (sigma 0.2) noise, where a percentile bootstrap of the ratio
holds it 80-93%. A configuration with fewer than two runs on a side has no interval and no test.

Repetitions share their run: its machine load, clocks, node and process. Two runs of the same
code differ by more than their repetitions show (on this shared machine, three demo runs of
one commit moved together by 8-19%, and up to 45% for one engine under another user's load;
docs/measurement-and-statistics.md), a real difference the test rightly finds, but not what a
user asks about. So a configuration is ``beyond_noise`` only where the difference is beyond
``min_effect`` as well: Welch's test of ``|log(B/A)| <= log(1 + min_effect)`` (the smaller of
its two one-sided p-values, doubled, which is Welch's two-sided p at ``min_effect`` 0),
Holm-adjusted. Where the true ratio lies within that band, a configuration is flagged at most
5% of the time, and the study at most 5% of the time. ``min_effect`` (default
:data:`~infpop_analysis.stats_conventions.MIN_EFFECT`, as pyperf's ``--min-speed``) should be what reruns of the same code on that
machine show: compare two runs of A to see it, and the page says how far the configurations
moved together.

Drift moves a run's configurations together, and an engine's together most (each engine runs in
its own jobs): three demo runs here moved by an engine-wide 0.60-1.47 and up to 3.4 under load.
So each configuration is also tested against its engine's *shared shift*: the median ratio of
the engine's other tested configurations (leave-one-out, so a configuration that changed does
not move its own yardstick), ``beyond_shift`` where its ratio differs from that shift by more
than ``min_effect`` beyond repetition noise, by the same test, Holm-adjusted. It answers which
configurations changed *differently from the rest* (the median-of-ratios normalisation that
sequencing counts use for library depth), and the page states each engine's shift beside it;
whether the shift itself is drift or the change under study, only a rerun of A can tell. The
shift's own uncertainty (the median of k others) is not added to the test; ``min_effect``
absorbs it (the simulation in tests/analysis/test_compare.py checks the rate at 8
configurations an engine).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from infpop.atomic import atomic_file, write_atomic
from infpop.errors import InputError
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from infpop_analysis.formatting import esc, table_html
from infpop_analysis.report.page import page_html
from infpop_analysis.stats_conventions import ALPHA, CI_LEVEL, MIN_EFFECT, MIN_REPETITIONS
from infpop_analysis.table import config_axes, read_table, valid_rows

#: Provenance columns whose values are compared between the studies, with the name shown.
PROVENANCE = {
    "GPUs": "gpu_names",
    "container image": "container_image",
    "image sha256": "container_sha256",
    "manifest sha256": "manifest_sha256",
}
#: The interval and test, named in compare.csv.
METHOD = "welch-t on log throughput"
RESULT_COLUMNS = [
    "present", "n_a", "n_b", "mean_a", "mean_b", "ratio", "ratio_ci_low", "ratio_ci_high",
    "p_value", "p_beyond_min", "p_holm", "beyond_noise",
    "shift", "ratio_vs_shift", "p_vs_shift", "p_vs_shift_holm", "beyond_shift",
]  # fmt: skip
#: The fewest other tested configurations of an engine whose median makes its shared shift.
SHIFT_MIN_OTHERS = 3


def load(path: Path) -> pd.DataFrame:
    """A table file, or a study folder with the ``table.parquet`` that ``make aggregate`` writes."""
    if path.is_dir():
        table = path / "table.parquet"
        if not table.exists():
            raise InputError(f"{path}: a folder without table.parquet (`infpop aggregate {path} -o {table}` writes it)")
        path = table
    return read_table(path)


def study_axes(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """The axes each study holds at one value, a different one in each: what was changed on purpose."""
    out = []
    for col in ["study", *dict.fromkeys(config_axes(a) + config_axes(b))]:
        va, vb = (set(t[col].astype(object).where(t[col].notna(), None)) for t in (a, b))
        if len(va) == 1 and len(vb) == 1 and va != vb:
            out.append(col)
    return out


def _runs(df: pd.DataFrame, axes: list[str]) -> pd.Series:
    """Each configuration's throughputs of ok, valid runs (an OOM's partial throughput is no
    measurement of the configuration)."""
    d = valid_rows(df)[0]
    d = d[(d["status"] == "ok") & (d["throughput"] > 0)]
    return d.groupby(axes, dropna=False, observed=True, sort=True)["throughput"].agg(lambda s: s.to_numpy(dtype=float))


def _ratio(a: np.ndarray, b: np.ndarray, min_effect: float) -> dict:
    """Ratio of geometric means B/A, Welch's interval and p on the logs, and the p of a change
    beyond ``min_effect`` (module docstring); NaN below two runs a side."""
    out = {"n_a": len(a), "n_b": len(b), "mean_a": a.mean(), "mean_b": b.mean()}
    la, lb = np.log(a), np.log(b)
    out["ratio"] = float(np.exp(lb.mean() - la.mean()))
    out["ratio_ci_low"] = out["ratio_ci_high"] = out["p_value"] = out["p_beyond_min"] = np.nan
    if _testable(la, lb):
        res = sps.ttest_ind(lb, la, equal_var=False)
        ci = res.confidence_interval(CI_LEVEL)
        out |= {"ratio_ci_low": np.exp(ci.low), "ratio_ci_high": np.exp(ci.high), "p_value": res.pvalue}
        out["p_beyond_min"] = _p_beyond(la, lb, min_effect)
    return out


def _testable(la: np.ndarray, lb: np.ndarray) -> bool:
    return min(len(la), len(lb)) >= MIN_REPETITIONS and bool(np.ptp(la) > 0 or np.ptp(lb) > 0)


def _p_beyond(la: np.ndarray, lb: np.ndarray, min_effect: float) -> float:
    """Welch's p that ``|mean(lb) - mean(la)| > log(1 + min_effect)``: the smaller one-sided p, doubled."""
    band = np.log1p(min_effect)
    faster = sps.ttest_ind(lb - band, la, equal_var=False, alternative="greater").pvalue
    slower = sps.ttest_ind(lb + band, la, equal_var=False, alternative="less").pvalue
    return float(min(1.0, 2 * min(faster, slower)))


def _holm(out: pd.DataFrame, p: str, p_holm: str, flag: str) -> None:
    """Holm's adjustment of column ``p`` over the rows that have one, into ``p_holm`` and ``flag``."""
    tested = out[p].notna()
    out[flag] = False
    if tested.any():
        reject, adjusted, _, _ = multipletests(out.loc[tested, p], alpha=ALPHA, method="holm")
        out.loc[tested, p_holm], out.loc[tested, flag] = adjusted, reject


def _against_shift(out: pd.DataFrame, pairs: dict[int, tuple[np.ndarray, np.ndarray]], min_effect: float) -> None:
    """Each tested configuration's ratio against its engine's shared shift (module docstring):
    the leave-one-out median log ratio of the engine's other tested configurations."""
    engine = out["engine"] if "engine" in out else pd.Series("", index=out.index)
    for _, rows in out[out["p_value"].notna()].groupby(engine, dropna=False):
        logs = np.log(rows["ratio"])
        if len(rows) <= SHIFT_MIN_OTHERS:
            continue
        for i in rows.index:
            shift = float(np.median(logs.drop(i)))
            la, lb = pairs[i]
            out.loc[i, ["shift", "ratio_vs_shift", "p_vs_shift"]] = (
                np.exp(shift),
                out.loc[i, "ratio"] / np.exp(shift),
                _p_beyond(la, lb - shift, min_effect),
            )


def compare(a: pd.DataFrame, b: pd.DataFrame, min_effect: float = MIN_EFFECT) -> tuple[pd.DataFrame, list[str]]:
    """compare.csv's rows (configurations in both first, by p-value) and the axes matched on;
    a configuration is beyond noise where it changed by more than ``min_effect``."""
    changed = study_axes(a, b)
    axes = [c for c in dict.fromkeys(config_axes(a) + config_axes(b)) if c not in changed]
    # a merge, not index lookups: axes a configuration lacks (vLLM's KV-cache size for HF) are NA
    runs = (
        _runs(a, axes)
        .rename("runs_a")
        .reset_index()
        .merge(_runs(b, axes).rename("runs_b").reset_index(), on=axes, how="outer", indicator=True)
    )
    rows, pairs = [], {}
    for r in runs.to_dict("records"):
        row = {c: r[c] for c in axes}
        if r["_merge"] == "both":
            row |= {"present": "both", **_ratio(r["runs_a"], r["runs_b"], min_effect)}
            pairs[len(rows)] = (np.log(r["runs_a"]), np.log(r["runs_b"]))
        else:
            side = "a" if r["_merge"] == "left_only" else "b"
            values = r[f"runs_{side}"]
            row |= {"present": f"{side.upper()} only", f"n_{side}": len(values), f"mean_{side}": values.mean()}
        rows.append(row)
    out = pd.DataFrame(rows).reindex(columns=[*axes, *RESULT_COLUMNS])
    _holm(out, "p_beyond_min", "p_holm", "beyond_noise")
    _against_shift(out, pairs, min_effect)
    _holm(out, "p_vs_shift", "p_vs_shift_holm", "beyond_shift")
    out["method"], out["min_effect"] = METHOD, min_effect
    order = out["present"].map({"both": 0, "A only": 1, "B only": 2})
    out = out.assign(_o=order).sort_values(["_o", "p_value", *axes], na_position="last").drop(columns="_o")
    return out.reset_index(drop=True), axes


def _versions(df: pd.DataFrame) -> dict[str, set[str]]:
    """Each package's versions over the table's runs (``versions`` is "pkg=version;...")."""
    out: dict[str, set[str]] = {}
    for text in df["versions"].dropna().unique():
        for item in filter(None, str(text).split(";")):
            name, _, version = item.partition("=")
            out.setdefault(name, set()).add(version)
    return out


def differences(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """What differs between the studies: the axes changed on purpose, then the provenance."""

    def values(df: pd.DataFrame, col: str) -> str:
        return "; ".join(sorted(str(v) for v in df[col].dropna().unique() if str(v))) or "–"

    rows = [(col, values(a, col), values(b, col)) for col in study_axes(a, b)]
    rows += [(name, values(a, col), values(b, col)) for name, col in PROVENANCE.items() if col in a and col in b]
    va, vb = _versions(a), _versions(b)
    for pkg in sorted(va.keys() | vb.keys()):
        rows.append((pkg, "; ".join(sorted(va.get(pkg, {"–"}))), "; ".join(sorted(vb.get(pkg, {"–"})))))
    diff = pd.DataFrame(rows, columns=["what", "A", "B"])
    return diff[diff["A"] != diff["B"]].reset_index(drop=True)


def moved_together(both: pd.DataFrame) -> str:
    """How far the configurations in both moved together, per engine: the median ratio, and how
    many moved each way. A shift shared by an engine's configurations is what a machine's drift
    between runs looks like, as much as a change of software."""
    parts = []
    engine = both["engine"] if "engine" in both else pd.Series("all", index=both.index)
    for name, rows in both.groupby(engine, dropna=False, sort=True):
        ratios = rows["ratio"].dropna()
        if len(ratios):
            up, down = int((ratios > 1).sum()), int((ratios < 1).sum())
            parts.append(f"{name}: a median ratio of {ratios.median():.3f} ({up} faster in B, {down} slower)")
    if not parts:
        return ""
    return (
        f"Together the configurations moved by {'; '.join(parts)}. A shift shared by an engine's configurations "
        "is what a machine's drift between two runs of the same code looks like too (compare two runs of A to "
        "see how far reruns move), so each configuration is also tested against its engine's shift "
        "(beyond_shift). "
    )


def _page(result: pd.DataFrame, diff: pd.DataFrame, axes: list[str], a: Path, b: Path) -> str:
    both = result[result["present"] == "both"]
    flagged, apart = both[both["beyond_noise"]], both[both["beyond_shift"]]
    tested = both["p_value"].notna()
    min_effect = float(result["min_effect"].iloc[0])
    summary = (
        f"A is {a}, B is {b}. {len(both)} configurations measured in both (matched on {', '.join(axes)}); "
        f"{int(tested.sum())} have two or more ok runs on each side and are tested; {len(flagged)} of them changed "
        f"by more than {min_effect:.0%} beyond repetition noise (Holm-adjusted over the tested ones, level {ALPHA}; "
        "--min-effect sets the smallest change reported). "
        f"{moved_together(both)}"
        f"{len(apart)} moved apart from their engine's shift by more than {min_effect:.0%} beyond noise "
        "(the ratio over the median ratio of the engine's other configurations; Holm-adjusted). "
        f"{int((result['present'] == 'A only').sum())} configurations are in A only, "
        f"{int((result['present'] == 'B only').sum())} in B only. Ratio: B/A of the geometric mean throughput of "
        "ok, valid runs; interval and test: Welch's t on log throughput (its coverage is checked by "
        "benchmarks/intervals.py)."
    )
    shown = [*axes, *RESULT_COLUMNS]
    sections = [
        ("summary", "Summary", f"<p>{esc(summary)}</p>"),
        (
            "differs",
            "What differs between the studies",
            table_html(diff, max_rows=500) if len(diff) else "<p>Nothing in the tables' provenance differs.</p>",
        ),
        (
            "changed",
            "Configurations beyond noise",
            table_html(flagged[shown], 3, max_rows=500) if len(flagged) else "<p>None.</p>",
        ),
        (
            "apart",
            "Configurations that moved apart from their engine's shift",
            table_html(apart[shown], 3, max_rows=500) if len(apart) else "<p>None.</p>",
        ),
        ("both", "Every configuration in both", table_html(both[shown], 3, max_rows=2000)),
        (
            "one",
            "Configurations in one study only",
            table_html(result[result["present"] != "both"][shown], 3, max_rows=2000),
        ),
    ]
    return page_html(
        f"infpop compare: {a.name} against {b.name}", f"{len(result)} configurations", "infpop compare", sections
    )


def write_compare(a_path: Path, b_path: Path, out_dir: Path, min_effect: float = MIN_EFFECT) -> list[Path]:
    """Read both, compare, and write ``compare.csv`` and ``compare.html`` atomically; a pair
    with no configuration in common is refused before anything is written."""
    a, b = load(a_path), load(b_path)
    result, axes = compare(a, b, min_effect)
    if not (result["present"] == "both").any():
        raise InputError(
            f"{a_path} and {b_path} have no configuration in common (matched on {', '.join(axes)}; "
            f"{int((result['present'] == 'A only').sum())} in A only, {int((result['present'] == 'B only').sum())} in B only)"
        )
    csv, page = Path(out_dir) / "compare.csv", Path(out_dir) / "compare.html"
    with atomic_file(csv) as tmp:
        result.to_csv(tmp, index=False)
    write_atomic(page, _page(result, differences(a, b), axes, a_path, b_path))
    return [csv, page]
