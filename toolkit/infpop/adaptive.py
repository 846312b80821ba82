"""Adaptive repetitions: measure a configuration again only while its interval is too wide.

``repetitions: {min: 3, max: 10, target_rel_halfwidth: 0.02}`` plans ``max`` repetitions of
every configuration; the trial loop runs them in rounds as it runs fixed ones, and before
repetition ``r >= min`` asks whether the configuration's ok throughputs so far already have a
95% Student-t interval of the mean whose half-width is at most the target fraction of the mean
(the interval ``configs.csv`` gives: :mod:`infpop_analysis.summaries`). If so, the repetition
is recorded ``skipped_enough`` with that reason instead of run, and so are the later ones; a
configuration without such a record stopped at ``max``. Deciding between rounds keeps the
model loaded and the rounds' protection against drift.

Stopping when the interval looks narrow enough selects narrow-looking samples, so the
configuration's final interval covers somewhat less often than stated; the target should be a
precision a user needs, not a test.

Compute-node code: no scipy, so Student's quantile comes from a table (and an expansion
beyond it).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

#: Student's t quantile at 0.975 for 1..30 degrees of freedom (the 95% interval's).
T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
#: The normal quantile at 0.975, for the expansion above 30 degrees of freedom.
Z975 = 1.959964


def t975(df: int) -> float:
    """Student's t quantile at 0.975; above the table, the Cornish-Fisher expansion (error < 1e-4)."""
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def rel_halfwidth(values: Sequence[float]) -> float:
    """Half-width of the 95% Student-t interval of the mean, over the mean; inf below two values."""
    if len(values) < 2:
        return math.inf
    mean = statistics.fmean(values)
    return t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)) / mean


def enough(values: Sequence[float], minimum: int, target: float) -> str | None:
    """Why no further repetition is needed (the text a ``skipped_enough`` result carries), or None."""
    if len(values) < minimum:
        return None
    width = rel_halfwidth(values)
    if width > target:
        return None
    return (
        f"enough after {len(values)} repetitions: the 95% interval's half-width is {width:.2%} of the mean "
        f"(target {target:.2%})"
    )
