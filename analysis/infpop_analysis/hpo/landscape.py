"""A landscape: the measured objective of one (engine, model, hardware) over (GPU count, batch size).

The replay and the benchmark treat a landscape as the objective an optimizer queries: asking for
a configuration returns what the study measured there. Only points that were measured are in the
search space; a failure is a point too (an optimizer that proposes it pays for it). The objective
is throughput, or capacity per GPU under a latency SLO (:mod:`.objective`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

from infpop.errors import InputError

from infpop_analysis.hpo.objective import THROUGHPUT, Objective

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: What varies within the landscapes of one table: one per (engine, model, hardware), over
#: (GPU count, batch size), at one max_new_tokens.
LANDSCAPE_AXES = ("engine", "model", "hardware", "n_gpus", "batch_size", "max_new_tokens")

#: How a failed trial scores. ``partial``: an OOM row's partial throughput counts, as in the study's
#: script and tables (only a missing throughput is a failure); ``strict``: every non-ok trial fails.
FailurePolicy = Literal["partial", "strict"]
FAILURE_POLICIES: tuple[str, ...] = ("partial", "strict")


class Config(NamedTuple):
    """One point of the search space."""

    n_gpus: int
    batch_size: int

    def __str__(self) -> str:
        return f"g{self.n_gpus}_b{self.batch_size}"


class Point(NamedTuple):
    status: str
    #: The objective: tokens per second (for an OOM the partial-run value the study recorded), or
    #: capacity per GPU; NaN for a failure.
    throughput: float
    #: Measured seconds of the trial, where its cost is billed by them (capacity landscapes).
    wall_s: float = math.nan


@dataclass(frozen=True)
class Landscape:
    engine: str
    model: str
    hardware: str
    points: dict[Config, Point] = field(repr=False)
    #: Prompts and generated tokens per prompt of every trial: what a trial's GPU-seconds scale with.
    n_prompts: int = 1033
    max_new_tokens: int = 5
    objective: Objective = THROUGHPUT

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.engine, self.model, self.hardware)

    @property
    def space(self) -> list[Config]:
        return sorted(self.points)

    def score(self, config: Config, failures: FailurePolicy = "strict") -> float | None:
        """The objective at ``config``: its throughput, or None for a failure (or an unmeasured point)."""
        point = self.points.get(config)
        if point is None or math.isnan(point.throughput):
            return None
        if failures == "strict" and point.status != "ok":
            return None
        return point.throughput

    def optimum(self, failures: FailurePolicy = "strict") -> float | None:
        """The best value; None where none is positive: nothing to find (no success, or a capacity
        landscape whose every configuration met the SLO at no rate), so no search is scored on it."""
        values = [v for c in self.points if (v := self.score(c, failures)) is not None]
        return max(values) if values and max(values) > 0 else None

    def gpu_seconds(self, config: Config) -> float:
        """GPU-seconds a trial at ``config`` occupies, model loading excluded (as in throughput).

        A successful trial generates ``n_prompts * max_new_tokens`` tokens at its throughput. A
        failed trial is estimated: with a recorded partial throughput, the whole workload at that
        rate (an upper bound: prompts run shortest first, so an OOM strikes late, near the longest
        prompts); without one, a single batch at the best successful rate of that GPU count (the
        study's runs died at their first batch), or at the landscape's best rate when the GPU
        count has no success at all. A capacity landscape's value is no rate of tokens: a trial
        there is billed its measured seconds (:func:`landscapes`).
        """
        point = self.points[config]
        if not math.isnan(point.wall_s):
            return config.n_gpus * point.wall_s
        tokens = self.n_prompts * self.max_new_tokens
        if not math.isnan(point.throughput) and point.throughput > 0:
            return config.n_gpus * tokens / point.throughput
        same_g = [p.throughput for c, p in self.points.items() if c.n_gpus == config.n_gpus and p.status == "ok"]
        rate = max(same_g) if same_g else self.optimum("strict") or 1.0
        first_batch = min(config.batch_size, self.n_prompts) * self.max_new_tokens
        return config.n_gpus * first_batch / rate


def landscapes(table: pd.DataFrame, max_new_tokens: int = 5, objective: Objective = THROUGHPUT) -> list[Landscape]:
    """One landscape of ``objective`` per (engine, model, hardware) of a tidy table, at ``max_new_tokens``.

    Repetitions of a point are averaged (a sweep may hold several; the published data holds one).
    Invalid runs are left out, and the count is logged. A table whose trials differ in another
    configuration axis (workload, request rate, GPU memory share, ...) is refused, naming the
    column: a landscape's points must differ only in GPU count and batch size.

    Capacity landscapes bill a trial its measured ``wall_s`` (a failure without one: the
    landscape's median). A capacity row's ``wall_s`` is its capacity probe's, so the benchmark
    counts one probe per trial: a bisection runs alike many probes everywhere (log2 of the
    range over the tolerance), so the shares of a sweep hold, not the absolute GPU-hours.
    """
    from infpop_analysis.table import split_axes, valid_rows

    table, n_invalid = valid_rows(table)
    if n_invalid:
        log.warning("landscapes: left out %d invalid run(s) (valid = false)", n_invalid)
    df = table[table["max_new_tokens"] == max_new_tokens]
    if df.empty:
        raise InputError(f"table: max_new_tokens: no trials with value {max_new_tokens}")
    mixed = split_axes(df, list(LANDSCAPE_AXES))
    if mixed:
        values = sorted(df[mixed[0]].astype("string").fillna("none").unique())
        raise InputError(
            f"table: column {mixed[0]!r} has {len(values)} values ({', '.join(values)}), but the points of a "
            f"landscape may differ only in GPU count and batch size; keep the rows of one {mixed[0]} value"
        )
    df = df.assign(**dict(zip(("status", "value"), objective.table_values(df))))
    billed = not objective.tokens_per_s
    out = []
    for (engine, model, hardware), grid in df.groupby(["engine", "model", "hardware"], sort=True):
        points = {}
        typical_s = float(grid["wall_s"].astype(float).median()) if billed and "wall_s" in grid else math.nan
        if billed and math.isnan(typical_s):
            raise InputError(
                f"table: column 'wall_s': no trial of {engine}/{model}/{hardware} has one, and a {objective.label} "
                "landscape bills its trials by it"
            )
        for (g, b), reps in grid.groupby(["n_gpus", "batch_size"]):
            ok = reps[reps["status"] == "ok"]
            chosen = ok if len(ok) else reps
            status = "ok" if len(ok) else str(reps["status"].iloc[0])
            wall_s = float(chosen["wall_s"].astype(float).mean()) if billed else math.nan
            points[Config(int(g), int(b))] = Point(
                status, float(chosen["value"].mean()), typical_s if math.isnan(wall_s) else wall_s
            )
        n_prompts = grid["n_prompts"].dropna()
        out.append(
            Landscape(
                str(engine),
                str(model),
                str(hardware),
                points,
                n_prompts=int(n_prompts.iloc[0]) if len(n_prompts) else 1033,
                max_new_tokens=max_new_tokens,
                objective=objective,
            )
        )
    return out


def by_key(items: list[Landscape]) -> dict[tuple[str, str, str], Landscape]:
    return {land.key: land for land in items}
