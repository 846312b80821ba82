"""``infpop hpo replay|benchmark|search``. Registering imports nothing heavy; handlers do."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _landscapes(table: Path, max_new_tokens: int, objective: str = "throughput"):
    """Landscapes of ``objective`` in a tidy table, or in the published allData.csv (recognised
    by its columns; throughput only)."""
    from infpop.errors import InputError

    from infpop_analysis.hpo.landscape import landscapes
    from infpop_analysis.hpo.objective import OBJECTIVES
    from infpop_analysis.table import read_csv, read_table

    chosen = OBJECTIVES[objective]
    if table.suffix == ".csv" and "errors_l" in read_csv(table, nrows=0).columns:
        from infpop_analysis.published import import_published

        found = landscapes(import_published(table), max_new_tokens, chosen)
    else:
        found = landscapes(read_table(table), max_new_tokens, chosen)
    if not any(land.optimum() is not None for land in found):
        raise InputError(
            f"{table}: nothing to search: no trial at max_new_tokens {max_new_tokens} measured its {chosen.label}"
        )
    return found


def cmd_replay(args: argparse.Namespace) -> int:
    from infpop_analysis.hpo import replay as rp

    start = time.monotonic()
    rows = rp.replay(
        _landscapes(args.table, args.max_new_tokens, args.objective),
        engines=args.engine,
        models=args.model,
        repetitions=args.repetitions,
        base_seed=args.seed,
        space=args.space,
        failures=args.failures,
        evaluations=args.evaluations,
    )
    summary = rp.summarize(rows)
    settings = {
        "table": str(args.table),
        "objective": args.objective,
        "space": args.space,
        "failures": args.failures,
        "evaluations": args.evaluations,
        "repetitions": args.repetitions,
        "seeds": [args.seed + r for r in range(args.repetitions)],
        "max_new_tokens": args.max_new_tokens,
    }
    paths = rp.write(rows, summary, args.out, settings)
    print(rp.format_summary(summary))
    print(f"{len(rows)} searches in {time.monotonic() - start:.0f} s -> {', '.join(map(str, paths))}")
    return 0


def _physics_inputs(catalog: Path | None, prompts: Path | None, max_new_tokens: int):
    """Architectures by model name and the workload's prompt lengths, from a catalog manifest."""
    from infpop import physics
    from infpop.manifest import load_manifest
    from infpop.workloads import load_prompts

    if catalog is None:
        return {}, None
    loaded = load_manifest(catalog)
    m = loaded.manifest
    archs = {model.name: model.architecture for model in m.models if model.architecture is not None}
    spec = m.all_workloads[0]
    path = prompts or (loaded.resolve(spec.path) if spec.path else None)
    texts = [p.text for p in load_prompts(spec, path, spec.url)]
    return archs, physics.chars_workload([len(t) for t in texts], max_new_tokens)


