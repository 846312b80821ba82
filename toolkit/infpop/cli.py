"""The ``infpop`` command line.

Each command is a thin function over the library: parse, call, print. Handlers import what
they need when they run, so ``infpop plan`` on a login node never loads torch or pandas.
Analysis commands register from :mod:`infpop_analysis.cli` when that package is installed.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections import Counter
from pathlib import Path

from infpop.errors import InputError


def _add_plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", type=Path, help="study manifest (YAML)")
    p.add_argument("--partition", default=None, help="partition name from the profile (default: the manifest's first)")
    p.add_argument("--profile", default=None, help="cluster profile YAML (default: $INFPOP_PROFILE, else local only)")
    p.add_argument("--output-root", type=Path, default=None, help="override the manifest's output_root")
    p.add_argument("--no-prune", action="store_true", help="run batches above an OOM anyway, as the study did")


def _planned(args: argparse.Namespace):
    from infpop.manifest import load_manifest
    from infpop.profile import load_profile
    from infpop.sweep import plan_jobs

    loaded = load_manifest(args.manifest)
    profile = load_profile(args.profile)
    partition = args.partition or loaded.manifest.partitions[0]
    part = profile.partition(partition)
    # A real submission also refuses what its jobs would fail on: an unbuilt image, an unstaged model.
    groups = plan_jobs(
        loaded,
        profile,
        partition,
        output_root=args.output_root,
        prune_oom=False if args.no_prune else None,
        containers=not getattr(args, "no_container", False),
        strict=args.func is cmd_sweep and not args.dry_run,
    )
    return loaded, partition, part, groups


def cmd_plan(args: argparse.Namespace) -> int:
    from infpop.sweep import count_done, pending_groups

    loaded, partition, part, groups = _planned(args)
    trials = sum(len(g.trials) for g in groups)
    done = count_done(groups)
    print(
        f"{loaded.manifest.study}: {trials} trials in {len(groups)} jobs on partition {partition!r} "
        f"(hardware {groups[0].first.hardware}); {done} done, {trials - done} to run "
        f"in {len(pending_groups(groups))} jobs"
    )
    binds = sorted({b for g in groups for b in g.binds}, key=lambda b: (b.source, b.target))
    if binds:
        from infpop.binds import describe

        print(f"each job binds into its {part.runtime} image (of these, what its group reads and writes):")
        print("\n".join(f"  {line}" for line in describe(binds, part.runtime)))
    if args.list:
        for g in groups:
            print(f"job {g.group_id}: {len(g.trials)} trials")
            for t in g.trials:
                print(f"  {t.relpath}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from infpop.sweep import dry_run, status_counts, submit

    loaded, partition, part, groups = _planned(args)
    if args.dry_run:
        print(dry_run(groups, partition, part))
        return 0
    report = submit(groups, partition, part)
    root = Path(groups[0].output_root) / loaded.manifest.study
    for group, job_id in report.queued.items():
        print(f"job {group}: still queued as SLURM job {job_id}; not submitted again")
    if not report.submitted and not report.failed:
        if not report.queued:
            print(f"{loaded.manifest.study}: nothing to run; every trial has a result under {root}")
        return 0
    if part.executor == "local":
        counts = status_counts(groups)
        outcome = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        print(f"{loaded.manifest.study}: ran {len(report.submitted)} jobs; trials now {outcome}; results under {root}")
    else:
        print(
            f"{loaded.manifest.study}: submitted {report.trials_to_run} trials in {len(report.submitted)} jobs; results under {root}"
        )
    for group, why in report.failed.items():
        print(f"job {group} failed: {why}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_trial(args: argparse.Namespace) -> int:
    from infpop.jobs import read_group
    from infpop.trial import run_group

    counts = Counter(r.status for r in run_group(read_group(args.group_file)))
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to run")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from infpop.status import status_report

    print(status_report(args.study, args.output_root))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from infpop.manifest import load_manifest
    from infpop.models import stage_models
    from infpop.profile import load_profile

    loaded = load_manifest(args.manifest)
    cache = args.cache or load_profile(args.profile).model_cache
    if cache is None:
        raise InputError("no model cache: set model_cache in the profile (--profile) or pass --cache DIR")
    for s in stage_models(loaded, cache):
        print(f"{s.model}: {s.note} ({s.source}{'@' + s.revision if s.revision else ''}) -> {s.path}")
    return 0


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    from infpop.tinymodel import build_tiny_model

    print(build_tiny_model(args.out, seed=args.seed))
    return 0


def cmd_fetch_data(args: argparse.Namespace) -> int:
    from infpop.manifest import load_manifest
    from infpop.workloads.fetch import ensure_local

    loaded = load_manifest(args.manifest)
    for w in loaded.manifest.all_workloads:
        if w.synthetic is None:  # a synthetic workload is generated, there is nothing to fetch
            print(ensure_local(loaded.resolve(w.path) if w.path else None, w.url, w.sha256))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infpop", description="LLM inference throughput sweeps on SLURM and locally.")
    parser.add_argument("--debug", action="store_true", help="on an error, show the traceback")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plan", help="validate a manifest and count trials, jobs and done results; runs nothing")
    _add_plan_args(p)
    p.add_argument("--list", action="store_true", help="also list every job and trial path")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("sweep", help="run or submit the trials that have no result yet")
    _add_plan_args(p)
    p.add_argument("--dry-run", action="store_true", help="print the sbatch script of each array; submit nothing")
    p.add_argument("--no-container", action="store_true", help="run trials bare, not in the partition's images")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("models", help="download the manifest's hub models into the shared model cache (login node)")
    p.add_argument("manifest", type=Path)
    p.add_argument(
        "--profile", default=None, help="cluster profile whose model_cache to fill (default: $INFPOP_PROFILE)"
    )
    p.add_argument("--cache", default=None, help="model cache folder (default: the profile's model_cache)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("trial", help="run one trial group file (what a job executes)")
    p.add_argument("group_file", type=Path)
    p.set_defaults(func=cmd_trial)

    p = sub.add_parser("make-tiny-model", help="build a tiny Llama and tokenizer offline")
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_tiny_model)

    p = sub.add_parser("fetch-data", help="download the manifest's workloads once and check their sha256")
    p.add_argument("manifest", type=Path)
    p.set_defaults(func=cmd_fetch_data)

    p = sub.add_parser("status", help="trials by outcome, SLURM arrays and states, logs of failed tasks")
    p.add_argument("study", nargs="*", type=Path, help="study directories (<output_root>/<study>); default: all")
    p.add_argument("--output-root", type=Path, default=Path("runs"), help="where to look for studies (default: runs)")
    p.set_defaults(func=cmd_status)

    try:
        from infpop_analysis.cli import register
    except ImportError:
        pass
    else:
        register(sub)
    return parser


def failure(exc: BaseException) -> str:
    """One line saying why a command failed: a full disk or quota as such, with where."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text):
        cause = exc.strerror if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "No space left on device"
        return f"disk full: {cause}" + (f" writing {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        if args.debug:
            raise
        print(f"infpop: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"infpop: error: {failure(exc)} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
