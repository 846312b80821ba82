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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from infpop.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    from infpop.manifest import Manifest
    from infpop.results import TrialResult

ObjectiveName = Literal["throughput", "capacity"]


@dataclass(frozen=True)
class Objective:
    """One quantity a search maximises."""

    name: ObjectiveName
    #: How the state, ``infpop status`` and the log name it.
    label: str
    unit: str
    #: The tidy table's column that holds it.
    column: str
    #: Whether the physical model's estimate is compared per GPU (the start's order).
    per_gpu: bool
    #: Whether it is a rate of tokens: then the roofline bound (tokens/s) bounds it and may rule
    #: configurations out, and a trial's cost follows from it (else from its measured seconds).
    tokens_per_s: bool

    def value(self, result: TrialResult) -> float | None:
        """The objective measured by one trial; None for a failure."""
        if self.name == "throughput":
            return result.throughput if result.status == "ok" else None
        found = result.capacity
        if found is None:
            return None
        per_gpu = None if found.capacity_rps is None else found.capacity_rps / result.trial.n_gpus
        return capacity_value(per_gpu, found.stopped)

    def table_values(self, rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        """Per row of a tidy table: its status for the search (``ok`` where the objective was
        measured) and its value (NaN for a failure, or an OOM's partial throughput)."""
        if self.name == "throughput":
            return rows["status"].astype(str), rows["throughput"].astype(float)
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

    def format(self, value: float) -> str:
        return f"{value:.1f} {self.unit}" if self.name == "throughput" else f"{value:.4g} {self.unit}"


def capacity_value(per_gpu: float | None, stopped: str) -> float | None:
    """Capacity per GPU from a search's outcome: 0 where the SLO failed already at the lowest rate."""
    if per_gpu is not None:
        return per_gpu
    return 0.0 if stopped == "violated_at_min_rate" else None


THROUGHPUT = Objective("throughput", "throughput", "tok/s", "throughput", per_gpu=False, tokens_per_s=True)
CAPACITY = Objective(
    "capacity",
    "capacity per GPU",
    "requests/s per GPU at the SLO",
    "capacity_rps_per_gpu",
    per_gpu=True,
    tokens_per_s=False,
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
