"""``infpop stats``: write the tables, tests.csv and report.md of an :class:`~infpop_analysis.stats.Analysis`.

The report is generated text over the computed tables: every number in it comes from the
data. For the published study it ends with the paper's statements checked against the data
(:mod:`infpop_analysis.claims`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from infpop.atomic import atomic_file, output_folder, write_atomic

from infpop_analysis import layout
from infpop_analysis.claims import claims_section
from infpop_analysis.effects import magnitude
from infpop_analysis.equivalence import equivalence
from infpop_analysis.formatting import fmt, markdown_table, pct
from infpop_analysis.replicates import repetition_tests
from infpop_analysis.stats import BASE, FAST, NEW_HW, OLD_HW, Analysis, analyse
from infpop_analysis.stats_conventions import ALPHA, CV_THRESHOLD, MIN_REPETITIONS
from infpop_analysis.summaries import RESOLVED_COLUMNS, config_summaries
from infpop_analysis.table import config_axes, path_name

ENGINE_NAMES = {"hf": "HF pipelines", "vllm": "vLLM"}
HW_NAMES = {"a100": "A100", "v100": "V100"}


def _tests(a: Analysis, **where) -> pd.DataFrame:
    t = a.tests
    for k, v in where.items():
        t = t[t[k].isna()] if v is None else t[t[k] == v]
    return t


def _anova_sentence(row: pd.Series | None, groups: str) -> str:
    if row is None:
        return f"ANOVA across {groups}: not enough data."
    verdict = "rejects" if row["reject"] else "does not reject"
    return (
        f"ANOVA across {groups} ({row['group1']}): F = {fmt(row['statistic'], 4)}, p = {fmt(row['p_value'], 4)}, "
        f"n = {row['n']}; it {verdict} H0 at α = {ALPHA}."
    )


def section_gpu_scaling(a: Analysis) -> list[str]:
    out = ["## GPU scaling at batch size 1 (online inference)\n"]
    keys = sorted(k for k in a.tables if k.startswith("gpu_scaling_"))
    if not keys:
        return out + ["No batch-size-1 measurements.\n"]
    for key in keys:
        hw, engine = key.removeprefix("gpu_scaling_").split("_", 1)
        t = a.tables[key]
        out.append(f"### {ENGINE_NAMES.get(engine, engine)} on {HW_NAMES.get(hw, hw)}\n")
        best = t.idxmax(axis=1, skipna=True).dropna() if t.notna().any().any() else pd.Series(dtype=float)
        counts = best.astype(int).value_counts().sort_index()
        col1 = t[t.columns[0]].dropna()
        if len(col1):
            out.append(
                f"With {t.columns[0]} GPU(s), throughput ranges from {fmt(col1.min(), 1)} to {fmt(col1.max(), 1)} t/s "
                f"over {len(col1)} models. "
            )
        out.append(
            "Models by the GPU count that maximises their throughput: "
            + ", ".join(f"{g} GPU(s): {n}" for g, n in counts.items())
            + ".\n"
        )
        rows = _tests(a, analysis="gpu_scaling", hardware=hw, engine=engine, test="anova")
        for _, row in rows.iterrows():
            out.append("- " + _anova_sentence(row, "GPU counts"))
        tk = _tests(a, analysis="gpu_scaling", hardware=hw, engine=engine, test="tukey")
        if len(tk):
            sig = tk[tk["reject"].astype(bool)]
            pairs = ", ".join(f"{r.group1} vs {r.group2} (p = {fmt(r.p_value, 4)})" for r in sig.itertuples())
            out.append(
                f"- Tukey HSD: {len(sig)} of {len(tk)} pairs differ significantly" + (f": {pairs}." if pairs else ".")
            )
        out.append("\n" + markdown_table(t.rename_axis(index="model", columns=None), 1))
    return out


def section_table_ii(a: Analysis) -> list[str]:
    out = []
    for key in sorted(k for k in a.tables if k.startswith("table2_") and not k.endswith("_summary")):
        hw = key.removeprefix("table2_")
        t2, summary = a.tables[key], a.tables[f"{key}_summary"].set_index("comparison")
        out.append(
            f"## {ENGINE_NAMES[FAST]} vs {ENGINE_NAMES[BASE]} at batch size 1 on {HW_NAMES.get(hw, hw)} (Table II)\n"
        )
        differ = t2[t2[f"{FAST}_best_gpus"] != t2[f"{BASE}_gpus"]]
        more = int((differ[f"{FAST}_best_gpus"] > differ[f"{BASE}_gpus"]).sum())
        out.append(
            f"At the GPU count that maximises {ENGINE_NAMES[BASE]} throughput, {ENGINE_NAMES[FAST]} is faster by "
            f"{fmt(summary.loc['same_gpus', 'mean'], 2)}X on average (median {fmt(summary.loc['same_gpus', 'median'], 2)}X). "
            f"For {len(differ)} of {len(t2)} models {ENGINE_NAMES[FAST]} peaks at another GPU count "
            f"({more} with more GPUs, {len(differ) - more} with fewer); at its own best it is faster by "
            f"{fmt(summary.loc['best_gpus', 'mean'], 2)}X on average (median {fmt(summary.loc['best_gpus', 'median'], 2)}X).\n"
        )
        out.append(markdown_table(t2, 2))
    return out


def section_batch_size(a: Analysis) -> list[str]:
    out = ["## Batch size\n"]
    anovas = _tests(a, analysis="batch_size", test="anova")
    if not len(anovas):
        return out + ["Not enough data for an ANOVA across batch sizes (it needs several models per batch size).\n"]
    for (hw, engine), part in anovas.groupby(["hardware", "engine"]):
        rej = [str(g) for g in part.loc[part["reject"].astype(bool), "n_gpus"]]
        keep = [str(g) for g in part.loc[~part["reject"].astype(bool), "n_gpus"]]
        out.append(
            f"- {ENGINE_NAMES.get(engine, engine)} on {HW_NAMES.get(hw, hw)}: the ANOVA across batch sizes rejects H0 "
            f"with {', '.join(rej) or 'no'} GPU(s)"
            + (f" and not with {', '.join(keep)}" if keep else "")
            + "; "
            + "; ".join(
                f"{r.n_gpus} GPU(s): F = {fmt(r.statistic, 2)}, p = {fmt(r.p_value, 4)}" for r in part.itertuples()
            )
            + "."
        )
    out.append("\nThe model x batch size tables are in `tables/batch_size_*.md`; Tukey HSD pairs are in tests.csv.\n")
    eng = _tests(a, analysis="engines")
    if len(eng):
        out.append(f"### {ENGINE_NAMES[FAST]} vs {ENGINE_NAMES[BASE]}, paired by (model, batch size)\n")
        deltas = eng[eng["test"] == "cliffs_delta"]
        rows = []
        for (hw, g), part in eng.groupby(["hardware", "n_gpus"]):
            w = part[part["test"] == "wilcoxon"]
            c = part[part["test"] == "cliffs_delta"].iloc[0]
            rows.append(
                {
                    "hardware": hw,
                    "GPUs": g,
                    "pairs": c["n"],
                    "Wilcoxon p": w["p_value"].iloc[0] if len(w) else np.nan,
                    "Cliff's delta": c["effect"],
                    "95% CI": f"[{fmt(c['ci_low'], 3)}, {fmt(c['ci_high'], 3)}]",
                }  # fmt: skip
            )
        w = eng[eng["test"] == "wilcoxon"]
        out.append(
            f"The Wilcoxon signed-rank test rejects H0 for {int(w['reject'].astype(bool).sum())} of {len(w)} "
            f"(hardware, GPU count) configurations; the mean Cliff's delta over the {len(deltas)} configurations is "
            f"{fmt(deltas['effect'].mean(), 4)} ({ENGINE_NAMES[FAST]} higher when positive).\n"
        )
        out.append(markdown_table(pd.DataFrame(rows), 4))
    return out


def section_hardware(a: Analysis) -> list[str]:
    out = [f"## {HW_NAMES[NEW_HW]} vs {HW_NAMES[OLD_HW]}\n"]
    if "hardware_improvement" not in a.tables:
        return out + [f"No (model, GPU count, batch size) cell was measured on both {NEW_HW} and {OLD_HW}.\n"]
    s = a.tables["hardware_improvement"]
    for _, r in s[s["model"] == "all"].iterrows():
        top = s[(s["engine"] == r["engine"]) & (s["model"] != "all") & (s["mean_improvement"] >= 1)]
        out.append(
            f"- {ENGINE_NAMES.get(r['engine'], r['engine'])}: over {r['n']} paired cells the throughput on "
            f"{HW_NAMES[NEW_HW]} is higher by {pct(r['mean_improvement'])} on average (median {pct(r['median_improvement'])}); "
            f"Wilcoxon p = {fmt(r['wilcoxon_p'], 4)} ({'significant' if r['significant'] else 'not significant'}), "
            f"Cliff's delta = {fmt(r['cliffs_delta'], 4)} ({magnitude(r['cliffs_delta'])}). "
            "Models with a mean improvement of 100% or more: "
            f"{', '.join(top['model']) or 'none'}."
        )
    table = s.assign(
        mean_improvement=s["mean_improvement"].map(pct), median_improvement=s["median_improvement"].map(pct)
    )
    return out + ["", markdown_table(table, 4)]


def section_correlations(a: Analysis) -> list[str]:
    out = ["## Correlations with model size and HumanEval pass@1\n"]
    c = _tests(a, analysis="correlation")
    if not len(c):
        return out + ["The table carries no parameter counts or HumanEval scores (import with `--catalog`).\n"]
    rows = c[["hardware", "engine", "group1", "group2", "statistic", "p_value", "ci_low", "ci_high", "n"]]
    rows = rows.rename(columns={"statistic": "Pearson r", "p_value": "p"})
    return out + [
        "Throughput columns are those of Table II (`hf_thp` = HF at its best GPU count; `vllm_same_thp`, "
        "`vllm_best_thp`).\n",
        markdown_table(rows.reset_index(drop=True), 4),
    ]


#: Rows of configs.csv the report lists before it shows only the noisy ones.
MAX_CONFIG_ROWS = 60


def section_configs(configs: pd.DataFrame, cv_threshold: float) -> list[str]:
    """Each configuration's repetitions: n, mean and its 95% interval, CV, flagged when noisy."""
    out = ["## Repetitions: each configuration with its interval\n"]
    measured = configs[configs["n"] > 0]
    if not len(measured):
        return out + ["No configuration has a throughput.\n"]
    if measured["n"].max() < MIN_REPETITIONS:
        return out + [
            f"Every configuration was measured once (n = 1 for all {len(measured)} configurations with a throughput), "
            "as the published study measured them: there is no spread to estimate, so configs.csv leaves the standard "
            "deviation, the coefficient of variation and the 95% interval empty rather than inventing them.\n"
        ]
    noisy = measured[measured["noisy"]]
    out.append(
        f"configs.csv gives each of the {len(configs)} configurations its n ({int(measured['n'].min())} to "
        f"{int(measured['n'].max())} repetitions with a throughput), mean, median, standard deviation, coefficient of "
        f"variation (CV) and a {100 * configs['ci_level'].iloc[0]:.0f}% interval of the mean throughput "
        f"({configs['ci_method'].iloc[0]}; by simulation it holds its level from 3 repetitions on, for normal and right-skewed "
        f"noise alike: `benchmarks/intervals.py`). {len(noisy)} "
        f"configuration(s) have a CV above {fmt(cv_threshold, 2)} (`--cv-threshold`), flagged **noisy**; their "
        "differences from neighbours deserve more repetitions before they are believed.\n"
    )
    axes = [c for c in config_axes(configs) if configs[c].nunique(dropna=False) > 1]
    shown = measured if len(measured) <= MAX_CONFIG_ROWS else noisy
    if len(shown) < len(measured):
        out.append(f"{len(measured)} configurations are too many to list: only the noisy ones follow.\n")
    table = pd.DataFrame(
        {
            **{c: shown[c] for c in axes},
            "n": shown["n"],
            "mean t/s": shown["mean"],
            "95% CI": [f"[{fmt(lo, 1)}, {fmt(hi, 1)}]" for lo, hi in zip(shown["ci_low"], shown["ci_high"])],
            "CV": shown["cv"],
            "noisy": ["**noisy**" if x else "" for x in shown["noisy"]],
            # what the engine resolved (vLLM's cap, prefill budget, cache...) and served from its cache
            **{
                c.removeprefix("resolved_") if c.removeprefix("resolved_") not in axes else c: shown[c]
                for c in [*RESOLVED_COLUMNS, "cached_prompt_tokens"]
                if c in shown and shown[c].notna().any()
            },
        }
    )
    return out + [markdown_table(table.reset_index(drop=True), 3)]


