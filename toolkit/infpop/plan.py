"""Sweep planning: a manifest and a partition expand into trials, grouped into jobs.

Everything here is pure: the same manifest and profile give the same trials, ids and groups,
which is what lets a rerun find what is already done. A *trial* is one (model, engine,
hardware, GPU count, batch size, max_new_tokens, repetition) measurement, plus the axes of a
workload study where the manifest has them (workload, request rate, GPU memory share); a
*group* is the trials that share a loaded model (model, engine, hardware, GPU count, GPU
memory share) and a workload, and so form one job.
"""

from __future__ import annotations

from itertools import groupby
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from infpop.binds import group_needs, image_path
from infpop.determinism import check_determinism
from infpop.engines.options import check_engine_options
from infpop.errors import InputError
from infpop.launch import LaunchOptions
from infpop.manifest import (
    DEFAULT_WORKLOAD,
    AdaptiveRepetitions,
    Dtype,
    LoadedManifest,
    ModelSpec,
    OfflineScenario,
    OutputLength,
    Scenario,
    WorkloadSpec,
)
from infpop.plugins import ENGINES
from infpop.profile import PartitionProfile
from infpop.runnable import check_runnable, check_visible
from infpop.runtimes.base import Bind


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
    output_length: OutputLength = "fixed"
    scenario: Scenario = OfflineScenario()
    #: Requests per second of an online trial; ``None`` offline.
    request_rate: float | None = None
    #: The value of the manifest's ``gpu_memory_utilization`` axis (also in ``engine_options``,
    #: which is what the engine reads); ``None`` where the axis is not swept.
    gpu_memory_utilization: float | None = None
    #: Untimed batches before the timed loop (the manifest's ``warmup.trial_batches``); 0 in
    #: records from before warm-up existed, which had none.
    warmup_batches: int = 0
    #: The value of the manifest's ``kv_cache_bytes`` axis (``kv_cache_memory_bytes`` in
    #: ``engine_options``); ``None`` where the axis is not swept.
    kv_cache_bytes: int | None = None
    #: The concurrency cap of an online trial on a continuous-batching engine (vLLM's
    #: ``max_num_seqs``, also in ``engine_options``): the batch size's role there. ``None`` otherwise.
    max_num_seqs: int | None = None
    #: The value of the manifest's ``prefix_caching`` axis (vLLM's ``enable_prefix_caching``, also
    #: in ``engine_options``); ``None`` for engines without a prefix cache, and in records from
    #: before the axis (whose vLLM ran with vLLM's default, caching on).
    prefix_caching: bool | None = None
    #: The value of the manifest's ``deterministic`` axis (the engine's deterministic mode, switched
    #: at load for the whole process: it splits groups); ``None`` for engines without one, and in
    #: records from before the axis (which ran with it off).
    deterministic: bool | None = None

    @property
    def group_key(self) -> tuple[str, str, str, int, str, float, int, int, bool, bool]:
        return (
            self.hardware,
            self.engine,
            self.model.name,
            self.n_gpus,
            self.workload.id,
            self.gpu_memory_utilization or 0.0,
            self.kv_cache_bytes or 0,
            self.max_num_seqs or 0,
            bool(self.prefix_caching),
            bool(self.deterministic),
        )

    @property
    def group_suffix(self) -> str:
        """The job-splitting axes a study of the paper never had, named only where they are set:
        ``_w-<workload>`` (not the study's workload), ``_mem<gpu_memory_utilization>``,
        ``_kv<size>`` (``kv_cache_bytes``, in MiB where whole), ``_seqs<max_num_seqs>``, ``_pc``
        (prefix caching on) and ``_det`` (deterministic mode on); off is the study's setting and
        keeps its ids."""
        workload = f"_w-{self.workload.id}" if self.workload.id != DEFAULT_WORKLOAD else ""
        memory = f"_mem{self.gpu_memory_utilization:g}" if self.gpu_memory_utilization is not None else ""
        kv = ""
        if self.kv_cache_bytes is not None:
            mib, rest = divmod(self.kv_cache_bytes, 1 << 20)
            kv = f"_kv{mib}MiB" if not rest else f"_kv{self.kv_cache_bytes}B"
        seqs = f"_seqs{self.max_num_seqs}" if self.max_num_seqs is not None else ""
        cached = "_pc" if self.prefix_caching else ""
        deterministic = "_det" if self.deterministic else ""
        return workload + memory + kv + seqs + cached + deterministic

    @property
    def trial_id(self) -> str:
        """Readable and unique within an output root: ``<study>/<hw>/<engine>/<model>/g_b_t_r``,
        then the group suffix, ``_ref`` (reference output lengths capped at t) and
        ``_rate<req/s>`` (online) or ``_capacity`` (online, searching its rate) where they apply,
        so the study's own ids never change."""
        ref = "_ref" if self.output_length == "reference" else ""
        rate = f"_rate{self.request_rate:g}" if self.request_rate is not None else ""
        if self.scenario.kind == "online" and self.scenario.capacity is not None:
            rate = "_capacity"
        return (
            f"{self.study}/{self.hardware}/{self.engine}/{self.model.name}/"
            f"g{self.n_gpus}_b{self.batch_size}_t{self.max_new_tokens}_r{self.repetition}"
            f"{self.group_suffix}{ref}{rate}"
        )

    @property
    def relpath(self) -> str:
        return f"{self.trial_id}.json"

    @property
    def series(self) -> tuple[int, int]:
        """Trials of one series share everything but the batch size: OOM pruning runs along it.
        Online trials of every request rate share a series: a batch size that ran out of memory
        at one rate is the server's limit at the others too."""
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
    #: The profile's ``group_shared``: the job lets the group read and write what it writes
    #: (:mod:`infpop.filemodes`).
    group_shared: bool = False
    #: Untimed batches once after the model loads (the manifest's ``warmup.group_batches``).
    warmup_batches: int = 0
    #: The manifest's adaptive repetitions (:mod:`infpop.adaptive`); None runs every planned one.
    adaptive: AdaptiveRepetitions | None = None
    #: argv prefix that starts ``python -m infpop`` in the partition's image (see
    #: :mod:`infpop.launch`); None runs the job in-process.
    launcher: list[str] | None = None
    #: The launcher's bind mounts (:mod:`infpop.binds`); not in the group file, which the job reads.
    binds: tuple[Bind, ...] = Field(default=(), exclude=True)

    @property
    def first(self) -> TrialSpec:
        return self.trials[0]

    @property
    def group_id(self) -> str:
        t = self.first
        return f"{t.study}/{t.hardware}/{t.engine}/{t.model.name}/g{t.n_gpus}{t.group_suffix}"

    @property
    def n_gpus(self) -> int:
        return self.first.n_gpus

    @property
    def job_name(self) -> str:
        t = self.first
        return f"infpop-{t.study}-{t.hardware}-{t.engine}-{t.model.name}-g{t.n_gpus}{t.group_suffix}"

    def image_view(self) -> GroupSpec | None:
        """The group as its job sees it inside the image (paths through the binds), or None when
        every path is seen where it is on the host."""
        if not self.binds:
            return None
        paths = {"output_root": self.output_root, "workload_path": self.workload_path}
        if self.first.model.is_local:
            paths["model_path"] = self.model_path
        moved = {key: image_path(path, self.binds) for key, path in paths.items() if path is not None}
        if all(moved[key] == paths[key] for key in moved):
            return None
        return self.model_copy(update=moved)


