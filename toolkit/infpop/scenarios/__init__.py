"""Load scenarios: how a trial's requests reach the engine, one runner per scenario kind.

``offline`` (:mod:`infpop.scenarios.offline`, the study's protocol) sends every prompt in
static batches. ``online`` (:mod:`infpop.scenarios.online`) replays a Poisson arrival process
in real time, served with continuous batching where the engine streams (vLLM) and with
dynamic batching otherwise (HF). Runners are looked up by kind in
:data:`infpop.plugins.SCENARIOS` and imported only when a trial needs one; both share
:mod:`infpop.scenarios.base` and the measures of :mod:`infpop.scenarios.metrics`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infpop.plugins import SCENARIOS

if TYPE_CHECKING:
    from infpop.scenarios.base import Runner


def runner(kind: str) -> Runner:
    """The runner of scenario ``kind``."""
    return SCENARIOS.load(kind)
