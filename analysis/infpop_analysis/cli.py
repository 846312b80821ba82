"""Analysis commands of the ``infpop`` CLI. Registering imports nothing heavy; handlers do."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from infpop_analysis.stats_conventions import CV_THRESHOLD, MIN_EFFECT


def cmd_aggregate(args: argparse.Namespace) -> int:
    from infpop.atomic import write_atomic

    from infpop_analysis import layout
    from infpop_analysis.capacity import probes_table
    from infpop_analysis.table import aggregate, write_table

    df, corrupt = aggregate(args.results_root)
    for item in corrupt:
        print(f"infpop: excluded corrupt result {item}", file=sys.stderr)
    paths = write_table(df, args.out)
    probes = probes_table(args.results_root)
    if len(probes):
        out = args.out.with_name(layout.CAPACITY_PROBES)
        write_atomic(out, probes.to_csv(index=False))
        paths.append(out)
    counts = df["status"].value_counts().to_dict()
    print(
        f"{len(df)} trials ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}) -> {', '.join(map(str, paths))}"
    )
    if corrupt:
        print(f"{len(corrupt)} corrupt result file(s) excluded (listed above)", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from infpop_analysis.compare import write_compare

    for path in write_compare(args.a, args.b, args.out, args.min_effect):
        print(path)
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from infpop_analysis.figures import KINDS, Skipped, draw_all
    from infpop_analysis.table import read_table

    kinds = args.only.split(",") if args.only else KINDS
    for item in draw_all(
        read_table(args.table), args.out, kinds=kinds, max_new_tokens=args.max_new_tokens, workers=args.jobs
    ):
        if isinstance(item, Skipped):
            print(f"infpop: {item}", file=sys.stderr)
        else:
            print(item)
    return 0


def cmd_import_published(args: argparse.Namespace) -> int:
    from infpop_analysis.published import import_published
    from infpop_analysis.table import write_table

    df = import_published(args.csv, catalog=args.catalog)
    paths = write_table(df, args.out)
    counts = df["status"].value_counts().to_dict()
    print(
        f"{len(df)} published trials ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}) -> {', '.join(map(str, paths))}"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from infpop_analysis.report.page import write_report
    from infpop_analysis.report.sources import Sources
    from infpop_analysis.table import read_table

    src = Sources.beside(args.table, stats=args.stats, figures=args.figures, hpo=args.hpo, search=args.search)
    print(write_report(read_table(args.table), src, args.out, max_new_tokens=args.max_new_tokens))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from infpop_analysis.stats_report import write_stats
    from infpop_analysis.table import read_table

    table = read_table(args.table)
    for path in write_stats(table, args.out, max_new_tokens=args.max_new_tokens, cv_threshold=args.cv_threshold):
        print(path)
    return 0


def cmd_workloads(args: argparse.Namespace) -> int:
    from infpop_analysis.table import read_table
    from infpop_analysis.workload_analysis import write_workload_report

    for path in write_workload_report(read_table(args.table), args.out):
        print(path)
    return 0


def non_negative(text: str) -> float:
    """A finite non-negative number, for argparse (which names the option and value when this
    raises): ``inf`` would silence a test without saying so, ``nan`` compares false everywhere."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(text)
    return value


def add_tokens_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--max-new-tokens``: the one slice of the table a command reads, for every command that
    reads one (:func:`infpop_analysis.stats.choose_tokens` picks the default)."""
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help=f"max_new_tokens {what} (default: 5 as the paper, else the smallest in the table)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregate", help="collect result files into the tidy table (parquet + csv)")
    p.add_argument("results_root", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True, help="table path (.parquet; a .csv is written beside it)")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser(
        "compare", help="what changed from study A to study B: ratio per configuration, tested against noise"
    )
    p.add_argument("a", type=Path, help="study A: a table (.parquet/.csv) or a study folder with table.parquet")
    p.add_argument("b", type=Path, help="study B, the same")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder (compare.csv, compare.html)")
    p.add_argument(
        "--min-effect",
        type=non_negative,
        default=MIN_EFFECT,
        help="the smallest change reported, as a fraction: what reruns of the same code on the machine show "
        f"(default: {MIN_EFFECT})",
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("figures", help="draw throughput landscapes and curves from a tidy table")
    p.add_argument("table", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--only", default=None, help="comma-separated kinds: landscape,gpu_scaling,batch_size,hardware (default: all)"
    )
    add_tokens_option(p, "to draw")
    p.add_argument(
        "-j", "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="drawing processes (default: up to 2)"
    )
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("import-published", help="read the study's published allData.csv into the tidy table")
    p.add_argument("csv", type=Path, help="the published allData.csv")
    p.add_argument("-o", "--out", type=Path, required=True, help="table path (.parquet; a .csv is written beside it)")
    p.add_argument(
        "--catalog",
        type=Path,
        default=None,
        help="manifest whose models give params_b and HumanEval pass@1 (e.g. manifests/paper.yaml)",
    )
    p.set_defaults(func=cmd_import_published)

    p = sub.add_parser("stats", help="statistical tests, tables and report.md of a tidy table")
    p.add_argument("table", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    add_tokens_option(p, "to analyse")
    p.add_argument(
        "--cv-threshold",
        type=non_negative,
        default=CV_THRESHOLD,
        help=f"flag configurations whose coefficient of variation over repetitions exceeds this (default: {CV_THRESHOLD:.2f})",
    )
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("report", help="one self-contained report.html of a study (opens offline in a browser)")
    p.add_argument("table", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder (report.html is written there)")
    for name, what in (
        ("stats", "infpop stats"),
        ("figures", "infpop figures"),
        ("hpo", "infpop hpo replay/benchmark"),
    ):
        p.add_argument(
            f"--{name}", type=Path, default=None, help=f"folder {what} wrote (default: {name}/ beside TABLE)"
        )
    p.add_argument(
        "--search",
        type=Path,
        default=None,
        help="live-search states (default: .infpop/search beside TABLE)",
    )
    add_tokens_option(p, "of the landscapes")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("workloads", help="latency vs request rate and throughput by workload (the workload study)")
    p.add_argument("table", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=cmd_workloads)

    from infpop_analysis.hpo.cli import register as register_hpo

    register_hpo(sub)
