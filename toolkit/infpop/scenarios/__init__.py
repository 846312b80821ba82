"""Load scenarios: how a trial's requests reach the engine, one runner per scenario kind.

``offline`` (:mod:`infpop.scenarios.offline`, the study's protocol) sends every prompt in
static batches. ``online`` (:mod:`infpop.scenarios.online`) replays a Poisson arrival process
in real time, served with continuous batching where the engine declares it (vLLM) and with
dynamic batching otherwise (HF). Runners are entries of :data:`infpop.plugins.SCENARIOS`,
imported only when a trial needs one (:func:`infpop.scenarios.base.runner`); both share
:mod:`infpop.scenarios.base` and the measures of :mod:`infpop.scenarios.metrics`.
"""
