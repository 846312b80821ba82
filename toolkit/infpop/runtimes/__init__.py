"""Container runtimes: one module per runtime, an entry of :data:`infpop.plugins.RUNTIMES` each.

A profile partition names its runtime (``runtime: apptainer``, the default, or ``charliecloud``);
``infpop.runtimes.<name>`` defines ``RUNTIME``, a :class:`~infpop.runtimes.base.ContainerRuntime`
that says how an image is built, how a job enters it and how its digest is taken. Third-party
runtimes register through the ``infpop.runtimes`` entry-point group, naming an
:class:`infpop.plugins.Plugin` whose target is their runtime object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infpop.plugins import RUNTIMES

if TYPE_CHECKING:
    from infpop.runtimes.base import ContainerRuntime

DEFAULT = "apptainer"


def known_runtimes() -> set[str]:
    return RUNTIMES.names()


def get_runtime(name: str) -> ContainerRuntime:
    return RUNTIMES.load(name)
