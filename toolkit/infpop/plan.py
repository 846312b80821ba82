"""Sweep planning: a manifest and a partition expand into trials, grouped into jobs.

Everything here is pure: the same manifest and profile give the same trials, ids and groups,
which is what lets a rerun find what is already done. A *trial* is one (model, engine,
hardware, GPU count, batch size, max_new_tokens, repetition) measurement; a *group* is the
trials that share a loaded model (model, engine, hardware, GPU count) and so form one job.
"""

from __future__ import annotations

from itertools import groupby
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from infpop.errors import InputError
from infpop.manifest import Dtype, LoadedManifest, ModelSpec, WorkloadSpec
from infpop.profile import PartitionProfile


class TrialSpec(BaseModel):
    """Everything that defines one measurement; stored verbatim in its result record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    study: str
    hardware: str
    partition: str
    engine: str
    model: ModelSpec
    n_gpus: int
    batch_size: int
    max_new_tokens: int
    repetition: int
    dtype: Dtype
    workload: WorkloadSpec
    engine_options: dict[str, Any] = {}

    @property
    def group_key(self) -> tuple[str, str, str, int]:
        return (self.hardware, self.engine, self.model.name, self.n_gpus)

    @property
    def trial_id(self) -> str:
        """Readable and unique within an output root: ``<study>/<hw>/<engine>/<model>/g_b_t_r``."""
        return (
            f"{self.study}/{self.hardware}/{self.engine}/{self.model.name}/"
            f"g{self.n_gpus}_b{self.batch_size}_t{self.max_new_tokens}_r{self.repetition}"
        )

    @property
    def relpath(self) -> str:
        return f"{self.trial_id}.json"

    @property
    def series(self) -> tuple[int, int]:
        """Trials of one series share everything but the batch size: OOM pruning runs along it."""
        return (self.repetition, self.max_new_tokens)


class GroupSpec(BaseModel):
    """One job: trials sharing a loaded model, in the order they run (batch size ascending)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trials: list[TrialSpec]
    output_root: str
    #: Absolute local path of the model (a resolved local source or a hub id as given).
    model_path: str
    workload_path: str | None
    manifest_sha256: str
    prune_oom: bool = True
    trial_timeout_s: float | None = None

    @property
    def first(self) -> TrialSpec:
        return self.trials[0]

    @property
    def group_id(self) -> str:
        t = self.first
        return f"{t.study}/{t.hardware}/{t.engine}/{t.model.name}/g{t.n_gpus}"

    @property
    def n_gpus(self) -> int:
        return self.first.n_gpus

    @property
    def job_name(self) -> str:
        t = self.first
        return f"infpop-{t.study}-{t.hardware}-{t.engine}-{t.model.name}-g{t.n_gpus}"


def _run_order(trial: TrialSpec) -> tuple[int, int, int]:
    return (trial.repetition, trial.max_new_tokens, trial.batch_size)


def expand_trials(loaded: LoadedManifest, partition: str, part: PartitionProfile, hardware: str) -> list[TrialSpec]:
    m = loaded.manifest
    per_node = part.resolved_gpus_per_node()
    if per_node is not None:
        too_many = [n for n in m.gpu_counts if n > per_node]
        if too_many:
            raise InputError(
                f"{loaded.path}: gpu_counts: {too_many[0]} GPUs requested, but a node of partition "
                f"{partition!r} has {per_node}"
            )
    return [
        TrialSpec(
            study=m.study,
            hardware=hardware,
            partition=partition,
            engine=engine,
            model=model,
            n_gpus=n,
            batch_size=b,
            max_new_tokens=t,
            repetition=r,
            dtype=m.dtype,
            workload=m.workload,
            engine_options=m.engine_options.get(engine, {}),
        )
        for model in m.models
        for engine in m.engines
        for n in m.gpu_counts
        for r in range(m.repetitions)
        for t in m.max_new_tokens
        for b in m.batch_sizes
    ]


def group_trials(trials: list[TrialSpec]) -> list[list[TrialSpec]]:
    """Group by loaded model; within a group, each series runs batch sizes ascending."""
    ordered = sorted(trials, key=lambda t: (t.group_key, _run_order(t)))
    return [list(g) for _, g in groupby(ordered, key=lambda t: t.group_key)]


def plan(
    loaded: LoadedManifest,
    partition: str,
    part: PartitionProfile,
    *,
    output_root: Path | None = None,
    prune_oom: bool | None = None,
) -> list[GroupSpec]:
    """Expand a manifest on one partition into jobs. Raises :class:`InputError` on what can't run."""
    m = loaded.manifest
    hardware = part.resolved_hardware()
    root = str((output_root or loaded.output_root).resolve())
    workload_path = str(loaded.resolve(m.workload.path)) if m.workload.path else None
    model_paths = {mod.name: str(loaded.resolve(mod.source)) if mod.is_local else mod.source for mod in m.models}
    return [
        GroupSpec(
            trials=trials,
            output_root=root,
            model_path=model_paths[trials[0].model.name],
            workload_path=workload_path,
            manifest_sha256=loaded.sha256,
            prune_oom=m.prune_oom if prune_oom is None else prune_oom,
            trial_timeout_s=m.trial_timeout_s,
        )
        for trials in group_trials(expand_trials(loaded, partition, part, hardware))
    ]
