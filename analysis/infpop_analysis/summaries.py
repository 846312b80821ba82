"""Per-configuration summaries: each configuration's repetitions with their uncertainty.

One row per configuration (every configuration axis the table has but ``repetition``) with n,
mean, median, standard deviation, coefficient of variation and a 95% Student-t interval of the
mean throughput (``ci_method`` names it), the same for the latency percentiles of online trials,
the median of the engine's counters where its results carry them (vLLM's KV-cache blocks,
preemptions and prompt tokens served from its prefix cache), the median energy per token,
tokens/s per watt and roofline fraction (missing where not measured) with what the energy
counts and what bounds the configuration, and the settings the engine resolved (vLLM's
``resolved_*`` columns).
``infpop stats`` writes it as ``configs.csv``; ``noisy`` marks a coefficient of variation above
the user's threshold; ``repetitions`` counts the repetitions that ran and ``stop_reason`` says
why no more did (:data:`STOP_REASONS`), from what the trial loop recorded where it decided. The values summarised are those the study's cells take (every
non-missing throughput of a valid run, an OOM's partial one included), so the summary and the
tables agree. Below two values there is no spread to estimate: std, cv and the interval are
NaN, never invented.

Why Student-t: studies run 3 to 10 repetitions, and there the bootstrap intervals are far too
narrow, while Student's interval keeps its level even for right-skewed timing noise.
``benchmarks/intervals.py`` measures the coverage of nominal 95% intervals of the mean (2000
draws per cell, BCa 200; normal noise with CV 5%, then log-normal with sigma 0.2; percent):

==============================  ===============  ===============  ===============
method                          n = 3            n = 5            n = 10
==============================  ===============  ===============  ===============
Student-t (this module)         95.2 / 94.8 %    95.2 / 94.8 %    94.3 / 94.8 %
percentile bootstrap (before)   75.8 / 75.1 %    84.8 / 83.5 %    90.2 / 89.8 %
BCa bootstrap                   77.5 / 73.5 %    86.0 / 83.0 %    91.0 / 89.5 %
studentized bootstrap           87.8 / 83.9 %    94.1 / 94.7 %    94.3 / 94.3 %
==============================  ===============  ===============  ===============

The studentized bootstrap approaches Student-t from n = 5 but not at 3 (a resample of 3 values
often has no spread); BCa's acceleration needs more values than a study has.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats as sps

from infpop_analysis.stats_conventions import CI_LEVEL, CV_THRESHOLD, MIN_REPETITIONS
from infpop_analysis.table import RESOLVED, config_axes, valid_rows

#: The interval configs.csv gives, named in its ``ci_method`` column and in the report.
CI_METHOD = "student-t"
#: Latency columns of online trials, each summarised under its name without ``_s``.
LATENCY_COLUMNS = [f"{m}_{p}_s" for m in ("latency", "ttft", "latency_per_token") for p in ("p50", "p90", "p99")]
#: Counters an engine reports per trial (vLLM: KV-cache blocks allocated, requests preempted,
#: prompt tokens served from its prefix cache), summarised as their median over the configuration's runs.
ENGINE_COUNTERS = ("kv_cache_blocks", "num_preemptions", "cached_prompt_tokens")
#: Per-trial energy and roofline measures (:func:`infpop_analysis.table._energy_columns`), summarised
#: as their median over the configuration's runs; all three where the table has any of them (a
#: sweep's, with a bound per trial), missing where not measured; none for the published data.
EFFICIENCY = ("energy_j_per_token", "tokens_per_s_per_w", "roofline_fraction")
#: A capacity search's outcome (:mod:`infpop.capacity`), per GPU too, as the median over the
#: configuration's runs; only where the table has capacity searches.
CAPACITY = ("capacity_rps", "capacity_rps_per_gpu", "capacity_tokens_s", "capacity_tokens_s_per_gpu")
#: The settings the engine resolved (``resolved_*`` columns), shown as the configuration's runs had them.
RESOLVED_COLUMNS = [f"resolved_{name}" for name in RESOLVED]
STATS = ["n", "mean", "median", "std", "cv", "ci_low", "ci_high"]
#: ``stop_reason`` values, in the order they take precedence.
STOP_REASONS = {
    "failed": "no repetition ran ok (OOM, error, timeout, or pruned after an OOM)",
    "target": "adaptive: its interval reached the target half-width after `repetitions`",
    "max": "adaptive: ran to max with its interval still wider than the target",
    "planned": "ran the repetitions planned (a fixed number, or adaptive ones not yet finished)",
}
#: Statuses of repetitions that were recorded without running.
SKIPPED = ("skipped_enough", "skipped_oom")


def mean_ci(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Student-t interval of the mean of each row of a (configurations x n) array.

    NaN where n < 2; a row of equal values gets the degenerate interval [value, value]."""
    x = np.atleast_2d(np.asarray(samples, dtype=float))
    return t_interval(
        x.mean(axis=1), x.std(axis=1, ddof=1) if x.shape[1] >= MIN_REPETITIONS else np.nan, x.shape[1], level
    )


