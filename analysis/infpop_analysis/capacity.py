"""The capacity searches' probes as a table: one row per rate tried (a result's ``capacity``,
:mod:`infpop.capacity`), with its p50/p99 latencies, the SLO's verdict and the search's outcome.

``infpop aggregate`` writes it beside the tidy table (:data:`infpop_analysis.layout.CAPACITY_PROBES`):
the tidy table keeps one row per trial, and a capacity trial is one configuration whose probes
are many rates; the report draws latency against rate from here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from infpop.results import CorruptResult, TrialResult, iter_results

#: The probe's latencies as columns: (column prefix, the probe's field).
MEASURES = (("ttft", "ttft_s"), ("tpot", "tpot_s"), ("e2e", "latency_s"))
#: Columns that name the configuration, as the tidy table names them.
CONFIG = ["trial_id", "hardware", "engine", "model", "n_gpus", "batch_size", "max_new_tokens", "repetition", "workload"]


def probe_rows(result: TrialResult) -> list[dict]:
    """One row per probe of ``result``'s capacity search, in the order tried; none without one."""
    found, t = result.capacity, result.trial
    if found is None:
        return []
    config = dict(zip(CONFIG, [t.trial_id, t.hardware, t.engine, t.model.name, t.n_gpus, t.batch_size,
                               t.max_new_tokens, t.repetition, t.workload.id]))  # fmt: skip
    slo = {f"slo_{name}_p99_s": getattr(found.slo, f"{name}_p99_s") for name, _ in MEASURES}
    rows = []
    for order, p in enumerate(found.probes):
        latencies = {
            f"{name}_{q}_s": getattr(getattr(p, field), q) if getattr(p, field) is not None else None
            for name, field in MEASURES
            for q in ("p50", "p99")
        }
        rows.append(
            {
                **config,
                "order": order,
                "rate": p.rate,
                "status": p.status,
                "met": p.met,
                "violations": "; ".join(p.violations),
                **latencies,
                "throughput": p.throughput,
                "completed": p.completed,
                "valid": p.valid,
                **slo,
                "capacity_rps": found.capacity_rps,
                "violated_rps": found.violated_rps,
                "stopped": found.stopped,
            }
        )
    return rows


def probes_table(root: str | Path) -> pd.DataFrame:
    """Every capacity probe under ``root`` (corrupt results are the tidy table's to report)."""
    rows = [r for item in iter_results(root) if not isinstance(item, CorruptResult) for r in probe_rows(item)]
    return pd.DataFrame(rows)
