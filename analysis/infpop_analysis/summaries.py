"""Per-configuration summaries: each configuration's repetitions with their uncertainty.

One row per configuration (every configuration axis the table has but ``repetition``) with n,
mean, median, standard deviation, coefficient of variation and a 95% percentile-bootstrap
interval of the mean throughput, the same for the latency percentiles of online trials, and the
median of the engine's counters where its results carry them (vLLM's KV-cache blocks,
preemptions and prompt tokens served from its prefix cache), and the settings the engine resolved
(vLLM's ``resolved_*`` columns).
``infpop stats`` writes it as ``configs.csv``; ``noisy`` marks a coefficient of variation above
the user's threshold. The values summarised are those the study's cells take (every
non-missing throughput of a valid run, an OOM's partial one included), so the summary and the
tables agree. Below two values there is no spread to estimate: std, cv and the interval are
NaN, never invented.

The percentile bootstrap is the interval ``scipy.stats.bootstrap`` computes; it needs no
distributional assumption, but with few repetitions it is too narrow (the mean of 3 normal
draws: about 76% coverage for a nominal 95%, 89% at 10, 94% at 100, measured by simulation),
and more so for skewed measurements (log-normal with sigma 0.5: 93.6% at 100).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from infpop_analysis.inference import CI_LEVEL, CV_THRESHOLD, MIN_REPETITIONS, SEED
from infpop_analysis.table import RESOLVED, config_axes, valid_rows

#: Resamples per interval: the endpoints' Monte Carlo error is small against the interval itself.
N_RESAMPLES = 2000
#: Resampled values held at once (8 bytes each): bounds the memory of a vectorised bootstrap.
MAX_VALUES = 10_000_000
#: Latency columns of online trials, each summarised under its name without ``_s``.
LATENCY_COLUMNS = [f"{m}_{p}_s" for m in ("latency", "ttft", "latency_per_token") for p in ("p50", "p90", "p99")]
#: Counters an engine reports per trial (vLLM: KV-cache blocks allocated, requests preempted,
#: prompt tokens served from its prefix cache), summarised as their median over the configuration's runs.
ENGINE_COUNTERS = ("kv_cache_blocks", "num_preemptions", "cached_prompt_tokens")
#: The settings the engine resolved (``resolved_*`` columns), shown as the configuration's runs had them.
RESOLVED_COLUMNS = [f"resolved_{name}" for name in RESOLVED]
STATS = ["n", "mean", "median", "std", "cv", "ci_low", "ci_high"]


def bootstrap_mean_ci(
    samples: np.ndarray, level: float = CI_LEVEL, n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of the mean of each row of a (configurations x n) array.

    NaN where n < 2; a row of equal values gets the degenerate interval [value, value] (no
    resample can differ from it, and scipy would warn and return NaN)."""
    x = np.atleast_2d(np.asarray(samples, dtype=float))
    low, high = np.full(len(x), np.nan), np.full(len(x), np.nan)
    if x.shape[1] < MIN_REPETITIONS:
        return low, high
    constant = np.ptp(x, axis=1) == 0
    low[constant] = high[constant] = x[constant, 0]
    rows = np.flatnonzero(~constant)
    rng = np.random.default_rng(seed)
    chunk = max(1, MAX_VALUES // (n_resamples * x.shape[1]))
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        res = sps.bootstrap(
            (x[part],), np.mean, axis=-1, vectorized=True, n_resamples=n_resamples,
            confidence_level=level, method="percentile", rng=rng,
        )  # fmt: skip
        low[part], high[part] = res.confidence_interval
    return low, high


def describe(groups: pd.core.groupby.SeriesGroupBy, prefix: str = "") -> pd.DataFrame:
    """n, mean, median, std, cv and the bootstrap interval of each group's non-missing values."""
    out = groups.agg(["count", "mean", "median", "std"]).reset_index(drop=True).rename(columns={"count": "n"})
    with np.errstate(divide="ignore", invalid="ignore"):
        out["cv"] = out["std"] / out["mean"]
    out["ci_low"], out["ci_high"] = np.nan, np.nan
    values = [v.dropna().to_numpy(dtype=float) for _, v in groups] if (out["n"] >= MIN_REPETITIONS).any() else []
    # One vectorised bootstrap per sample size: the groups of a study mostly share theirs.
    for n in sorted(n for n in set(out["n"]) if n >= MIN_REPETITIONS):
        idx = np.flatnonzero(out["n"].to_numpy() == n)
        low, high = bootstrap_mean_ci(np.stack([values[i] for i in idx]))
        out.loc[idx, "ci_low"], out.loc[idx, "ci_high"] = low, high
    return out.add_prefix(prefix)


def config_summaries(df: pd.DataFrame, cv_threshold: float = CV_THRESHOLD) -> pd.DataFrame:
    """configs.csv: one row per configuration of ``df`` (see the module docstring)."""
    # configs.csv names the study too, so summaries of several studies stay apart
    axes = [c for c in ("study",) if c in df and df[c].notna().any()] + config_axes(df)
    d = valid_rows(df)[0]
    if not axes or d.empty:
        return pd.DataFrame(columns=[*axes, *STATS, "ci_level", "noisy"])
    by = d.groupby(axes, dropna=False, observed=True, sort=True)
    keys = by.size().reset_index()[axes]
    parts = [keys, describe(by["throughput"]), pd.DataFrame({"ci_level": [CI_LEVEL] * len(keys)})]
    for col in LATENCY_COLUMNS:
        if col in d.columns and d[col].notna().any():
            stats = describe(by[col], f"{col.removesuffix('_s')}_")
            parts.append(stats.drop(columns=f"{col.removesuffix('_s')}_n"))
    counters = [c for c in ENGINE_COUNTERS if c in d.columns and d[c].notna().any()]
    if counters:
        parts.append(by[counters].median().reset_index(drop=True))
    settings = [c for c in RESOLVED_COLUMNS if c in d.columns and d[c].notna().any()]
    if settings:  # one engine per group: a configuration's runs share them; where not, its first run's
        parts.append(by[settings].first().reset_index(drop=True))
    out = pd.concat(parts, axis=1)
    out["noisy"] = out["cv"].gt(cv_threshold).fillna(False).astype(bool)
    return out