def t_interval(mean: ArrayLike, std: ArrayLike, n: ArrayLike, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """mean -+ t(n - 1) * std / sqrt(n), element-wise (configs.csv's groups, each with its own n);
    NaN where n < 2."""
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = (
            sps.t.ppf((1 + level) / 2, np.where(n >= MIN_REPETITIONS, n - 1, np.nan))
            * np.asarray(std, dtype=float)
            / np.sqrt(n)
        )
    mean = np.asarray(mean, dtype=float)
    return np.atleast_1d(mean - half), np.atleast_1d(mean + half)


def describe(groups: pd.core.groupby.SeriesGroupBy, prefix: str = "") -> pd.DataFrame:
    """n, mean, median, std, cv and the Student-t interval of each group's non-missing values."""
    out = groups.agg(["count", "mean", "median", "std"]).reset_index(drop=True).rename(columns={"count": "n"})
    with np.errstate(divide="ignore", invalid="ignore"):
        out["cv"] = out["std"] / out["mean"]
    out["ci_low"], out["ci_high"] = t_interval(out["mean"], out["std"], out["n"])
    return out.add_prefix(prefix)


def stops(d: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """``repetitions`` and ``stop_reason`` of each configuration, in ``groupby(axes)`` order."""
    status = d["status"].astype("string")
    reason = (
        d["stop_reason"].astype("string") if "stop_reason" in d else pd.Series(pd.NA, index=d.index, dtype="string")
    )
    flags = d[axes].assign(
        repetitions=~status.isin(SKIPPED).fillna(False),
        ok=status.eq("ok").fillna(False),
        target=reason.eq("target").fillna(False),
        max=reason.eq("max").fillna(False),
    )
    counts = flags.groupby(axes, dropna=False, observed=True, sort=True).sum().reset_index(drop=True)
    which = [counts["ok"].eq(0), counts["target"].gt(0), counts["max"].gt(0)]
    return pd.DataFrame(
        {
            "repetitions": counts["repetitions"].astype(int),
            "stop_reason": np.select(which, list(STOP_REASONS)[:3], default="planned"),
        }
    )


def config_summaries(df: pd.DataFrame, cv_threshold: float = CV_THRESHOLD) -> pd.DataFrame:
    """configs.csv: one row per configuration of ``df`` (see the module docstring)."""
    # configs.csv names the study too, so summaries of several studies stay apart
    axes = [c for c in ("study",) if c in df and df[c].notna().any()] + config_axes(df)
    d = valid_rows(df)[0]
    if not axes or d.empty:
        return pd.DataFrame(columns=[*axes, *STATS, "ci_level", "ci_method", "noisy", "repetitions", "stop_reason"])
    by = d.groupby(axes, dropna=False, observed=True, sort=True)
    keys = by.size().reset_index()[axes]
    parts = [
        keys,
        describe(by["throughput"]),
        pd.DataFrame({"ci_level": [CI_LEVEL] * len(keys), "ci_method": [CI_METHOD] * len(keys)}),
    ]
    for col in LATENCY_COLUMNS:
        if col in d.columns and d[col].notna().any():
            stats = describe(by[col], f"{col.removesuffix('_s')}_")
            parts.append(stats.drop(columns=f"{col.removesuffix('_s')}_n"))
    counters = [c for c in ENGINE_COUNTERS if c in d.columns and d[c].notna().any()]
    if counters:
        parts.append(by[counters].median().reset_index(drop=True))
    if any(c in d.columns and d[c].notna().any() for c in EFFICIENCY):
        parts.append(by[[c for c in EFFICIENCY if c in d.columns]].median().reset_index(drop=True))
    if any(c in d.columns and d[c].notna().any() for c in CAPACITY):
        parts.append(by[list(CAPACITY)].median().reset_index(drop=True))
    settings = [c for c in ["energy_parts", "bound_by", *RESOLVED_COLUMNS] if c in d.columns and d[c].notna().any()]
    if settings:  # one engine per group: a configuration's runs share them; where not, its first run's
        parts.append(by[settings].first().reset_index(drop=True))
    out = pd.concat(parts, axis=1)
    out["noisy"] = out["cv"].gt(cv_threshold).fillna(False).astype(bool)
    return pd.concat([out, stops(d, axes)], axis=1)
