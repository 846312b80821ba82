"""Tests that use the repetitions: does a difference exceed the run-to-run noise?

The study's tests compare one number per cell, so they cannot tell an effect from the noise
of measuring it once. Where configurations were measured at least twice, each of the study's
comparisons (GPU counts at batch 1, batch sizes, vLLM vs HF, A100 vs V100) gets a stratified
permutation test over the repetitions themselves:

- strata are the cells matched across the two levels (the model, and every other
  configuration axis the comparison does not set), as the study's tests match them;
- the statistic is the mean over strata of log(mean of level 1) - log(mean of level 2), so
  a model 100x faster than another weighs no more than it; ``effect`` is its exponential, the
  geometric mean of the throughput ratios;
- under the null hypothesis that the level does not matter, the repetitions of a stratum are
  exchangeable between the two levels: the labels are permuted within each stratum
  (:data:`N_PERMUTATIONS` seeded draws, p-value counted as in Phipson & Smyth 2010, so it is
  never 0);
- the p-values of a family (the pairs of one hardware, engine, GPU count) are Holm-adjusted,
  as Tukey's HSD adjusts the study's; ``reject`` says the difference exceeds the noise.

The inference is about the models measured (strata are fixed blocks), which is the question
"is this difference real or noise". With one stratum and 3 repetitions per level there are
only 20 ways to split 6 values, so the smallest attainable p is 0.1: such a comparison can
never exceed the noise at α = 0.05, and the report says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from infpop_analysis.stats import BASE, CELL, FAST, NEW_HW, OLD_HW, TEST_COLUMNS
from infpop_analysis.stats_conventions import ALPHA, MIN_REPETITIONS, SEED
from infpop_analysis.table import config_axes, split_axes, valid_rows

#: Draws of the permutation test: the smallest p it can give is 1e-4, far below any adjusted ALPHA.
N_PERMUTATIONS = 9999
#: The study's comparisons: analysis name -> (axes that scope a family, the axis compared,
#: rows kept, fixed pairs or None for every pair of levels).
FAMILIES = {
    "gpu_scaling": (["hardware", "engine"], "n_gpus", {"batch_size": 1}, None),
    "batch_size": (["hardware", "engine", "n_gpus"], "batch_size", {}, None),
    "engines": (["hardware", "n_gpus"], "engine", {}, [(FAST, BASE)]),
    "hardware": (["engine"], "hardware", {}, [(NEW_HW, OLD_HW)]),
}


def has_repetitions(df: pd.DataFrame) -> bool:
    """Whether any configuration of ``df`` has at least two throughputs."""
    axes = config_axes(df)
    d = valid_rows(df)[0].dropna(subset=["throughput"])
    return bool(axes) and bool((d.groupby(axes, dropna=False, observed=True).size() >= MIN_REPETITIONS).any())


def permutation_test(strata: list[tuple[np.ndarray, np.ndarray]], seed: int = SEED) -> tuple[float, float]:
    """Statistic (mean over strata of the log ratio of means) and its two-sided p-value."""
    rng = np.random.default_rng(seed)
    observed = np.mean([np.log(a.mean()) - np.log(b.mean()) for a, b in strata])
    total = np.zeros(N_PERMUTATIONS)
    for a, b in strata:
        pooled = np.tile(np.concatenate([a, b]), (N_PERMUTATIONS, 1))
        shuffled = rng.permuted(pooled, axis=1)
        total += np.log(shuffled[:, : len(a)].mean(axis=1)) - np.log(shuffled[:, len(a) :].mean(axis=1))
    null = total / len(strata)
    # a tolerance, so permutations equal to the observed split count despite rounding
    hits = np.count_nonzero(np.abs(null) >= abs(observed) - 1e-12)
    return float(observed), float((1 + hits) / (1 + N_PERMUTATIONS))


def _pair_strata(part: pd.DataFrame, axis: str, strata_axes: list[str], g1, g2) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for _, s in part.groupby(strata_axes, dropna=False, observed=True) if strata_axes else [(None, part)]:
        a = s.loc[s[axis] == g1, "throughput"].to_numpy(dtype=float)
        b = s.loc[s[axis] == g2, "throughput"].to_numpy(dtype=float)
        if len(a) >= MIN_REPETITIONS and len(b) >= MIN_REPETITIONS and (a > 0).all() and (b > 0).all():
            out.append((a, b))
    return out


def repetition_tests(df: pd.DataFrame, max_new_tokens: int) -> list[dict]:
    """Rows of the tidy test table (``test`` = "permutation") for every comparison of the study
    whose cells have repetitions; none for a table measured once per configuration."""
    d = valid_rows(df)[0]
    d = d[(d["max_new_tokens"] == max_new_tokens) & d["throughput"].notna()]
    if not has_repetitions(d):
        return []
    axes = config_axes(d)
    # As in the study's analyses, a workload, scenario, request rate or memory share is never
    # pooled with another: each combination of them is its own family of tests.
    split = split_axes(d, [*CELL, "max_new_tokens"])
    rows = []
    for analysis, (scope, axis, keep, pairs) in FAMILIES.items():
        sel = d
        for k, v in keep.items():
            sel = sel[sel[k] == v]
        strata_axes = [a for a in axes if a not in scope and a not in split and a != axis]
        for where, part in sel.groupby(scope + split, observed=True, dropna=False):
            levels = sorted(part[axis].unique())
            family = [p for p in (pairs or _all_pairs(levels)) if set(p) <= set(levels)]
            found = []
            for g1, g2 in family:
                strata = _pair_strata(part, axis, strata_axes, g1, g2)
                if strata:
                    stat, p = permutation_test(strata)
                    n = sum(len(a) + len(b) for a, b in strata)
                    found.append(dict(analysis=analysis, test="permutation", group1=str(g1), group2=str(g2),
                                      statistic=stat, effect=float(np.exp(stat)), p_value=p, n=n,
                                      **dict(zip(scope + split, where if isinstance(where, tuple) else (where,)))))  # fmt: skip
            if found:
                reject, adjusted, _, _ = multipletests([r["p_value"] for r in found], alpha=ALPHA, method="holm")
                for r, rej, adj in zip(found, reject, adjusted):
                    r.update(p_value=float(adj), reject=bool(rej))
            rows += found
    return [{c: r.get(c) for c in [*TEST_COLUMNS, *split]} for r in rows]


def _all_pairs(levels: list) -> list[tuple]:
    return [(a, b) for i, a in enumerate(levels) for b in levels[i + 1 :]]
