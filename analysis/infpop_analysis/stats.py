"""The study's statistics as recipes: pure functions from the tidy table to tables and tests.

Every recipe reads :func:`cells`, one throughput per (hardware, engine, model, GPU count, batch
size) at one max_new_tokens: the median over repetitions of every non-missing throughput. An
OOM row's partial throughput counts, as it did in the published tables; a cell with no
throughput is missing and is dropped from each test, never read as zero. A cell pools
repetitions and nothing else: :func:`analyse` leaves out invalid runs and runs the recipes once
per combination of the other configuration axes the table varies (workload, request rate, GPU
memory share, ...).

Each test is one row of the tidy test table (:data:`TEST_COLUMNS`); a test whose data are too
few to compute (a group of one, fewer than two pairs) is left out, not written as NaN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats as sps

from infpop_analysis.effects import cliffs_delta
from infpop_analysis.stats_conventions import ALPHA
from infpop_analysis.table import split_axes, valid_rows

TEST_COLUMNS = [
    "analysis", "hardware", "engine", "n_gpus", "model", "test", "group1", "group2",
    "statistic", "p_value", "effect", "ci_low", "ci_high", "n", "reject",
]  # fmt: skip
CELL = ["hardware", "engine", "model", "n_gpus", "batch_size"]
#: The engine compared (first) and the baseline (second), for speed-ups and the engines test.
FAST, BASE = "vllm", "hf"
#: The newer and the older GPU model, for the hardware analysis.
NEW_HW, OLD_HW = "a100", "v100"


#: The paper's max_new_tokens for every table and test.
PAPER_TOKENS = 5


def choose_tokens(df: pd.DataFrame, requested: int | None = None) -> int:
    """The max_new_tokens to analyse: the requested one, else the paper's 5 when the table has it,
    else the smallest the table has (a demo sweep may run only 3)."""
    if requested is not None:
        return requested
    present = sorted(int(t) for t in df["max_new_tokens"].dropna().unique())
    return PAPER_TOKENS if PAPER_TOKENS in present or not present else present[0]


def cells(df: pd.DataFrame, max_new_tokens: int = PAPER_TOKENS) -> pd.DataFrame:
    """One throughput per cell at ``max_new_tokens``: median of the non-missing throughputs."""
    d = df[(df["max_new_tokens"] == max_new_tokens) & df["throughput"].notna()]
    out = d.groupby(CELL, observed=True)["throughput"].median().reset_index()
    return out.astype({"hardware": str, "engine": str, "model": str, "n_gpus": int, "batch_size": int})


def _test(**values) -> dict:
    return {c: values.get(c) for c in TEST_COLUMNS}


def _labels(values) -> str:
    return ",".join(str(v) for v in values)


def anova(groups: dict, **where) -> dict | None:
    """One-way ANOVA over ``groups`` (label -> values); None when it is not defined."""
    groups = {k: np.asarray(v, dtype=float) for k, v in groups.items() if len(v) > 0}
    n = sum(len(v) for v in groups.values())
    if len(groups) < 2 or n - len(groups) < 1:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant groups: scipy warns and returns NaN/inf, kept as is
        res = sps.f_oneway(*groups.values())
    return _test(
        test="anova", group1=_labels(groups), statistic=float(res.statistic), p_value=float(res.pvalue),
        n=n, reject=bool(res.pvalue < ALPHA), **where,
    )  # fmt: skip


def tukey(groups: dict, **where) -> list[dict]:
    """Tukey HSD for every pair of groups; statistic = mean(group2) - mean(group1)."""
    from statsmodels.stats.multicomp import pairwise_tukeyhsd

    groups = {k: np.asarray(v, dtype=float) for k, v in groups.items() if len(v) > 0}
    if len(groups) < 2 or sum(len(v) for v in groups.values()) - len(groups) < 1:
        return []
    labels = list(groups)
    endog = np.concatenate(list(groups.values()))
    codes = np.concatenate([np.full(len(v), i) for i, v in enumerate(groups.values())])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = pairwise_tukeyhsd(endog, codes, alpha=ALPHA)
    rows = []
    for k, (i, j) in enumerate(combinations(range(len(labels)), 2)):
        rows.append(
            _test(
                test="tukey",
                group1=str(labels[i]),
                group2=str(labels[j]),
                statistic=float(res.meandiffs[k]),
                p_value=float(res.pvalues[k]),
                ci_low=float(res.confint[k][0]),
                ci_high=float(res.confint[k][1]),
                n=len(groups[labels[i]]) + len(groups[labels[j]]),
                reject=bool(res.reject[k]),
                **where,
            )  # fmt: skip
        )
    return rows


def paired_tests(x: pd.Series, y: pd.Series, group1: str, group2: str, **where) -> list[dict]:
    """Wilcoxon signed-rank of x vs y on their common index, and Cliff's delta of x over y."""
    both = pd.concat([x.rename("x"), y.rename("y")], axis=1, join="inner").dropna()
    if len(both) < 2:
        return []
    rows = []
    if (both["x"] != both["y"]).any():
        w = sps.wilcoxon(both["x"], both["y"])
        rows.append(
            _test(
                test="wilcoxon",
                group1=group1,
                group2=group2,
                statistic=float(w.statistic),
                p_value=float(w.pvalue),
                n=len(both),
                reject=bool(w.pvalue < ALPHA),
                **where,
            )  # fmt: skip
        )
    cd = cliffs_delta(both["x"], both["y"])
    rows.append(
        _test(
            test="cliffs_delta",
            group1=group1,
            group2=group2,
            effect=cd.delta,
            ci_low=cd.ci_low,
            ci_high=cd.ci_high,
            n=len(both),
            **where,
        )  # fmt: skip
    )
    return rows


