"""Engine registry: one adapter module per engine, imported only when a trial needs it.

Planning and validation need engine *names* only, so the login node never imports torch.
Third-party engines register through the ``infpop.engines`` entry-point group; the table of
names is :data:`infpop.plugins.ENGINES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infpop.plugins import ENGINES

if TYPE_CHECKING:
    from infpop.engines.base import Engine


def engine_class(name: str) -> type[Engine]:
    return ENGINES.load(name)
