"""Wall time of regenerating the paper's analysis from its published data: import + stats + figures.

Runs the three steps in-process, as `make paper` runs them through the CLI, into a temporary
folder, and prints wall and CPU seconds per step and in total (target: total wall <= 30 s on a
2-core machine). Figures draw in ``--jobs`` processes, whose CPU time is not in the CPU column;
CPU seconds of the other steps show how much of their wall time a busy neighbour took.

    python benchmarks/paper.py [--data ../shared/data/infpop-appendix/allData.csv] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "infpop-appendix" / "allData.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=None, help="keep the outputs here (default: a temporary folder)")
    parser.add_argument(
        "-j", "--jobs", type=int, default=2, help="figure-drawing processes, as `infpop figures` (default 2)"
    )
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"published data not found: {args.data}")

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        timings = []

        def step(name, fn):
            wall, cpu = time.perf_counter(), time.process_time()
            result = fn()
            timings.append((name, time.perf_counter() - wall, time.process_time() - cpu))
            return result

        def imports():
            from infpop_analysis import figures, published, report, table  # noqa: F401

        step("python imports", imports)
        from infpop_analysis.figures import draw_all
        from infpop_analysis.published import import_published
        from infpop_analysis.stats_report import write_stats
        from infpop_analysis.table import write_table

        df = step("import-published", lambda: import_published(args.data, catalog=REPO / "manifests" / "paper.yaml"))
        step("write table", lambda: write_table(df, out / "table.parquet"))
        n_stats = len(step("stats", lambda: write_stats(df, out / "stats")))
        n_figs = len(step("figures", lambda: draw_all(df, out / "figures", workers=args.jobs)))

    for name, wall, cpu in timings:
        print(f"{name:<18} {wall:7.2f} s wall {cpu:7.2f} s CPU")
    print(f"{'total':<18} {sum(t[1] for t in timings):7.2f} s wall {sum(t[2] for t in timings):7.2f} s CPU "
          f"({len(df)} trials, {n_stats} stats files, {n_figs} figure files)")  # fmt: skip


if __name__ == "__main__":
    main()