def _run_order(trial: TrialSpec) -> tuple[int, int, int]:
    """Repetitions run in rounds: every configuration of the group once, then every one again.
    Repetitions of one configuration are thus spread over the job rather than back to back, so
    a drift of the node (thermal, a noisy neighbour) spreads over all configurations instead of
    masquerading as a difference between them; within a round each series runs batch sizes
    ascending, which OOM pruning needs. Interleaving stops at the group: going further would
    reload the model."""
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
    if hardware == "cpu":
        unsized = [
            e
            for e in ENGINES.having("memory_sized", m.engines)
            if not m.kv_cache_bytes and "kv_cache_memory_bytes" not in m.engine_options.get(e, {})
        ]
        if unsized:
            raise InputError(
                f"{loaded.path}: engines: {unsized[0]!r} on CPU (partition {partition!r}) needs an explicit KV-cache "
                "size: set kv_cache_bytes (e.g. [268435456]); its default would take 90% of the machine's memory"
            )
    # A capacity search (no rates listed) is one trial per configuration that tries its own rates.
    rates = (m.scenario.request_rates if m.scenario.kind == "online" else None) or [None]

    def memory_axis(engine: str) -> list[tuple[float | None, int | None]]:
        if not ENGINES.entry(engine).capabilities.memory_sized:
            return [(None, None)]
        if m.gpu_memory_utilization:
            return [(share, None) for share in m.gpu_memory_utilization]
        return [(None, size) for size in m.kv_cache_bytes or [None]]

    def continuous(engine: str) -> bool:
        return ENGINES.entry(engine).capabilities.continuous_batching

    def seqs(engine: str, b: int) -> int | None:
        return b if m.scenario.kind == "online" and continuous(engine) else None

    def cap(engine: str, b: int) -> int | None:
        """Online: the trial's batch size; offline: the group's largest batch, unless the manifest sets one."""
        if not continuous(engine) or (offline_cap and "max_num_seqs" in m.engine_options.get(engine, {})):
            return seqs(engine, b)
        return seqs(engine, b) or offline_cap

    def caching_axis(engine: str) -> list[bool | None]:
        return list(m.prefix_caching) if ENGINES.entry(engine).capabilities.prefix_cache else [None]

    def determinism_axis(engine: str) -> list[bool | None]:
        return list(m.deterministic) if ENGINES.entry(engine).capabilities.determinism else [None]

    offline_cap = _offline_cap(loaded)

    def options(engine: str, memory: tuple[float | None, int | None], b: int, cached: bool | None) -> dict[str, Any]:
        share, size = memory
        extra = {
            "gpu_memory_utilization": share,
            "kv_cache_memory_bytes": size,
            "max_num_seqs": cap(engine, b),
            "enable_prefix_caching": cached,
        }
        return {**m.engine_options.get(engine, {}), **{k: v for k, v in extra.items() if v is not None}}

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
            workload=workload,
            engine_options=options(engine, memory, b, cached),
            output_length=m.output_length,
            scenario=m.scenario,
            request_rate=rate,
            gpu_memory_utilization=memory[0],
            kv_cache_bytes=memory[1],
            warmup_batches=m.warmup.trial_batches,
            max_num_seqs=seqs(engine, b),
            prefix_caching=cached,
            deterministic=deterministic,
        )
        for model in m.models
        for engine in m.engines
        for memory in memory_axis(engine)
        for cached in caching_axis(engine)
        for deterministic in determinism_axis(engine)
        for workload in m.all_workloads
        for n in m.gpu_counts
        for r in range(m.max_repetitions)
        for t in m.max_new_tokens
        for b in m.batch_sizes
        for rate in rates
    ]


