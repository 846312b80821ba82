"""Live search: an optimizer picks (GPU count, batch size); the picks run as real trial jobs.

A manifest defines the space (its ``gpu_counts`` x ``batch_sizes``, at its first max_new_tokens,
repetition 0), the planner turns each pick into the trial a sweep would run (same id, same result
path, same launcher: planned with the profile's runtime, and submitted through the same executors,
:func:`infpop.sweep.plan_jobs` and :mod:`infpop.executors`), and the search ends by the same stopping rule as in the benchmark (:mod:`.stopping`),
or at ``--budget`` trials where one is given.

*One model load per GPU count visited*: a search job (:class:`Session`) holds the GPUs of one
GPU count, loads the model once, and keeps asking the optimizer (in the job) for the next
configuration while it stays at that GPU count; it ends when the optimizer moves to another
GPU count or stops. A partition whose jobs start ``infpop trial`` through a launcher (its
container image, or the profile's model cache as an offline environment) cannot run the optimizer
there, so each of its trials is a job of its own (one load each), as a sweep's group would run.

The results on disk are the whole search state: every step re-reads them, hands them to the
optimizer and asks for the next configuration, so an interrupted search resumes where it
stopped and a finished trial (any status) is never run again. The search writes only under
``<root>/<study>/.infpop/search/``: its state (``<target>.json``, :mod:`infpop.search_state`:
trials, the job in flight, stop reason and pick; rewritten around each job, read by the report
and ``infpop status``), its jobs' logs and, for container partitions, its one-trial group files
(with their image views where the image sees the host's folders elsewhere). A sweep's group files (``.infpop/groups/``)
are never touched, so a search and a sweep of one study coexist.

``ours+history`` searches each target with a :class:`~infpop_analysis.hpo.prior.Prior` learned
from the landscapes the user supplies (the published data, or their own sweeps on the old
hardware: after a hardware change, the same models' old landscapes are what should guide the
search), restricted to the target's engine; ``ours+physics`` (the default where the manifest
gives the model's ``architecture`` and the GPU is in the catalog) uses the memory and roofline
model of :mod:`infpop.physics`.

The search maximises the offline throughput, or, where the manifest's scenario has an ``slo``
(each trial a capacity search), the capacity per GPU under it (:mod:`.objective`): each trial's
value is read by the target's objective, and the optimizers, the stopping rule and the pick see
only values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import submitit
from infpop.errors import InputError
from infpop.executors.base import Executor
from infpop.filemodes import share_study_with_group
from infpop.jobs import group_job, study_dir
from infpop.plan import GroupSpec, TrialSpec
from infpop.profile import ClusterProfile
from infpop.results import ResultStore, TrialResult
from infpop.search_state import Pick, SearchJob, SearchState, SearchTrial, search_folder, state_path
from infpop.sweep import executor_for, plan_jobs, record

from infpop_analysis.hpo.equivalent import Judged, RequireEquivalent, required_share
from infpop_analysis.hpo.landscape import Config, Landscape
from infpop_analysis.hpo.methods import METHODS, Stopping
from infpop_analysis.hpo.objective import THROUGHPUT, Objective
from infpop_analysis.hpo.optimizers import Observation, Optimizer
from infpop_analysis.hpo.prior import Prior
from infpop_analysis.hpo.stopping import TOLERANCE, Physics, tied
from infpop_analysis.stats_conventions import CI_LEVEL, MIN_REPETITIONS
from infpop_analysis.summaries import mean_ci


@dataclass(frozen=True)
class Target:
    """One searched landscape: the trials of one (model, engine) on the partition's hardware, and
    what the search maximises over them."""

    groups: dict[int, GroupSpec]
    trials: dict[Config, TrialSpec]
    objective: Objective

    @property
    def first(self) -> TrialSpec:
        return next(iter(self.trials.values()))

    @property
    def name(self) -> str:
        t = self.first
        return f"{t.hardware}__{t.engine}__{t.model.name}"

    def group_at(self, n_gpus: int, configs: Sequence[Config]) -> GroupSpec:
        """A job of this target at ``n_gpus`` running ``configs`` (no OOM pruning: the search decides)."""
        trials = [self.trials[c] for c in configs]
        return self.groups[n_gpus].model_copy(update={"trials": trials, "prune_oom": False})


def targets(groups: Sequence[GroupSpec], max_new_tokens: int, objective: Objective = THROUGHPUT) -> list[Target]:
    """One target per (model, engine) of a plan: its repetition-0 trials at ``max_new_tokens``."""
    found: dict[tuple[str, str], Target] = {}
    for g in groups:
        for t in g.trials:
            if t.repetition == 0 and t.max_new_tokens == max_new_tokens:
                target = found.setdefault((t.model.name, t.engine), Target({}, {}, objective))
                target.groups.setdefault(t.n_gpus, g)
                target.trials[Config(t.n_gpus, t.batch_size)] = t
    return list(found.values())


def observe(store: ResultStore, target: Target) -> list[tuple[Observation, TrialResult]]:
    """Finished trials of ``target`` on disk, in the order they finished, valued by its
    objective; a failure has no value."""
    found = []
    for config, trial in target.trials.items():
        result = store.read(trial)
        if result is not None:
            found.append((Observation(config, target.objective.value(result)), result))
    found.sort(key=lambda pair: (pair[1].provenance.finished_at, pair[0].config))
    return found


class _KeptEngine:
    """An engine loaded once for a session: later trials reuse it (their ``load_s`` is ~0)."""

    def __init__(self, engine: Any):
        self._engine = engine
        self._loaded = False

    def load(self) -> None:
        if not self._loaded:
            self._engine.load()
            self._loaded = True

    def close(self) -> None:
        """Kept open until the session ends (:meth:`shutdown`)."""

    def shutdown(self) -> None:
        if self._loaded:
            self._engine.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@dataclass(frozen=True)
class Session:
    """A search job at one GPU count: loads the model once, runs what the optimizer proposes there."""

    target: Target
    n_gpus: int
    optimizer: Optimizer
    stopping: Stopping
    constraint: RequireEquivalent | None = None

    def next_config(self, store: ResultStore) -> Config | None:
        history = observe(store, self.target)
        judged = judge(history, self.constraint)
        step = next_step(self.stopping, self.optimizer, sorted(self.target.trials), history, self.constraint, judged)
        return step if isinstance(step, Config) and step.n_gpus == self.n_gpus else None

    def __call__(self) -> list[str]:
        from infpop.trial import default_engine, run_group

        group = self.target.groups[self.n_gpus]
        store = ResultStore(group.output_root)
        ran: list[str] = []
        engine: _KeptEngine | None = None
        try:
            while (config := self.next_config(store)) is not None:
                one = self.target.group_at(self.n_gpus, [config])
                if engine is None:
                    engine = _KeptEngine(default_engine(one))
                run_group(one, engine_factory=lambda _g, e=engine: e)
                ran.append(str(config))
                if store.read(self.target.trials[config]) is None:
                    break  # an error result: the model may be unusable; the driver decides
        finally:
            if engine is not None:
                engine.shutdown()
        return ran


def judge(history: Sequence[tuple[Observation, TrialResult]], constraint: RequireEquivalent | None) -> list[Judged]:
    """``history`` judged against the reference under ``constraint`` (empty without one): once per
    reading of the results, then handed to :func:`next_step`, :func:`conclude`, :func:`write_state`
    and the log, since judging compares every trial's fingerprints with the reference's."""
    return constraint.judge(history) if constraint else []


def next_step(
    stopping: Stopping,
    optimizer: Optimizer,
    space: Sequence[Config],
    history: Sequence[tuple[Observation, TrialResult]],
    constraint: RequireEquivalent | None,
    judged: Sequence[Judged],
) -> Config | str:
    """The next configuration to run, or why the search stops (``judged``: :func:`judge`'s): the
    driver and its jobs ask this one function, so a job at one GPU count goes on exactly as long
    as the driver would."""
    if constraint is None:
        return stopping.next(optimizer, space, [o for o, _ in history])
    return constraint.next(stopping, optimizer, space, history, judged)


def submit_session(
    target: Target,
    config: Config,
    optimizer: Optimizer,
    stopping: Stopping,
    executor: Executor,
    constraint: RequireEquivalent | None = None,
) -> submitit.Job:
    """Submit the job that runs the trials the optimizer wants at ``config.n_gpus``, from ``config`` on."""
    group = target.groups[config.n_gpus]
    if group.launcher:
        # The image has no optimizer: this trial alone, from a group file of the search's own.
        one = target.group_at(config.n_gpus, [config])
        path = search_folder(study_dir(one.output_root, one.first.study)) / "groups" / f"{target.name}__{config}.json"
        return executor.submit([one], [group_job(one, executor.cpu_threads([one]), path)])[0]
    return executor.submit([group], [Session(target, config.n_gpus, optimizer, stopping, constraint)])[0]


def _interval(
    store: ResultStore, trial: TrialSpec, repetitions: int, objective: Objective
) -> tuple[float, float] | None:
    """The 95% interval of the mean objective over the repetitions on disk of
    ``trial``'s configuration, as ``configs.csv`` gives it (:mod:`infpop_analysis.summaries`);
    None below two repetitions."""
    values = []
    for r in range(repetitions):
        result = store.done(trial.model_copy(update={"repetition": r}))
        if result is not None and (value := objective.value(result)) is not None:
            values.append(value)
    if len(values) < MIN_REPETITIONS:
        return None
    low, high = mean_ci(np.array([values]))
    return (float(low[0]), float(high[0]))


def pick(
    history: Sequence[tuple[Observation, TrialResult]], store: ResultStore, target: Target, repetitions: int
) -> Pick | None:
    """The best configuration measured, its interval where repetitions exist, and its ties."""
    ok = [o for o, _ in history if o.value is not None]
    if not ok:
        return None
    best = max(ok, key=lambda o: o.value)
    spread = {o.config: _interval(store, target.trials[o.config], repetitions, target.objective) for o in ok}
    ties = [
        str(o.config)
        for o in ok
        if o.config != best.config
        and (o.value >= best.value * (1 - TOLERANCE) or tied(spread[o.config], spread[best.config]))
    ]
    return Pick(
        config=str(best.config),
        value=best.value,
        interval=spread[best.config],
        interval_note=f"{CI_LEVEL:.0%} bootstrap interval of the mean over the repetitions on disk"
        if spread[best.config]
        else "one repetition: no interval",
        tied_with=ties,
    )


def write_state(
    path: Path,
    state: SearchState,
    history: Sequence[tuple[Observation, TrialResult]],
    judged: Sequence[Judged] = (),
) -> None:
    """Rewrite the target's state file with the trials of ``history`` (``infpop status`` reads
    it), with their judgements against the reference where a constraint gave them (:func:`judge`)."""
    trials = [
        SearchTrial(
            config=str(o.config),
            status=r.status,
            value=o.value,
            load_s=r.load_s,
            trial_id=r.trial.trial_id,
            **({} if j is None else {"identical": j.identical, "equivalent": j.observation.eligible}),
        )
        for (o, r), j in zip(history, judged or [None] * len(history))
    ]
    state.model_copy(update={"trials": trials}).write(path)


def conclude(
    state: SearchState,
    history: Sequence[tuple[Observation, TrialResult]],
    judged: Sequence[Judged],
    store: ResultStore,
    target: Target,
    repetitions: int,
    constraint: RequireEquivalent | None,
) -> None:
    """Set a stopped search's pick: the best measured, or under ``constraint`` the best
    equivalent one (``judged``: :func:`judge`'s), beside the best measured whatever its outputs
    and the ratio of the two."""
    best = pick(history, store, target, repetitions)
    if constraint is None:
        state.pick = best
        return
    eligible = [(j.observation, r) for j, (_, r) in zip(judged, history) if j.observation.eligible]
    state.pick = pick(eligible, store, target, repetitions)
    state.equivalence = constraint.record(state.pick, best)


def physics_of(target: Target) -> Physics | None:
    """The physical prior of a target, where its model has an architecture and its GPU is known."""
    from infpop import physics
    from infpop.workloads import load_prompts

    from infpop_analysis.hpo.oom import physics_for

    t = target.first
    arch = t.model.architecture
    if arch is None or physics.gpu(t.hardware) is None:
        return None
    group = next(iter(target.groups.values()))
    prompts = load_prompts(t.workload, Path(group.workload_path) if group.workload_path else None, t.workload.url)
    workload = physics.chars_workload([len(p.text) for p in prompts], t.max_new_tokens)
    land = Landscape(t.engine, t.model.name, t.hardware, dict.fromkeys(target.trials), objective=target.objective)
    return physics_for(land, arch, workload)


def search(
    loaded,
    partition: str,
    profile: ClusterProfile,
    budget: int | None = None,
    *,
    method: str = "ours+physics",
    seed: int = 0,
    output_root: Path | None = None,
    prior_lands: Sequence[Landscape] = (),
    prior_source: str = "",
    require_equivalent: float | None = None,
    objective: Objective = THROUGHPUT,
    log: Callable[[str], None] = print,
) -> dict[str, Pick | None]:
    """Search every (model, engine) of the manifest until the stopping rule (or ``budget``) ends it.

    The trials are planned and submitted as a sweep's are (:mod:`infpop.sweep`): with the
    profile's runtime (images, binds, model cache) and, where the profile says so, group-writable
    in a setgid study folder. ``require_equivalent``: the share of prompts whose outputs must be
    identical to the reference's for a configuration to be picked (:mod:`.equivalent`; None: no
    constraint). Returns, per target, its pick (configuration, value of ``objective``, interval,
    ties) or None.
    """
    if budget is not None and budget < 1:
        raise InputError(f"search: budget: must be at least 1, got {budget}")
    if require_equivalent is not None:
        required_share(require_equivalent)  # refused before anything is planned or written
    chosen = METHODS[method]
    if (chosen.prior is not None) != bool(prior_lands):
        raise InputError(f"search: method {method!r}: a prior table is {'required' if not prior_lands else 'not used'}")
    groups = plan_jobs(loaded, profile, partition, output_root=output_root, prune_oom=False, strict=True)
    if profile.group_shared and groups:
        share_study_with_group(Path(groups[0].output_root) / groups[0].first.study)
    m = loaded.manifest
    picks: dict[str, Pick | None] = {}
    for target in targets(groups, m.max_new_tokens[0], objective):
        first = target.first
        prior = Prior.learn(prior_lands, first.engine, first.hardware, provenance=prior_source) if prior_lands else None
        physics = physics_of(target)
        if chosen.needs_physics and physics is None:
            log(
                f"{target.name}: no architecture for the model or GPU {first.hardware!r} not in the catalog: no physics"
            )
        if prior is not None and not prior.surfaces:
            log(f"{target.name}: the prior holds no {first.engine} landscape; searching without it")
            prior = None
        used = chosen.resolve(prior, physics)  # the state and `infpop status` name what ran
        method_used = used.name
        optimizer = used.build(seed, m.batch_sizes, m.gpu_counts, prior=prior, physics=physics)
        stopping = used.stopping(budget)
        store = ResultStore(groups[0].output_root)
        space = sorted(target.trials)
        constraint = None if require_equivalent is None else RequireEquivalent.of(space, require_equivalent)
        bookkeeping = study_dir(groups[0].output_root, first.study)
        summary = state_path(bookkeeping, target.name)
        executor = executor_for(partition, profile.partition(partition), search_folder(bookkeeping) / "logs" / "%j")
        state = SearchState(
            target=target.name,
            method=method_used,
            objective=objective.label,
            unit=objective.unit,
            seed=seed,
            budget=budget,
            prior=prior.provenance if prior else None,
            physics=physics is not None,
            equivalence=constraint.record() if constraint else None,
        )
        if constraint is not None:
            log(f"{target.name}: --require-equivalent: {constraint.definition}")
        # Each reading of the results is judged once (:func:`judge`); the reading after a job is
        # the next step's.
        history = observe(store, target)
        judged = judge(history, constraint)
        while True:
            config = next_step(stopping, optimizer, space, history, constraint, judged)
            if not isinstance(config, Config):
                state.stop_reason = config
                conclude(state, history, judged, store, target, m.max_repetitions, constraint)
                write_state(summary, state, history, judged)
                break
            job = submit_session(target, config, optimizer, stopping, executor, constraint)
            state.stop_reason = None
            state.job = SearchJob(**record(job, executor).model_dump(), n_gpus=config.n_gpus)
            write_state(summary, state, history, judged)
            failure = executor.wait(job)
            state.job = None
            after = observe(store, target)
            judged_after = judge(after, constraint)
            for i, (o, r) in enumerate(after[len(history) :], start=len(history)):
                log(
                    f"{target.name}: trial {i + 1} {o.config}: {r.status}"
                    + (f" {objective.format(o.value)}" if o.value is not None else "")
                    + (_judgement(judged_after[i], constraint) if constraint else "")
                )
            if len(after) == len(history):
                log(f"{target.name}: {config}: no result appeared ({failure or 'no trial ran'}); stopping this target")
                state.stop_reason = f"no result for {config}: {failure or 'no trial ran'}"
                conclude(state, after, judged_after, store, target, m.max_repetitions, constraint)
                write_state(summary, state, after, judged_after)
                break
            history, judged = after, judged_after
        picks[target.name] = state.pick
        log(f"{target.name}: {_outcome(state, objective)}")
    return picks


def _judgement(judged: Judged, constraint: RequireEquivalent) -> str:
    """How a trial's log line says its outputs compare with the reference's."""
    if judged.identical is None:
        return f"; outputs not compared with the reference {constraint.reference}"
    verdict = "equivalent" if judged.observation.eligible else "NOT equivalent"
    return f"; {verdict} to the reference {constraint.reference} ({judged.identical:.0%} of prompts identical)"


def _outcome(state: SearchState, objective: Objective) -> str:
    """The log's last line for a target: its pick and why it stopped; under the constraint, what it cost."""
    p, eq = state.pick, state.equivalence
    chosen = f"pick {p.config} {objective.format(p.value)}" if p else "no successful trial"
    if eq is not None:
        chosen = f"{chosen}, {eq.outcome(p, objective.unit)}" if p else eq.outcome(p, objective.unit)
    return f"{chosen}; stopped: {state.stop_reason}"
