"""Engine registry: one adapter module per engine, imported only when a trial needs it.

Planning and validation need engine *names* and declared capabilities only, so the login
node never imports torch. The table is :data:`infpop.plugins.ENGINES`; third-party engines
register through the ``infpop.engines`` entry-point group, naming an
:class:`infpop.plugins.Plugin` that carries their :class:`~infpop.plugins.EngineCapabilities`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infpop.plugins import ENGINES

if TYPE_CHECKING:
    from infpop.engines.base import Engine


def engine_class(name: str) -> type[Engine]:
    return ENGINES.load(name)
