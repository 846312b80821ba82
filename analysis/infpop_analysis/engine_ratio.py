"""The study's central comparison in one number per setting: vLLM's throughput over HF's, each
engine at its own best batch size (the setting a user would pick for it).

    python -m infpop_analysis.engine_ratio TABLE [--num vllm] [--den hf]

``make demo`` prints it and ``infpop report`` shows it. Offline trials only; each batch size's
throughput is the median over its repetitions, as the figures use it. With repetitions, the ratio
comes with a percentile-bootstrap interval that resamples each engine's repetitions at its best
batch size independently (:data:`~infpop_analysis.stats_conventions.CI_LEVEL`). It leaves out the choice
of the best batch size itself, so it is too narrow where two batch sizes are close, and with three
repetitions too narrow anyway (``benchmarks/intervals.py``: about 81% coverage at 3).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from infpop_analysis.stats_conventions import CI_LEVEL, MIN_REPETITIONS, SEED

#: Resamples per interval: the endpoints' Monte Carlo error is small against the interval itself.
N_RESAMPLES = 2000

#: What one comparison holds fixed: everything but the engine and the batch size.
SETTING = ["hardware", "model", "n_gpus", "max_new_tokens", "workload"]


def best_batch(df: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, engine): the batch size of highest median throughput among ok offline trials,
    with ``samples``, the throughputs of its repetitions."""
    ok = df[(df["status"] == "ok") & (df["scenario"].fillna("offline") == "offline") & df["throughput"].notna()]
    cells = (
        ok.groupby([*SETTING, "engine", "batch_size"], observed=True)["throughput"]
        .agg(throughput="median", samples=list)
        .reset_index()
    )
    return cells.loc[cells.groupby([*SETTING, "engine"], observed=True)["throughput"].idxmax()]


def ratio_interval(num: list[float], den: list[float], level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile-bootstrap interval of median(num) / median(den), each resampled on its own;
    NaN where either side has fewer than two repetitions."""
    if min(len(num), len(den)) < MIN_REPETITIONS:
        return (np.nan, np.nan)
    if np.ptp(num) == 0 and np.ptp(den) == 0:
        return (num[0] / den[0],) * 2
    res = sps.bootstrap(
        (np.asarray(num, float), np.asarray(den, float)),
        lambda a, b, axis: np.median(a, axis=axis) / np.median(b, axis=axis),
        vectorized=True, paired=False, n_resamples=N_RESAMPLES, confidence_level=level,
        method="percentile", rng=np.random.default_rng(SEED),
    )  # fmt: skip
    return tuple(res.confidence_interval)


def engine_ratios(df: pd.DataFrame, num: str = "vllm", den: str = "hf") -> pd.DataFrame:
    """One row per setting measured with both engines: each engine's best batch size, throughput
    and repetitions there (``n_<engine>``), ``ratio`` = num / den and its interval
    (``ratio_ci_low``, ``ratio_ci_high``)."""
    best = best_batch(df).set_index(SETTING)
    a = best[best["engine"] == num][["batch_size", "throughput", "samples"]]
    b = best[best["engine"] == den][["batch_size", "throughput", "samples"]]
    both = a.add_suffix(f"_{num}").join(b.add_suffix(f"_{den}"), how="inner")
    both["ratio"] = both[f"throughput_{num}"] / both[f"throughput_{den}"]
    bounds = [ratio_interval(x, y) for x, y in zip(both[f"samples_{num}"], both[f"samples_{den}"])]
    both["ratio_ci_low"] = [lo for lo, _ in bounds]
    both["ratio_ci_high"] = [hi for _, hi in bounds]
    for engine in (num, den):
        both[f"n_{engine}"] = both.pop(f"samples_{engine}").map(len)
    return both.reset_index()


def interval_text(row: Any) -> str:
    """``95% CI [low, high]x``, or why there is none."""
    low, high = row.ratio_ci_low, row.ratio_ci_high
    if pd.isna(low):
        return "no interval: one repetition"
    return f"{CI_LEVEL:.0%} CI [{low:.2f}, {high:.2f}]x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", help="the tidy table (.parquet or .csv) of `infpop aggregate`")
    ap.add_argument("--num", default="vllm")
    ap.add_argument("--den", default="hf")
    args = ap.parse_args(argv)
    df = pd.read_parquet(args.table) if args.table.endswith(".parquet") else pd.read_csv(args.table)
    ratios = engine_ratios(df, args.num, args.den)
    if ratios.empty:
        print(f"no setting has ok offline results for both {args.num} and {args.den}", file=sys.stderr)
        return 1
    print(f"{args.num}/{args.den} throughput, each engine at its best batch size:")
    for r in ratios.itertuples():
        n, d = (getattr(r, f"throughput_{args.num}"), getattr(r, f"throughput_{args.den}"))
        nb, db = (getattr(r, f"batch_size_{args.num}"), getattr(r, f"batch_size_{args.den}"))
        print(
            f"  {r.hardware} {r.model} {r.n_gpus} GPU(s) {r.max_new_tokens} new tokens: "
            f"{args.num} {n:.0f} tok/s (batch {nb}) / {args.den} {d:.0f} tok/s (batch {db}) = {r.ratio:.2f}x "
            f"({interval_text(r)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