def _study_verdict(a: Analysis, r: pd.Series) -> str:
    """The study's own test of the same pair on cell medians (Tukey HSD or Wilcoxon), if it ran."""
    t = a.tests[(a.tests["analysis"] == r["analysis"]) & a.tests["test"].isin(["tukey", "wilcoxon"])]
    for col in ("hardware", "engine", "n_gpus"):
        if pd.notna(r[col]):
            t = t[t[col] == r[col]]
    same = t[
        ((t["group1"] == r["group1"]) & (t["group2"] == r["group2"]))
        | ((t["group1"] == r["group2"]) & (t["group2"] == r["group1"]))
    ]
    if not len(same):
        return "not run"
    row = same.iloc[0]
    return f"{row['test']}: {'rejects' if row['reject'] else 'does not reject'} (p = {fmt(row['p_value'], 4)})"


def section_repetition_tests(a: Analysis, configs: pd.DataFrame) -> list[str]:
    """The study's comparisons tested against the noise of repetitions (:mod:`infpop_analysis.replicates`)."""
    out = ["## Differences against the noise of repetitions\n"]
    perm = a.tests[a.tests["test"] == "permutation"]
    if not len(perm):
        once = not len(configs) or configs["n"].max() < MIN_REPETITIONS
        return out + [
            "The table has one repetition per configuration, so no test can compare a difference with the noise of "
            "measuring it; the tests above compare single measurements.\n"
            if once
            else "No comparison has at least 2 repetitions of each side in a matched cell.\n"
        ]
    out.append(
        "Beside the study's tests on cell medians, each comparison is tested on the repetitions themselves: a "
        "permutation test stratified by the matched cells (the model and every other axis the comparison does not "
        "set), statistic = mean log ratio of the two sides' mean throughputs, ratio = its exponential (side 1 over "
        f"side 2), p-values Holm-adjusted within each scope. A difference *exceeds the noise* when the adjusted p is "
        f"below α = {ALPHA}. With a single matched cell and 3 repetitions a side, the smallest attainable p is 0.1: "
        "such a comparison needs more repetitions or more models to exceed the noise.\n"
    )
    rows = [
        {
            "analysis": r["analysis"],
            "scope": ", ".join(f"{c} {r[c]}" for c in ("hardware", "engine", "n_gpus") if pd.notna(r[c])),
            "side 1": r["group1"],
            "side 2": r["group2"],
            "ratio": r["effect"],
            "p (Holm)": r["p_value"],
            "exceeds noise": "yes" if r["reject"] else "no",
            "study's test on cell medians": _study_verdict(a, r),
        }
        for _, r in perm.iterrows()
    ]
    n_yes = int(perm["reject"].astype(bool).sum())
    out.append(f"{n_yes} of {len(perm)} differences exceed the noise.\n")
    return out + [markdown_table(pd.DataFrame(rows), 4)]