def _offline_cap(loaded: LoadedManifest) -> int | None:
    """``max_num_seqs`` of a continuous-batching engine (vLLM) in an offline group: the group's
    largest batch, so that every batch runs as one (vLLM's default cap, 256 on CPU and A100, 1024
    on H100, would split the study's batches 512 and 1028, at a different size per GPU). One
    engine serves the group's batch sizes, as in the study: a cap above a static batch changes
    nothing in how that batch is scheduled. A cap the manifest sets below a batch size is refused
    rather than obeyed silently."""
    m = loaded.manifest
    if m.scenario.kind != "offline":
        return None
    largest = max(m.batch_sizes)
    for engine in ENGINES.having("continuous_batching", m.engines):
        cap = m.engine_options.get(engine, {}).get("max_num_seqs")
        if cap is not None and cap < largest:
            raise InputError(
                f"{loaded.path}: engine_options.{engine}.max_num_seqs: {cap} holds fewer sequences than batch size "
                f"{largest} (batch_sizes); the engine would split that batch: raise max_num_seqs to {largest} or drop it"
            )
    return largest


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
    launch: LaunchOptions | None = None,
    group_shared: bool = False,
) -> list[GroupSpec]:
    """Expand a manifest on one partition into jobs. Raises :class:`InputError` on what can't run."""
    m = loaded.manifest
    launch = launch or LaunchOptions()
    check_runnable(loaded, partition, part, launch)
    check_engine_options(loaded, partition, part, launch)
    hardware = part.resolved_hardware()
    check_determinism(loaded, partition, part, launch, hardware)
    root = str((output_root or loaded.output_root).resolve())
    check_visible(loaded, partition, part, launch, root)
    workload_paths = {w.id: str(loaded.resolve(w.path)) if w.path else None for w in m.all_workloads}
    model_paths = {mod.name: str(loaded.resolve(mod.source)) if mod.is_local else mod.source for mod in m.models}

    def binds(trials: list[TrialSpec]) -> tuple[Bind, ...]:
        t = trials[0]
        model = model_paths[t.model.name] if t.model.is_local else None
        needs = group_needs(root, model, workload_paths[t.workload.id], launch.model_cache)
        return launch.binds(part, t.engine, needs)

    return [
        GroupSpec(
            trials=trials,
            output_root=root,
            model_path=model_paths[trials[0].model.name],
            workload_path=workload_paths[trials[0].workload.id],
            manifest_sha256=loaded.sha256,
            prune_oom=m.prune_oom if prune_oom is None else prune_oom,
            trial_timeout_s=m.trial_timeout_s,
            group_shared=group_shared,
            warmup_batches=m.warmup.group_batches,
            adaptive=m.repetitions if isinstance(m.repetitions, AdaptiveRepetitions) else None,
            launcher=launch.launcher(part, trials[0].engine, group_binds),
            binds=group_binds,
        )
        for trials in group_trials(expand_trials(loaded, partition, part, hardware))
        for group_binds in [binds(trials)]
    ]
