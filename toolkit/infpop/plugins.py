"""The plugin axes (engines, workloads, scenarios) by name, importing none of them.

The manifest schema validates names against these tables, and the plugin packages look their
implementations up here, so the schema never imports a plugin package that imports it back.
Third-party engines register through the ``infpop.engines`` entry-point group, as pandas'
plotting backends do; a new workload or scenario kind also needs its manifest schema, so it is
added here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any


@dataclass(frozen=True)
class Registry:
    """Names mapped to ``module:attribute`` targets, imported only when one is used."""

    what: str
    builtin: dict[str, str]
    #: Entry-point group where other packages add to the axis; ``None``: built-ins only.
    group: str | None = None

    def targets(self) -> dict[str, str]:
        found = {ep.name: ep.value for ep in entry_points(group=self.group)} if self.group else {}
        return {**found, **self.builtin}

    def names(self) -> set[str]:
        return set(self.targets())

    def load(self, name: str) -> Any:
        target = self.targets().get(name)
        if target is None:
            raise KeyError(f"unknown {self.what} {name!r}; known: {', '.join(sorted(self.names()))}")
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


ENGINES = Registry(
    "engine",
    {"hf": "infpop.engines.hf:HFPipelineEngine", "vllm": "infpop.engines.vllm:VLLMEngine"},
    group="infpop.engines",
)

#: The workload generated from length distributions instead of read from a file (no loader).
SYNTHETIC = "synthetic"

#: Dataset workloads: a loader that turns a dataset file into prompts.
WORKLOADS = Registry(
    "workload",
    {
        "humaneval-infilling": "infpop.workloads.humaneval:load",
        "alpaca": "infpop.workloads.alpaca:load",
        "dolly": "infpop.workloads.dolly:load",
        "cnn-dailymail": "infpop.workloads.cnn_dailymail:load",
        "sharegpt": "infpop.workloads.sharegpt:load",
    },
)

#: Scenario runners by the manifest's ``scenario.kind``.
SCENARIOS = Registry(
    "scenario",
    {"offline": "infpop.scenarios.offline:run_offline", "online": "infpop.scenarios.online:run_online"},
)

#: Where a partition's jobs run, by the profile's ``executor:`` (:mod:`infpop.executors`).
EXECUTORS = Registry(
    "executor",
    {"local": "infpop.executors.local:LocalExecutor", "slurm": "infpop.executors.slurm:SlurmExecutor"},
)