def render(a: Analysis, study: str, configs: pd.DataFrame | None = None, cv_threshold: float = CV_THRESHOLD) -> str:
    """report.md of an analysis."""
    hws = ", ".join(HW_NAMES.get(h, h) for h in sorted(a.cells["hardware"].unique()))
    lines = [
        f"# Results: {study}\n",
        f"Generated by `infpop stats` from the tidy table: max_new_tokens = {a.max_new_tokens}; one throughput per "
        f"(hardware, engine, model, GPU count, batch size) cell, the median of its non-missing throughputs (an OOM run's "
        f"partial throughput counts, a cell with none is missing). {len(a.cells)} cells on {hws or 'no hardware'}; "
        f"{len(a.tests)} tests in tests.csv; α = {ALPHA}.\n",
    ]
    if a.n_invalid:
        lines.append(f"{a.n_invalid} invalid run(s) left out (marked valid = false: too short or too few requests).\n")
    sections = (section_gpu_scaling, section_table_ii, section_batch_size, section_hardware, section_correlations)
    if a.parts:
        lines.append(
            f"The trials differ in {', '.join(a.split_by)}: every analysis runs separately for each combination "
            "of their values and never pools them; tests.csv has a column for each.\n"
        )
        for label, part in a.parts.items():
            lines.append(f"# {label}\n")
            lines += [line for section in sections for line in section(part)]
    else:
        lines += [line for section in sections for line in section(a)]
    if configs is not None:
        lines += section_configs(configs, cv_threshold) + section_repetition_tests(a, configs)
    lines += claims_section(a, study)
    return "\n".join(lines).rstrip() + "\n"