def grid(c: pd.DataFrame, rows: str, cols: str, **where) -> pd.DataFrame:
    """``rows`` x ``cols`` table of the cells matching ``where``; NaN where nothing was measured."""
    sel = c
    for k, v in where.items():
        sel = sel[sel[k] == v]
    return sel.pivot_table(index=rows, columns=cols, values="throughput", aggfunc="first").sort_index()


def _columns(table: pd.DataFrame) -> dict:
    return {col: table[col].dropna().to_numpy() for col in table.columns}


def gpu_scaling(c: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], list[dict]]:
    """Batch 1 per (hardware, engine): model x GPU count; ANOVA over GPU counts (and again
    without the smallest count, the paper's check of where the difference comes from); Tukey HSD."""
    tables, tests = {}, []
    b1 = c[c["batch_size"] == 1]
    for (hw, engine), _ in b1.groupby(["hardware", "engine"]):
        t = grid(b1, "model", "n_gpus", hardware=hw, engine=engine)
        tables[f"gpu_scaling_{hw}_{engine}"] = t
        where = dict(analysis="gpu_scaling", hardware=hw, engine=engine)
        groups = _columns(t)
        rows = [anova(groups, **where)]
        if len(groups) > 2:
            rows.append(anova(dict(list(groups.items())[1:]), **where))
        tests += [r for r in rows if r]
        tests += tukey(groups, **where)
    return tables, tests


def table_ii(c: pd.DataFrame, hardware: str) -> pd.DataFrame:
    """The paper's Table II on ``hardware``: per model, the baseline's best GPU count at batch 1,
    the fast engine at that count and at its own best, and the speed-ups (ratios of throughputs)."""
    base = grid(c, "model", "n_gpus", hardware=hardware, engine=BASE, batch_size=1)
    fast = grid(c, "model", "n_gpus", hardware=hardware, engine=FAST, batch_size=1)
    rows = []
    for model, r in base.iterrows():
        if r.isna().all():
            continue
        g = int(r.idxmax())
        f = fast.loc[model] if model in fast.index else pd.Series(dtype=float)
        same = f.get(g, np.nan)
        best_g = int(f.idxmax()) if f.notna().any() else pd.NA
        best = f.max() if f.notna().any() else np.nan
        rows.append(
            {
                "model": model,
                f"{BASE}_gpus": g,
                f"{BASE}_thp": r[g],
                f"{FAST}_same_thp": same,
                "speedup_same": same / r[g],
                f"{FAST}_best_gpus": best_g,
                f"{FAST}_best_thp": best,
                "speedup_best": best / r[g],
            }  # fmt: skip
        )
    return pd.DataFrame(rows).astype({f"{FAST}_best_gpus": "Int64"})


def speedup_summary(t2: pd.DataFrame) -> pd.DataFrame:
    """Mean and median of the two speed-up columns of a Table II, and how often the best counts differ."""
    return pd.DataFrame(
        {
            "mean": [t2["speedup_same"].mean(), t2["speedup_best"].mean()],
            "median": [t2["speedup_same"].median(), t2["speedup_best"].median()],
            "n": [t2["speedup_same"].notna().sum(), t2["speedup_best"].notna().sum()],
        },
        index=pd.Index(["same_gpus", "best_gpus"], name="comparison"),
    )


