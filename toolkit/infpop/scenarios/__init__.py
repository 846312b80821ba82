"""Load scenarios: how a trial's requests reach the engine.

``offline`` (the study's protocol) is :func:`infpop.trial.run_trial`: every prompt, in
batches. ``online`` (:mod:`infpop.scenarios.online`) replays a Poisson arrival process in
real time. Both are measured into the same result record; :mod:`infpop.scenarios.metrics`
holds what the online scenario adds to it and the validity rule both apply.
"""
