"""The benchmark's output: the table ``infpop hpo benchmark`` prints and the JSON it writes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from infpop_analysis import layout
from infpop_analysis.hpo.methods import METHODS
from infpop_analysis.hpo.runs import Run
from infpop_analysis.hpo.stopping import PATIENCE, TOLERANCE
from infpop_analysis.hpo.summary import TPE_STARTUP, BenchmarkSummary, MethodSummary, Outline, Tuned, plain


def _row(name: str, s: MethodSummary) -> str:
    shares = " ".join(
        f"{share.median:>6.2f} {share.p90:>5.2f}" if share is not None else f"{'':>6} {'':>5}"
        for share in (s.share_of_sweep, s.share_of_pruned_sweep)
    )
    anytime = " ".join(f"{v:>5.3f}" for v in s.anytime_shortfall.values())
    return (
        f"{name:20} {s.median_trials_to_stop:>6g} {s.p95_trials_to_stop:>5g} {s.final_hit_rate:>6.3f} "
        f"{s.median_gpu_hours:>6.2f} {shares} {anytime} {s.median_evaluations:>6g} {s.hit_rate:>6.3f}"
    )


def _line(s: Outline) -> str:
    return (
        f"trials to stop {s.median_trials_to_stop:g} (p95 {s.p95_trials_to_stop:g})"
        f"  final hit {s.final_hit_rate:.3f}  GPU-h {s.median_gpu_hours:.2f}"
    )


def format_table(summary: BenchmarkSummary) -> str:
    """The table the CLI prints: per method, then tuned baselines, sweeps, ablations, ratios,
    the OOM predictor, the other GPU's ceiling, cross-validation and the stated assumptions."""
    lines = [
        f"{'':20} {'trials to stop':>12} {'final':>6} {'GPU-h':>6} {'share of sweep':>12} {'of pruned sweep':>12}"
        f" {'shortfall after 1/2/3/5 trials':>23} {'first hit':>13}",
        f"{'method':20} {'median':>6} {'p95':>5} {'hit':>6} {'median':>6} {'median':>6} {'p90':>5} {'median':>6}"
        f" {'p90':>5} {'1':>5} {'2':>5} {'3':>5} {'5':>5} {'evals':>6} {'rate':>6}",
    ]
    for m, s in summary.methods.items():
        label = f"{m} (patience {summary.patience})" if METHODS[m].patience is not None else m
        lines.append(_row(label, s))
    tuned = summary.tuned_baselines
    if tuned:
        for m, res in tuned.methods.items():
            lines.append(_row(f"{m} (tuned, {res.in_sample.patience})", res.in_sample))
    for kind, sweep in (("sweep", summary.sweep), ("pruned_sweep", summary.pruned_sweep)):
        if sweep is not None:
            lines.append(
                f"{kind:20} {'(grid)':>12} {'1.000':>6} {sweep.median_gpu_hours:>6.2f}"
                f"   (of which {sweep.upper_bound_share:.1%} partial-throughput failures: an upper bound)"
            )
    if "tpe" in summary.methods:
        lines.append(f"tpe (patience {summary.patience}): {TPE_STARTUP}")
    if tuned:
        lines.append(
            f"tuned baselines: the patience among {tuned.patiences} with the fewest median trials to stop at a final"
            f" hit rate >= {tuned.hit_target} (the rule that tunes the slack); in-sample vs cross-validated:"
        )
        for m, res in tuned.methods.items():
            for key, s in res.folds().items():
                chosen = s.chosen_per_fold or {"all": s.patience}
                lines.append(
                    f"  {m:8} {key:22} {_line(s)}  patience {','.join(str(v) for v in sorted(set(chosen.values())))}"
                )
    abl = summary.ablations
    if abl:
        lines.append(f"ablations of {abl.method} (in-sample): each part of the start and stopping rule removed")
        for part, o in abl.parts.items():
            name = "the full rule" if part == "none" else f"without {part}"
            lines.append(f"  {name:28} {_line(o)}")
    for name, value in summary.ratios.items():
        lines.append(f"{name}: {value:.3f}")
    oom = summary.oom_predictor
    if oom:
        lines.append(f"OOM predictor on {oom['outcomes']} published outcomes ({oom['ooms']} OOM), 'predicted to fail':")
        for key in ("shipped", "in_sample", "leave_one_family_out", "leave_one_gpu_out"):
            lines.append(f"  {key:22} precision {oom[key]['precision']:.3f}  recall {oom[key]['recall']:.3f}")
    twin = summary.twin_top_k
    if twin:
        shares = ", ".join(f"top {k}: {v:.2f}" for k, v in twin.top.items())
        lines.append(
            f"the other GPU's best configurations (predicted to fit) hold one within {TOLERANCE:.0%} of the optimum"
            f" on {twin.landscapes} landscapes: {shares}"
        )
        said = "; ".join(
            f"within {float(a):.0%}: {r.stops} stops, {r.misses} miss" for a, r in twin.stop_when_top_k_agree.items()
        )
        lines.append(f"  stopping after its top {twin.k} where they keep its shape here: {said}")
    cv = summary.cross_validation
    if cv:
        lines.append(
            "tuned constants (memory model, engine efficiencies, stopping slack): in-sample vs cross-validated"
        )
        for m, res in cv.methods.items():
            lines += [f"  {m:13} {key:22} {_line(s)}" for key, s in res.folds().items()]
            ins = res.in_sample
            lines.append(
                f"  {m:13} in-sample choice: slack {ins.slack:g}, HF efficiency {ins.hf_efficiency:g},"
                f" vLLM efficiency {ins.vllm_efficiency:g}"
            )
    for method, how in (summary.prior or {}).items():
        lines.append(f"{method} prior: {how}")
    lines += [f"load model: {summary.load_model}", f"failed-trial cost: {summary.failed_trial_cost}"]
    lines.append(f"noise: {summary.noise}")
    return "\n".join(lines)


def write(summary: BenchmarkSummary, runs: Sequence[Run], out: Path) -> Path:
    """``hpo_benchmark.json``: the summary, and the runs behind its table."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / layout.HPO_BENCHMARK
    tuned: dict[str, Tuned] = summary.tuned_baselines.methods if summary.tuned_baselines else {}
    # A baseline's runs at the patience of the table and at its tuned one; the others are prefixes.
    kept = [
        r
        for r in runs
        if r.patience in (None, PATIENCE, tuned[r.method].in_sample.patience if r.method in tuned else None)
    ]
    path.write_text(json.dumps({**plain(summary), "runs": [asdict(r) for r in kept]}, indent=1))
    return path