def batch_size(c: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], list[dict]]:
    """Per (hardware, engine, GPU count): model x batch size; ANOVA over batch sizes; Tukey HSD
    where the ANOVA rejects."""
    tables, tests = {}, []
    for (hw, engine, g), _ in c.groupby(["hardware", "engine", "n_gpus"]):
        t = grid(c, "model", "batch_size", hardware=hw, engine=engine, n_gpus=g)
        tables[f"batch_size_{hw}_{engine}_g{g}"] = t
        where = dict(analysis="batch_size", hardware=hw, engine=engine, n_gpus=int(g))
        row = anova(_columns(t), **where)
        if row:
            tests.append(row)
            if row["reject"]:
                tests += tukey(_columns(t), **where)
    return tables, tests


def engines(c: pd.DataFrame) -> list[dict]:
    """Fast engine vs baseline per (hardware, GPU count), paired by (model, batch size)."""
    tests = []
    for (hw, g), part in c.groupby(["hardware", "n_gpus"]):
        s = part.set_index(["engine", "model", "batch_size"])["throughput"]
        if FAST in s.index.get_level_values(0) and BASE in s.index.get_level_values(0):
            tests += paired_tests(s.loc[FAST], s.loc[BASE], FAST, BASE, analysis="engines", hardware=hw, n_gpus=int(g))
    return tests


def hardware_pairs(c: pd.DataFrame) -> pd.DataFrame:
    """Cells measured on both GPU models, with improvement = (new - old) / old."""
    s = c.set_index(CELL)["throughput"]
    if not {NEW_HW, OLD_HW} <= set(c["hardware"]):
        return pd.DataFrame(columns=["engine", "model", "n_gpus", "batch_size", NEW_HW, OLD_HW, "improvement"])
    pairs = pd.concat([s.xs(NEW_HW).rename(NEW_HW), s.xs(OLD_HW).rename(OLD_HW)], axis=1, join="inner").dropna()
    pairs["improvement"] = (pairs[NEW_HW] - pairs[OLD_HW]) / pairs[OLD_HW]
    return pairs.reset_index()


def hardware(pairs: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Improvement summary per engine (model "all") and per (engine, model); Wilcoxon and
    Cliff's delta of new vs old GPU for each."""
    summary, tests = [], []
    scopes = [(e, "all", p) for e, p in pairs.groupby("engine")]
    scopes += [(e, m, p) for (e, m), p in pairs.groupby(["engine", "model"])]
    for engine, model, p in scopes:
        where = dict(analysis="hardware", engine=engine, model=None if model == "all" else model)
        rows = paired_tests(p[NEW_HW].reset_index(drop=True), p[OLD_HW].reset_index(drop=True), NEW_HW, OLD_HW, **where)
        tests += rows
        by = {r["test"]: r for r in rows}
        summary.append(
            {
                "engine": engine,
                "model": model,
                "n": len(p),
                "mean_improvement": p["improvement"].mean(),
                "median_improvement": p["improvement"].median(),
                "wilcoxon_p": by.get("wilcoxon", {}).get("p_value"),
                "significant": by.get("wilcoxon", {}).get("reject"),
                "cliffs_delta": by.get("cliffs_delta", {}).get("effect"),
            }  # fmt: skip
        )
    return pd.DataFrame(summary), tests


def pearson(t: pd.DataFrame, a: str, b: str, **where) -> dict | None:
    """Pearson r of columns ``a`` and ``b`` over the rows that have both; None below 3 rows."""
    both = t[[a, b]].dropna()
    if len(both) < 3 or both[a].nunique() < 2 or both[b].nunique() < 2:
        return None
    r = sps.pearsonr(both[a], both[b])
    # Fisher's z interval has standard error 1/sqrt(n - 3): undefined for 3 points
    low, high = (float(v) for v in r.confidence_interval()) if len(both) > 3 else (None, None)
    return _test(
        analysis="correlation", test="pearson", group1=a, group2=b, statistic=float(r.statistic),
        p_value=float(r.pvalue), ci_low=low, ci_high=high, n=len(both),
        reject=bool(r.pvalue < ALPHA), **where,
    )  # fmt: skip


def correlations(t2: pd.DataFrame, catalog: pd.DataFrame, hardware: str) -> list[dict]:
    """Pearson between parameter count or HumanEval pass@1 and each throughput column of Table II."""
    t = t2.set_index("model").join(catalog, how="inner")
    cols = ((f"{BASE}_thp", BASE), (f"{FAST}_same_thp", FAST), (f"{FAST}_best_thp", FAST))
    rows = [pearson(t, a, col, hardware=hardware, engine=e) for col, e in cols for a in ("params_b", "humaneval_pass1")]
    return [r for r in rows if r]


def catalog_of(df: pd.DataFrame) -> pd.DataFrame:
    """Per model, parameter count and HumanEval pass@1 as the table carries them (may be empty)."""
    cat = df.dropna(subset=["params_b", "humaneval_pass1"], how="all").drop_duplicates("model")
    return cat.set_index("model")[["params_b", "humaneval_pass1"]].astype(float)


@dataclass
class Analysis:
    """Everything `infpop stats` writes: named tables, the tidy test table, and their inputs."""

    max_new_tokens: int
    cells: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    tests: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TEST_COLUMNS))
    hardware_pairs: pd.DataFrame | None = None
    catalog: pd.DataFrame | None = None
    #: Runs left out because they are marked invalid (``valid`` false).
    n_invalid: int = 0
    #: The configuration axes beyond the cell's on which the table varies, and one analysis per
    #: combination of their values (label -> analysis); empty when the table varies on none.
    split_by: list[str] = field(default_factory=list)
    parts: dict[str, Analysis] = field(default_factory=dict)


