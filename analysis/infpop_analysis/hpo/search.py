"""Live search: an optimizer picks (GPU count, batch size); each pick runs as a real trial job.

A manifest defines the space (its ``gpu_counts`` x ``batch_sizes``, at its first max_new_tokens,
repetition 0), the planner turns each pick into the trial a sweep would run (same id, same result
path), and :func:`infpop.sweep.submit` runs it on the partition's executor (local or SLURM).

The results on disk are the whole search state: every step re-reads them, hands them to the
optimizer in the order they finished, and asks for the next configuration. An interrupted search
therefore resumes where it stopped, and a finished trial (any status, an error included) is never
run again. A summary of the search (``.infpop/hpo/<target>.json``) is rewritten after each trial
for people to read; nothing reads it back.

``ours+prior`` searches each target with a :class:`~infpop_analysis.hpo.prior.Prior` learned from
the landscapes the user supplies (the published data, or their own sweeps on the old hardware:
after a hardware change, the same models' old landscapes are exactly what should guide the
search), restricted to the target's engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from infpop.errors import InputError
from infpop.jobs import study_dir
from infpop.plan import GroupSpec, TrialSpec, plan
from infpop.profile import PartitionProfile
from infpop.results import ResultStore, TrialResult, write_atomic

from infpop_analysis.hpo.landscape import Config, Landscape
from infpop_analysis.hpo.optimizers import Observation, Optimizer, make
from infpop_analysis.hpo.prior import Prior

#: How often to look for a SLURM trial's result file, and the slack beyond the job's time limit.
POLL_S = 2.0
WAIT_SLACK_S = 120.0


@dataclass(frozen=True)
class Target:
    """One searched landscape: the trials of one (model, engine) on the partition's hardware."""

    group: GroupSpec
    trials: dict[Config, TrialSpec]

    @property
    def name(self) -> str:
        t = self.group.first
        return f"{t.hardware}__{t.engine}__{t.model.name}"


def targets(groups: Sequence[GroupSpec], max_new_tokens: int) -> list[Target]:
    """One target per (model, engine) of a plan: its repetition-0 trials at ``max_new_tokens``."""
    found: dict[tuple[str, str], Target] = {}
    for g in groups:
        for t in g.trials:
            if t.repetition == 0 and t.max_new_tokens == max_new_tokens:
                target = found.setdefault((t.model.name, t.engine), Target(g, {}))
                target.trials[Config(t.n_gpus, t.batch_size)] = t
    return list(found.values())


def observe(store: ResultStore, target: Target) -> list[tuple[Observation, TrialResult]]:
    """Finished trials of ``target`` on disk, in the order they finished; a failure has no value."""
    found = []
    for config, trial in target.trials.items():
        result = store.read(trial)
        if result is not None:
            value = result.throughput if result.status == "ok" else None
            found.append((Observation(config, value), result))
    found.sort(key=lambda pair: (pair[1].provenance.finished_at, pair[0].config))
    return found


def job_for(target: Target, config: Config) -> GroupSpec:
    """The one-trial job that measures ``config`` (a group of its own: the model loads for it alone)."""
    trial = target.trials[config]
    return target.group.model_copy(update={"trials": [trial], "prune_oom": False})


def run_trial(group: GroupSpec, partition: str, part: PartitionProfile) -> TrialResult | None:
    """Run one trial through the partition's executor; wait for its result file on SLURM."""
    from infpop.sweep import submit

    report = submit([group], partition, part)
    store = ResultStore(group.output_root)
    if part.executor == "local":
        return store.read(group.first)
    deadline = time.monotonic() + part.time_min * 60 + WAIT_SLACK_S
    while time.monotonic() < deadline and not report.failed:
        result = store.read(group.first)
        if result is not None:
            return result
        time.sleep(POLL_S)
    return store.read(group.first)


def write_summary(
    path: Path,
    target: Target,
    method: str,
    seed: int,
    history: list[tuple[Observation, TrialResult]],
    prior: Prior | None = None,
) -> None:
    best = max((o for o, _ in history if o.value is not None), key=lambda o: o.value, default=None)
    state = {
        "target": target.name,
        "method": method,
        "seed": seed,
        "prior": {"source": prior.provenance, "references": len(prior.surfaces)} if prior else None,
        "best": {"config": str(best.config), "throughput": best.value} if best else None,
        "trials": [
            {"config": str(o.config), "status": r.status, "throughput": r.throughput, "trial_id": r.trial.trial_id}
            for o, r in history
        ],
    }
    write_atomic(path, json.dumps(state, indent=1))


def search(
    loaded,
    partition: str,
    part: PartitionProfile,
    budget: int,
    *,
    method: str = "ours",
    seed: int = 0,
    output_root: Path | None = None,
    prior_lands: Sequence[Landscape] = (),
    prior_source: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, tuple[Config, float] | None]:
    """Search every (model, engine) of the manifest until ``budget`` trials each have results.

    ``ours+prior`` learns each target's prior from ``prior_lands`` (described by ``prior_source``).
    Returns the best configuration and throughput per target (None where nothing succeeded).
    """
    if budget < 1:
        raise InputError(f"search: budget: must be at least 1, got {budget}")
    if (method == "ours+prior") != bool(prior_lands):
        raise InputError(f"search: method {method!r}: a prior table is {'required' if not prior_lands else 'not used'}")
    groups = plan(loaded, partition, part, output_root=output_root, prune_oom=False)
    best: dict[str, tuple[Config, float] | None] = {}
    m = loaded.manifest
    for target in targets(groups, m.max_new_tokens[0]):
        space = sorted(target.trials)
        first = target.group.first
        prior = (
            Prior.learn(prior_lands, first.engine, first.hardware, provenance=prior_source)
            if method == "ours+prior"
            else None
        )
        if prior is not None and not prior.surfaces:
            log(f"{target.name}: the prior holds no {first.engine} landscape; searching as 'ours'")
        optimizer: Optimizer = make(method, seed, m.batch_sizes, m.gpu_counts, prior=prior)
        store = ResultStore(target.group.output_root)
        summary = study_dir(target.group.output_root, target.group.first.study) / "hpo" / f"{target.name}.json"
        while True:
            history = observe(store, target)
            observations = [o for o, _ in history]
            write_summary(summary, target, method, seed, history, prior)
            if len(history) >= budget:
                break
            config = optimizer.propose(space, observations)
            if config is None:
                break
            result = run_trial(job_for(target, config), partition, part)
            if result is None:
                log(f"{target.name}: {config}: no result file appeared; stopping this target")
                break
            value = result.throughput if result.status == "ok" else None
            top = max(
                (o for o in [*observations, Observation(config, value)] if o.value is not None),
                key=lambda o: o.value,
                default=None,
            )
            log(
                f"{target.name}: trial {len(history) + 1}/{budget} {config}: {result.status}"
                + (f" {value:.1f} tok/s" if value is not None else "")
                + (f"; best so far {top.config} {top.value:.1f} tok/s" if top else "; nothing succeeded yet")
            )
        ok = [o for o, _ in observe(store, target) if o.value is not None]
        top = max(ok, key=lambda o: o.value, default=None)
        best[target.name] = (top.config, top.value) if top else None
    return best
