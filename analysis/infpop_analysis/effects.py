"""Cliff's delta and its confidence interval: the study's effect size, defined once here.

Neither scipy nor statsmodels provides it. The estimate is Cliff (1993): the share of pairs
(x_i, y_j) with x_i > y_j minus the share with x_i < y_j. Its variance is Cliff's unbiased
estimator, floored at (1 - d^2) / (n_x n_y - 1) as he recommends (the raw estimate can be
negative in small samples). The interval is the asymmetric one of Feng & Cliff (2004), which
stays inside [-1, 1] where a symmetric d +/- z s would not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from infpop_analysis.stats_conventions import CI_LEVEL


@dataclass(frozen=True)
class CliffsDelta:
    delta: float
    variance: float
    ci_low: float
    ci_high: float
    n_x: int
    n_y: int

    @property
    def magnitude(self) -> str:
        return magnitude(self.delta)


def magnitude(delta: float) -> str:
    """Romano et al. (2006) thresholds, the usual reading of |delta|."""
    d = abs(delta)
    return "negligible" if d < 0.147 else "small" if d < 0.33 else "medium" if d < 0.474 else "large"


def cliffs_delta(x: ArrayLike, y: ArrayLike, confidence: float = CI_LEVEL) -> CliffsDelta:
    """Cliff's delta of ``x`` over ``y`` (positive when x tends to be larger), with its CI."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or y.ndim != 1 or len(x) < 1 or len(y) < 1:
        raise ValueError(f"need two non-empty 1-D samples, got sizes {x.shape} and {y.shape}")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("samples contain NaN; drop missing values first")
    n, m = len(x), len(y)
    dom = np.sign(x[:, None] - y[None, :])
    d = float(dom.mean())
    variance = _variance(dom, d)
    low, high = _feng_cliff_interval(d, variance, norm.ppf((1 + confidence) / 2))
    return CliffsDelta(delta=d, variance=variance, ci_low=low, ci_high=high, n_x=n, n_y=m)


def _variance(dom: np.ndarray, d: float) -> float:
    """Cliff's (1993) unbiased variance of d from the dominance matrix; NaN below 2 x 2."""
    n, m = dom.shape
    if n < 2 or m < 2:
        return float("nan")
    rows = dom.mean(axis=1)
    cols = dom.mean(axis=0)
    s2 = (m**2 * ((rows - d) ** 2).sum() + n**2 * ((cols - d) ** 2).sum() - ((dom - d) ** 2).sum()) / (
        n * m * (n - 1) * (m - 1)
    )
    return float(max(s2, (1 - d**2) / (n * m - 1)))


def _feng_cliff_interval(d: float, variance: float, z: float) -> tuple[float, float]:
    """Asymmetric CI; when the variance is 0 (complete dominance) it is the point d itself."""
    if np.isnan(variance):
        return float("nan"), float("nan")
    if variance == 0:
        return d, d
    s = np.sqrt(variance)
    centre = d - d**3
    half = z * s * np.sqrt((1 - d**2) ** 2 + z**2 * variance)
    denom = 1 - d**2 + z**2 * variance
    return float((centre - half) / denom), float((centre + half) / denom)
