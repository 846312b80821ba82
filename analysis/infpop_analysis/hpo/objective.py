"""What a search maximises: offline throughput, or serving capacity per GPU under a latency SLO.

One record per objective (:data:`OBJECTIVES`) says how to read its value from a trial's result
(the live search, :func:`~infpop_analysis.hpo.search.observe`) and from a tidy table's rows (the
replay and the benchmark, :func:`~infpop_analysis.hpo.landscape.landscapes`), its unit, and what
the physical model may say about it. The optimizers and the stopping rule see only values over
(GPU count, batch size), so both objectives are searched by the same methods and rule.

*Capacity per GPU* is the table's ``capacity_rps_per_gpu``: the highest request rate whose p99
latencies met the scenario's SLO (:mod:`infpop.capacity`), per GPU, the quantity the report's
"serves most per GPU" ranks by. A capacity search that found no rate meeting the SLO (it failed
already at ``min_rate``) measured a capacity of 0: a valid value, not a failure. A search whose
probe did not finish before any rate met the SLO (an OOM, an error) has no value: a failure, as
an OOM is under the throughput objective.

The physical model speaks of tokens per second. Its *estimate* orders the first trial: for
capacity per GPU, by the estimate per GPU, since a configuration's capacity at an SLO rises with
the throughput it sustains until latency binds, and the search compares configurations per GPU.
Its *bound* is in tokens per second, a unit capacity in requests per second cannot be compared
with, so it rules nothing out for capacity (the benchmark's ablation found it saves no trials on
the published throughput landscapes either; docs/search.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from infpop.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    from infpop.manifest import Manifest
    from infpop.results import TrialResult

ObjectiveName = Literal["throughput", "capacity"]


@dataclass(frozen=True)
class Objective:
    """One quantity a search maximises: what sets one objective apart from another is data here
    (how to read it, how to print it, how it relates to the physical model), so adding an
    objective adds a record and touches no branch."""

    name: ObjectiveName
    #: How the state, ``infpop status`` and the log name it.
    label: str
    unit: str
    #: The tidy table's column that holds it.
    column: str
    #: The format spec of a value in messages and the log (before its unit).
    format_spec: str
    #: Whether the value is a configuration's generated tokens per second, the physical model's
    #: own quantity: then the model's bound (tokens/s) may rule configurations out, and a trial's
    #: cost follows from its value (else from its measured seconds).
    tokens_per_s: bool
    #: The objective measured by one trial; None for a failure (the live search).
    value: Callable[[TrialResult], float | None] = field(repr=False)
    #: Per row of a tidy table: its status for the search (``ok`` where the objective was measured)
    #: and its value (NaN for a failure, or an OOM's partial throughput) (the replay, the benchmark).
    table_values: Callable[[pd.DataFrame], tuple[pd.Series, pd.Series]] = field(repr=False)

    @property
    def per_gpu(self) -> bool:
        """Whether the value is per GPU, so the model's estimate (a configuration's tokens/s) is
        divided by the GPU count to order the start. Derived, not a second field: an objective is
        either the model's own quantity, a configuration's tokens/s, or a per-GPU quantity in
        another unit that the estimate only orders (capacity). A rate of tokens per GPU would need
        the bound and a trial's cost scaled per GPU too, which nothing does, so no flag may claim it."""
        return not self.tokens_per_s

    def format(self, value: float) -> str:
        return f"{value:{self.format_spec}} {self.unit}"


def capacity_value(per_gpu: float | None, stopped: str) -> float | None:
    """Capacity per GPU from a search's outcome: 0 where the SLO failed already at the lowest rate."""
    if per_gpu is not None:
        return per_gpu
    return 0.0 if stopped == "violated_at_min_rate" else None


def _throughput(result: TrialResult) -> float | None:
    return result.throughput if result.status == "ok" else None


def _throughput_rows(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    return rows["status"].astype(str), rows["throughput"].astype(float)


def _capacity(result: TrialResult) -> float | None:
    found = result.capacity
    if found is None:
        return None
    return capacity_value(found.rps_per_gpu(result.trial.n_gpus), found.stopped)


def _capacity_rows(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    stopped = rows["capacity_stopped"] if "capacity_stopped" in rows else None
    if stopped is None or stopped.isna().any():
        n = len(rows) if stopped is None else int(stopped.isna().sum())
        raise InputError(
            f"table: column 'capacity_stopped': {n} row(s) without a capacity search; the capacity objective "
            "needs every trial to come from a scenario with an slo (keep only those rows)"
        )
    values = [
        capacity_value(None if math.isnan(v) else float(v), str(s))
        for v, s in zip(rows["capacity_rps_per_gpu"].astype(float), stopped)
    ]
    import pandas as pd

    value = pd.Series([math.nan if v is None else v for v in values], index=rows.index, dtype=float)
    status = rows["status"].astype(str).where(value.isna(), "ok")
    return status, value


THROUGHPUT = Objective(
    "throughput",
    "throughput",
    "tok/s",
    "throughput",
    format_spec=".1f",
    tokens_per_s=True,
    value=_throughput,
    table_values=_throughput_rows,
)
CAPACITY = Objective(
    "capacity",
    "capacity per GPU",
    "requests/s per GPU at the SLO",
    "capacity_rps_per_gpu",
    format_spec=".4g",
    tokens_per_s=False,
    value=_capacity,
    table_values=_capacity_rows,
)
#: Every objective by name.
OBJECTIVES: dict[str, Objective] = {o.name: o for o in (THROUGHPUT, CAPACITY)}


def for_manifest(manifest: Manifest, asked: str | None) -> Objective:
    """The objective of a live search: the one asked for, else capacity where the manifest's
    scenario has an ``slo`` (its trials are capacity searches) and throughput otherwise."""
    slo = getattr(manifest.scenario, "slo", None)
    if asked is None:
        return CAPACITY if slo is not None else THROUGHPUT
    if asked == "capacity" and slo is None:
        raise InputError(
            "search: --objective capacity: the manifest's scenario has no slo (scenario.slo with scenario.capacity, "
            "kind online): its trials measure no capacity"
        )
    if asked == "throughput" and slo is not None:
        raise InputError(
            "search: --objective throughput: the manifest's scenario has an slo, so each trial is a capacity search; "
            "search capacity, or drop scenario.slo and scenario.capacity"
        )
    return OBJECTIVES[asked]