def write_stats(
    df: pd.DataFrame, out_dir: str | Path, max_new_tokens: int | None = None, cv_threshold: float = CV_THRESHOLD
) -> list[Path]:
    """Run :func:`analyse` and the repetition-aware tests, and write tests.csv, configs.csv, equivalence.csv,
    tables/*.csv|.md and report.md into ``out_dir``."""
    out_dir = Path(out_dir)
    with output_folder(out_dir, "infpop stats"):
        return _write_stats(df, out_dir, max_new_tokens, cv_threshold)


def _to_csv(table: pd.DataFrame, path: Path, **kwargs) -> Path:
    with atomic_file(path) as tmp:
        table.to_csv(tmp, **kwargs)
    return path


def _write_stats(df: pd.DataFrame, out_dir: Path, max_new_tokens: int | None, cv_threshold: float) -> list[Path]:
    a = analyse(df, max_new_tokens)
    perm = repetition_tests(df, a.max_new_tokens)
    if perm:
        a.tests = pd.concat([a.tests, pd.DataFrame(perm)], ignore_index=True)
        a.tests = a.tests.astype({"n_gpus": "Int64", "n": "Int64"})
    configs = config_summaries(df, cv_threshold)
    for name in a.tables:  # named after hardware, engine and axis values: checked before anything is written
        path_name(name, "statistics table")
    same_outputs = equivalence(df)  # a malformed fingerprint is refused before anything is written
    written = [
        _to_csv(configs, out_dir / layout.CONFIGS, index=False),
        _to_csv(same_outputs, out_dir / layout.EQUIVALENCE, index=False),
        _to_csv(a.tests, out_dir / layout.TESTS, index=False),
    ]
    for name, table in a.tables.items():
        md = layout.stats_table(out_dir, name, ".md")
        write_atomic(md, markdown_table(table, 4))
        written += [_to_csv(table, layout.stats_table(out_dir, name, ".csv")), md]
    if a.hardware_pairs is not None and len(a.hardware_pairs):
        written.append(_to_csv(a.hardware_pairs, layout.stats_table(out_dir, "hardware_pairs", ".csv"), index=False))
    studies = sorted(df["study"].dropna().unique())
    path = out_dir / layout.STATS_REPORT
    write_atomic(path, render(a, ", ".join(studies) or "unnamed study", configs, cv_threshold))
    written.append(path)
    return written
