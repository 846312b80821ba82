"""Analysis commands of the ``infpop`` CLI. Registering imports nothing heavy; handlers do."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_aggregate(args: argparse.Namespace) -> int:
    from infpop_analysis.table import aggregate, write_table

    df, corrupt = aggregate(args.results_root)
    for item in corrupt:
        print(f"infpop: excluded corrupt result {item}", file=sys.stderr)
    paths = write_table(df, args.out)
    counts = df["status"].value_counts().to_dict()
    print(f"{len(df)} trials ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}) -> {', '.join(map(str, paths))}")
    if corrupt:
        print(f"{len(corrupt)} corrupt result file(s) excluded (listed above)", file=sys.stderr)
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from infpop_analysis.figures import draw_all
    from infpop_analysis.table import read_table

    for path in draw_all(read_table(args.table), args.out):
        print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregate", help="collect result files into the tidy table (parquet + csv)")
    p.add_argument("results_root", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True, help="table path (.parquet; a .csv is written beside it)")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("figures", help="draw throughput landscapes and curves from a tidy table")
    p.add_argument("table", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=cmd_figures)
