"""Container runtimes: one module per runtime, found by name, so adding one touches no other module.

A profile partition names its runtime (``runtime: apptainer``, the default, or ``charliecloud``);
``infpop.runtimes.<name>`` defines ``RUNTIME``, a :class:`~infpop.runtimes.base.ContainerRuntime`
that says how an image is built, how a job enters it and how its digest is taken. Third-party
runtimes register through the ``infpop.runtimes`` entry-point group (``name = "module:OBJECT"``).
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infpop.runtimes.base import ContainerRuntime

DEFAULT = "apptainer"


def _registry() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group="infpop.runtimes")}
    builtin = {
        mod.name: f"{__name__}.{mod.name}:RUNTIME" for mod in pkgutil.iter_modules(__path__) if mod.name != "base"
    }
    return {**found, **builtin}


def known_runtimes() -> set[str]:
    return set(_registry())


def get_runtime(name: str) -> ContainerRuntime:
    target = _registry().get(name)
    if target is None:
        raise KeyError(f"unknown container runtime {name!r}; known: {', '.join(sorted(_registry()))}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