def analyse(df: pd.DataFrame, max_new_tokens: int | None = None) -> Analysis:
    """Run every recipe the table has data for, at :func:`choose_tokens` max_new_tokens.

    Invalid runs are left out and counted. Where the rows differ in a configuration axis beyond
    the cell's (workload, scenario, request rate, GPU memory share, ...), the recipes run once
    per combination of those axes: tests.csv gets a column per axis, each table's name a
    ``__<axis>-<value>`` suffix, and ``parts`` holds each combination's analysis."""
    df, n_invalid = valid_rows(df)
    max_new_tokens = choose_tokens(df, max_new_tokens)
    axes = split_axes(df, [*CELL, "max_new_tokens"])
    if not axes:
        a = _analyse_cells(df, max_new_tokens)
        a.n_invalid = n_invalid
        return a
    parts = {tuple(values): _analyse_cells(part, max_new_tokens) for values, part in df.groupby(axes, dropna=False)}
    wheres = {values: dict(zip(axes, values)) for values in parts}

    def stacked(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)

    at = TEST_COLUMNS.index("model") + 1
    tests = stacked(
        [p.tests.assign(**wheres[v]) for v, p in parts.items()], [*TEST_COLUMNS[:at], *axes, *TEST_COLUMNS[at:]]
    )
    first = next(iter(parts.values()))
    pairs = stacked(
        [p.hardware_pairs.assign(**wheres[v]) for v, p in parts.items()], [*axes, *first.hardware_pairs.columns]
    )
    return Analysis(
        max_new_tokens,
        stacked([p.cells.assign(**wheres[v]) for v, p in parts.items()], [*axes, *CELL, "throughput"]),
        {f"{name}__{_slug(wheres[v])}": t for v, p in parts.items() for name, t in p.tables.items()},
        tests.astype({"n_gpus": "Int64", "n": "Int64"}),
        pairs,
        catalog_of(df),
        n_invalid=n_invalid,
        split_by=axes,
        parts={_label(wheres[v]): p for v, p in parts.items()},
    )


def _value(v: object) -> str:
    return "none" if pd.isna(v) else f"{v:g}" if isinstance(v, float) else str(v)


def _label(where: dict) -> str:
    """How the report names one combination of split axes: ``workload = alpaca, request_rate = 4``."""
    return ", ".join(f"{k} = {_value(v)}" for k, v in where.items())


def _slug(where: dict) -> str:
    """The same for file names: ``workload-alpaca_request_rate-4``."""
    return "_".join(f"{k}-{_value(v)}" for k, v in where.items())


def _analyse_cells(df: pd.DataFrame, max_new_tokens: int) -> Analysis:
    """Every recipe on a table whose rows differ in no configuration axis beyond the cell's."""
    c = cells(df, max_new_tokens)
    tables, tests = {}, []
    t, r = gpu_scaling(c)
    tables.update(t)
    tests += r
    catalog = catalog_of(df)
    tests += [r for r in [pearson(catalog, "params_b", "humaneval_pass1")] if r]
    for hw in sorted(c["hardware"].unique()):
        present = set(c.loc[c["hardware"] == hw, "engine"])
        if {FAST, BASE} <= present:
            t2 = table_ii(c, hw)
            tables[f"table2_{hw}"] = t2
            tables[f"table2_{hw}_summary"] = speedup_summary(t2).reset_index()
            tests += correlations(t2, catalog, hw)
    t, r = batch_size(c)
    tables.update(t)
    tests += r
    tests += engines(c)
    pairs = hardware_pairs(c)
    if len(pairs):
        summary, r = hardware(pairs)
        tables["hardware_improvement"] = summary
        tests += r
    frame = pd.DataFrame(tests, columns=TEST_COLUMNS).astype({"n_gpus": "Int64", "n": "Int64"})
    return Analysis(max_new_tokens, c, tables, frame, pairs, catalog)
