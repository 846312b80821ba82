"""The study's central comparison in one number per setting: vLLM's throughput over HF's, each
engine at its own best batch size (the setting a user would pick for it).

    python -m infpop_analysis.engine_ratio TABLE [--num vllm] [--den hf]

``make demo`` prints it. Offline trials only; each batch size's throughput is the median over
its repetitions, as the figures use it.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

#: What one comparison holds fixed: everything but the engine and the batch size.
SETTING = ["hardware", "model", "n_gpus", "max_new_tokens", "workload"]


def best_batch(df: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, engine): the batch size of highest median throughput among ok offline trials."""
    ok = df[(df["status"] == "ok") & (df["scenario"].fillna("offline") == "offline") & df["throughput"].notna()]
    cells = ok.groupby([*SETTING, "engine", "batch_size"], observed=True)["throughput"].median().reset_index()
    return cells.loc[cells.groupby([*SETTING, "engine"], observed=True)["throughput"].idxmax()]


def engine_ratios(df: pd.DataFrame, num: str = "vllm", den: str = "hf") -> pd.DataFrame:
    """One row per setting measured with both engines: each engine's best batch size and
    throughput, and ``ratio`` = num / den."""
    best = best_batch(df).set_index(SETTING)
    a = best[best["engine"] == num][["batch_size", "throughput"]]
    b = best[best["engine"] == den][["batch_size", "throughput"]]
    both = a.add_suffix(f"_{num}").join(b.add_suffix(f"_{den}"), how="inner")
    both["ratio"] = both[f"throughput_{num}"] / both[f"throughput_{den}"]
    return both.reset_index()


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
            f"{args.num} {n:.0f} tok/s (batch {nb}) / {args.den} {d:.0f} tok/s (batch {db}) = {r.ratio:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
