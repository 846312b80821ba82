"""Coverage of interval methods at the repetitions studies run: the evidence for the choice
:mod:`infpop_analysis.summaries` (one configuration's mean) and :mod:`infpop_analysis.compare`
(the ratio of two studies' means) make.

For n = 3, 5, 10 repetitions under normal noise (CV 5%) and right-skewed log-normal noise
(sigma 0.2), it draws many configurations from a known distribution and counts how often each
method's 95% interval holds the true mean (or the true ratio of two means, B 10% faster than A).
Methods for the mean: Student-t, the percentile bootstrap the project used before, BCa and the
studentized (bootstrap-t) bootstrap, all as ``scipy.stats`` computes them. For the ratio: the
Welch t-interval of the difference of log means, exponentiated, and the percentile bootstrap
of the ratio of means. Seeded; about 10 s.

    python benchmarks/intervals.py [--draws 2000] [--resamples 999]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats as sps

LEVEL = 0.95
MEAN = 100.0
NOISES = {
    "normal": lambda rng, size: rng.normal(MEAN, 0.05 * MEAN, size),
    # scaled so that the true mean is MEAN: exp(mu + sigma^2 / 2) = MEAN
    "lognormal": lambda rng, size: rng.lognormal(np.log(MEAN) - 0.02, 0.2, size),
}


def t_interval(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Student-t interval of the mean of each row."""
    n = x.shape[1]
    half = sps.t.ppf((1 + LEVEL) / 2, n - 1) * x.std(axis=1, ddof=1) / np.sqrt(n)
    return x.mean(axis=1) - half, x.mean(axis=1) + half


def bootstrap_interval(x: np.ndarray, method: str, resamples: int, rng: np.random.Generator):
    """scipy's bootstrap interval of the mean of each row (BCa is not vectorised over rows)."""
    if method == "bca":
        bounds = [
            sps.bootstrap((row,), np.mean, n_resamples=resamples, method="BCa", rng=rng).confidence_interval
            for row in x
        ]
        return np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    res = sps.bootstrap((x,), np.mean, axis=-1, n_resamples=resamples, method=method, rng=rng)
    return res.confidence_interval


def welch_log_ratio(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """exp of the Welch t-interval of mean(log b) - mean(log a), row by row."""
    la, lb = np.log(a), np.log(b)
    va, vb = la.var(axis=1, ddof=1) / la.shape[1], lb.var(axis=1, ddof=1) / lb.shape[1]
    df = (va + vb) ** 2 / (va**2 / (la.shape[1] - 1) + vb**2 / (lb.shape[1] - 1))
    d = lb.mean(axis=1) - la.mean(axis=1)
    half = sps.t.ppf((1 + LEVEL) / 2, df) * np.sqrt(va + vb)
    return np.exp(d - half), np.exp(d + half)


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, resamples: int, rng: np.random.Generator):
    """Percentile bootstrap of mean(b) / mean(a), each side resampled on its own."""
    res = sps.bootstrap(
        (a, b), lambda x, y, axis: y.mean(axis=axis) / x.mean(axis=axis), axis=-1, n_resamples=resamples,
        method="percentile", rng=rng,
    )  # fmt: skip
    return res.confidence_interval


def bootstrap_t(x: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Studentized (bootstrap-t) interval of the mean of each row: the quantiles of the
    resampled t statistic replace Student's. Resamples without spread (all draws of one value,
    frequent at n = 3) have no t and are left out."""
    n = x.shape[1]
    mean, se = x.mean(axis=1), x.std(axis=1, ddof=1) / np.sqrt(n)
    idx = rng.integers(0, n, (x.shape[0], resamples, n))
    res = np.take_along_axis(x[:, None, :], idx, axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (res.mean(axis=2) - mean[:, None]) / (res.std(axis=2, ddof=1) / np.sqrt(n))
    t = np.where(np.isfinite(t), t, np.nan)
    q_lo, q_hi = np.nanquantile(t, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=1)
    return mean - q_hi * se, mean - q_lo * se


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=2000, help="configurations per (n, noise); BCa uses a tenth")
    ap.add_argument("--resamples", type=int, default=999)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"coverage of nominal {LEVEL:.0%} intervals ({args.draws} draws; BCa {args.draws // 10})")
    print(f"{'method':<26}{'noise':<11}" + "".join(f"n={n:<7}" for n in (3, 5, 10)))
    rows: dict[tuple[str, str], list[float]] = {}
    for noise, draw in NOISES.items():
        for n in (3, 5, 10):
            x = draw(rng, (args.draws, n))
            methods = {
                "mean: student-t": t_interval(x),
                "mean: percentile boot": bootstrap_interval(x, "percentile", args.resamples, rng),
                "mean: studentized boot": bootstrap_t(x, args.resamples, rng),
                "mean: BCa boot": bootstrap_interval(x[: args.draws // 10], "bca", args.resamples, rng),
            }
            for name, (lo, hi) in methods.items():
                rows.setdefault((name, noise), []).append(float(np.mean((lo <= MEAN) & (MEAN <= hi))))
            a, b = x, 1.1 * draw(rng, (args.draws, n))
            for name, (lo, hi) in {
                "ratio: welch log-t": welch_log_ratio(a, b),
                "ratio: percentile boot": bootstrap_ratio(a, b, args.resamples, rng),
            }.items():
                rows.setdefault((name, noise), []).append(float(np.mean((lo <= 1.1) & (1.1 <= hi))))
    for (name, noise), cov in sorted(rows.items()):
        print(f"{name:<26}{noise:<11}" + "".join(f"{c:<9.1%}" for c in cov))


if __name__ == "__main__":
    main()