def cmd_benchmark(args: argparse.Namespace) -> int:
    from infpop_analysis.hpo.benchmark import ablations, summarize, twin_top_k
    from infpop_analysis.hpo.benchmark_output import format_table, write
    from infpop_analysis.hpo.crossval import cross_validate
    from infpop_analysis.hpo.methods import METHODS
    from infpop_analysis.hpo.objective import OBJECTIVES
    from infpop_analysis.hpo.oom import evaluate, outcomes
    from infpop_analysis.hpo.runs import Context, run_all

    start = time.monotonic()
    lands = _landscapes(args.table, args.max_new_tokens, args.objective)
    archs, workload = _physics_inputs(args.catalog, args.prompts, args.max_new_tokens)
    methods = [m for m in args.methods if workload is not None or not METHODS[m].needs_physics]
    context = Context(archs, workload)
    runs = run_all(lands, methods, range(args.seeds), context=context)
    summary = summarize(runs, lands, context)
    objective = OBJECTIVES[args.objective]
    summary.objective = f"{objective.label} ({objective.unit})"
    if workload is not None:
        summary.oom_predictor = evaluate(outcomes(lands, archs, workload))
        summary.twin_top_k = twin_top_k(lands, context)
        if "ours+physics" in methods:
            summary.ablations = ablations(lands, context)
        if args.cross_validate:
            summary.cross_validation = cross_validate(lands, archs, workload, methods)
    path = write(summary, runs, args.out)
    print(format_table(summary))
    print(f"{len(runs)} searches in {time.monotonic() - start:.0f} s -> {path}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from infpop.errors import InputError
    from infpop.manifest import load_manifest
    from infpop.profile import load_profile

    from infpop_analysis.hpo.objective import for_manifest
    from infpop_analysis.hpo.search import search

    share = None
    if args.require_equivalent:
        share = 1.0 if args.min_identical is None else args.min_identical
    elif args.min_identical is not None:
        raise InputError("search: --min-identical is a condition of --require-equivalent, which is not given")
    loaded = load_manifest(args.manifest)
    objective = for_manifest(loaded.manifest, args.objective)
    partition = args.partition or loaded.manifest.partitions[0]
    profile = load_profile(args.profile)
    method = args.method or ("ours+history" if args.prior else "ours+physics")
    prior_lands = _landscapes(args.prior, loaded.manifest.max_new_tokens[0], objective.name) if args.prior else []
    picks = search(
        loaded,
        partition,
        profile,
        args.budget,
        method=method,
        seed=args.seed,
        output_root=args.output_root,
        prior_lands=prior_lands,
        prior_source=f"every landscape of the target's engine in {args.prior}" if args.prior else "",
        require_equivalent=share,
        objective=objective,
    )
    return 0 if all(picks.values()) else 1


def register(sub: argparse._SubParsersAction) -> None:
    from infpop_analysis.hpo.landscape import FAILURE_POLICIES
    from infpop_analysis.hpo.methods import METHODS
    from infpop_analysis.hpo.objective import OBJECTIVES
    from infpop_analysis.hpo.replay import EVALUATIONS, REPETITIONS, SPACES

    hpo = sub.add_parser("hpo", help="hyperparameter optimisation: replay the study, benchmark optimizers, live search")
    cmds = hpo.add_subparsers(dest="hpo_command", required=True, metavar="SUBCOMMAND")

    def table_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("table", type=Path, help="tidy table (.parquet/.csv) or the published allData.csv")
        p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
        p.add_argument("--max-new-tokens", type=int, default=5, help="landscape slice (default 5, as the study)")
        p.add_argument(
            "--objective",
            choices=OBJECTIVES,
            default="throughput",
            help="the landscapes' values: throughput (tok/s), or capacity (capacity_rps_per_gpu: requests/s per GPU "
            "at the SLO, 0 where none met it; a table of capacity searches)",
        )

    p = cmds.add_parser("replay", help="the study's RQ5: TPE after a GPU upgrade/downgrade vs the carried-over best")
    table_args(p)
    p.add_argument("--repetitions", type=int, default=REPETITIONS)
    p.add_argument("--evaluations", type=int, default=EVALUATIONS, help="TPE evaluations per search")
    p.add_argument("--seed", type=int, default=0, help="repetition r uses seed SEED + r")
    p.add_argument(
        "--space",
        choices=SPACES,
        default="measured",
        help="measured: the grid in the data; study: the study's lists (batch 1024, never measured)",
    )
    p.add_argument(
        "--failures",
        choices=FAILURE_POLICIES,
        default="partial",
        help="partial: an OOM's partial throughput counts, as in the study; strict: any non-ok trial fails",
    )
    p.add_argument("--engine", action="append", help="only this engine (repeatable)")
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.set_defaults(func=cmd_replay)

    p = cmds.add_parser(
        "benchmark", help="evaluations and GPU-seconds each optimizer needs to reach each landscape's optimum"
    )
    table_args(p)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument(
        "--catalog",
        type=Path,
        default=None,
        help="manifest whose models carry architectures (e.g. manifests/paper.yaml): enables ours+physics/+history",
    )
    p.add_argument("--prompts", type=Path, default=None, help="the catalog workload's file, if not at its path")
    p.add_argument(
        "--cross-validate",
        action="store_true",
        help="also score every tuned constant leaving one model family / one GPU type out (minutes)",
    )
    p.set_defaults(func=cmd_benchmark)

    p = cmds.add_parser(
        "search", help="live search: each proposed configuration runs as a trial job; resumes from results"
    )
    p.add_argument("manifest", type=Path)
    p.add_argument("--partition", default=None, help="partition name from the profile (default: the manifest's first)")
    p.add_argument("--profile", default=None, help="cluster profile YAML (default: $INFPOP_PROFILE, else local only)")
    p.add_argument("--output-root", type=Path, default=None, help="override the manifest's output_root")
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="at most this many trials per (model, engine), counting those already done (default: the stopping rule alone)",
    )
    p.add_argument(
        "--method", choices=METHODS, default=None, help="default: ours+history with --prior, else ours+physics"
    )
    p.add_argument(
        "--prior",
        type=Path,
        default=None,
        help="tidy table or published allData.csv whose landscapes guide ours+history (e.g. your sweeps on the old GPU)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--require-equivalent",
        action="store_true",
        help="pick only a configuration whose outputs are identical to the reference's (the fewest GPUs at the "
        "smallest batch, run first); reports what that costs in throughput",
    )
    p.add_argument(
        "--min-identical",
        type=float,
        default=None,
        metavar="SHARE",
        help="with --require-equivalent: the share of prompts whose outputs must be identical (default 1: every one)",
    )
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default=None,
        help="what to maximise: throughput (tok/s), or capacity (requests/s per GPU at the scenario's slo); "
        "default: capacity where the manifest's scenario has an slo, else throughput",
    )
    p.set_defaults(func=cmd_search)
