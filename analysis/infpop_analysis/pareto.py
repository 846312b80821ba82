"""Pareto fronts and their knees: which configurations no other beats on both of two measures,
and where on that front a further gain in one costs the most of the other.

Used for throughput against energy per token (offline) and per-user against per-GPU
throughput (online). The knee is the front's point farthest from the straight line between its
two ends, both measures scaled to [0, 1] over the front (the "kneedle" idea: where the curve
bends most); a front of one or two points has no knee.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def front(df: pd.DataFrame, more: str, less: str | None = None, more2: str | None = None) -> pd.DataFrame:
    """The rows no other row dominates: ``more`` higher is better, and either ``less`` (lower is
    better) or ``more2`` (higher is better) is the second measure. Rows missing either measure
    are left out; ties on both measures keep every tied row. Sorted by ``more``, ascending."""
    if (less is None) == (more2 is None):
        raise ValueError("give exactly one of less= and more2=")
    second = less if less is not None else more2
    d = df.dropna(subset=[more, second])
    a = d[more].to_numpy(dtype=float)
    b = (-d[second] if less is not None else d[second]).to_numpy(dtype=float)  # both "higher is better"
    better_or_equal = (a[None, :] >= a[:, None]) & (b[None, :] >= b[:, None])
    strictly = (a[None, :] > a[:, None]) | (b[None, :] > b[:, None])
    dominated = (better_or_equal & strictly).any(axis=1)
    return d[~dominated].sort_values(more, kind="stable")


def knee(front_rows: pd.DataFrame, x: str, y: str) -> int | None:
    """Index label of the front's knee (see the module docstring), or ``None`` for fewer than
    three points or a front whose ends coincide on a measure."""
    if len(front_rows) < 3:
        return None
    xs, ys = front_rows[x].to_numpy(dtype=float), front_rows[y].to_numpy(dtype=float)
    span_x, span_y = xs.max() - xs.min(), ys.max() - ys.min()
    if span_x == 0 or span_y == 0:
        return None
    u, v = (xs - xs.min()) / span_x, (ys - ys.min()) / span_y
    (u0, v0), (u1, v1) = (u[0], v[0]), (u[-1], v[-1])  # the ends, in the front's order
    distance = np.abs((v1 - v0) * u - (u1 - u0) * v + u1 * v0 - v1 * u0) / np.hypot(u1 - u0, v1 - v0)
    inner = distance[1:-1]
    if not len(inner) or inner.max() == 0:
        return None
    return front_rows.index[1 + int(inner.argmax())]
