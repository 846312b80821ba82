"""The study's RQ5 replay: does re-tuning after a GPU change beat carrying the old best over?

For each (engine, model) and direction (upgrade V100 -> A100, downgrade A100 -> V100):

1. *transferred*: the old GPU's configurations, best throughput first; the first one that has a
   throughput on the new GPU (the study's rule: if the best failed there, take the next best);
2. *found*: hyperopt TPE (100 evaluations, objective = measured throughput on the new GPU,
   failures worst) over the new GPU's landscape; the configuration of its best trial;
3. improvement % = (found - transferred) / transferred * 100, for each of 10 seeded repetitions.

Per model, the median over repetitions; per (engine, direction), a summary over models computed
as the study's script did: models whose median is negative are left out, then the median and
the mean of the medians, and how many are positive. The paper also quotes a mean without the
models above 300 % (its violin plot drops them); that value is in the summary too.

Scores follow the study's script by default (``failures="partial"``: an OOM row's partial
throughput counts; only a missing throughput fails). ``space="study"`` searches the study's lists
(batch 1024, which the data does not hold, so those proposals fail) instead of the measured grid.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from infpop.errors import InputError

from infpop_analysis import layout
from infpop_analysis.hpo.landscape import Config, FailurePolicy, Landscape, by_key
from infpop_analysis.hpo.optimizers import FAILURE_LOSS, TPE

if TYPE_CHECKING:
    import pandas as pd

Space = Literal["measured", "study"]
SPACES: tuple[str, ...] = ("measured", "study")
#: The lists the study's hpo_infpop.py searched (its data holds batch 1028, not 1024).
STUDY_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
STUDY_GPU_COUNTS = (1, 2, 4, 8)
DIRECTIONS = {"upgrade": ("v100", "a100"), "downgrade": ("a100", "v100")}
EVALUATIONS = 100
REPETITIONS = 10
#: The paper's violin plot drops per-model medians above this; its quoted HF upgrade mean does too.
PLOT_CUTOFF = 300.0

COLUMNS = [
    "engine",
    "model",
    "direction",
    "repetition",
    "seed",
    "transferred_config",
    "transferred_throughput",
    "found_config",
    "found_throughput",
    "improvement_pct",
    "evaluations",
]


@dataclass(frozen=True)
class Row:
    engine: str
    model: str
    direction: str
    repetition: int
    seed: int
    transferred_config: str
    transferred_throughput: float
    found_config: str
    found_throughput: float
    improvement_pct: float
    evaluations: int


def transferred(old: Landscape, new: Landscape, failures: FailurePolicy) -> tuple[Config, float] | None:
    """The old GPU's best configuration that has a throughput on the new GPU, and that throughput."""
    ranked = sorted(
        ((v, c) for c in old.points if (v := old.score(c, failures)) is not None), key=lambda vc: (-vc[0], vc[1])
    )
    for _, config in ranked:
        value = new.score(config, failures)
        if value is not None and value > 0:
            return config, value
    return None


def tpe_lists(new: Landscape, space: Space) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if space == "study":
        return STUDY_BATCH_SIZES, STUDY_GPU_COUNTS
    return tuple(sorted({c.batch_size for c in new.points})), tuple(sorted({c.n_gpus for c in new.points}))


def search(
    new: Landscape, seed: int, space: Space, failures: FailurePolicy, evaluations: int = EVALUATIONS
) -> tuple[Config, float | None]:
    """TPE on the new GPU's landscape: the best trial's configuration and its throughput."""
    batch_sizes, gpu_counts = tpe_lists(new, space)

    def loss(config: Config) -> float:
        value = new.score(config, failures)
        return FAILURE_LOSS if value is None else -value

    found = TPE(batch_sizes, gpu_counts, seed=seed).minimize(loss, evaluations)
    return found, new.score(found, failures)


def replay(
    lands: Sequence[Landscape],
    *,
    engines: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    repetitions: int = REPETITIONS,
    base_seed: int = 0,
    space: Space = "measured",
    failures: FailurePolicy = "partial",
    evaluations: int = EVALUATIONS,
) -> pd.DataFrame:
    """One row per (engine, model, direction, repetition); repetition r uses seed ``base_seed + r``."""
    if space not in SPACES:
        raise InputError(f"replay: space: unknown value {space!r}; known: {', '.join(SPACES)}")
    index = by_key(list(lands))
    pairs = sorted({(e, m) for e, m, _ in index})
    rows = []
    for engine, model in pairs:
        if (engines and engine not in engines) or (models and model not in models):
            continue
        for direction, (old_hw, new_hw) in DIRECTIONS.items():
            old, new = index.get((engine, model, old_hw)), index.get((engine, model, new_hw))
            if old is None or new is None:
                continue
            carried = transferred(old, new, failures)
            if carried is None:
                continue
            config, value = carried
            for rep in range(repetitions):
                seed = base_seed + rep
                found, found_value = search(new, seed, space, failures, evaluations)
                gain = (found_value - value) / value * 100 if found_value is not None else math.nan
                rows.append(
                    Row(
                        engine,
                        model,
                        direction,
                        rep,
                        seed,
                        str(config),
                        value,
                        str(found),
                        found_value if found_value is not None else math.nan,
                        gain,
                        evaluations,
                    )
                )
    import pandas as pd

    return pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)


def per_model(rows: pd.DataFrame) -> pd.DataFrame:
    """Median improvement over repetitions, per (engine, direction, model)."""
    return (
        rows.groupby(["engine", "direction", "model"], sort=True)["improvement_pct"]
        .median()
        .reset_index(name="median_pct")
    )


def summarize(rows: pd.DataFrame) -> dict[str, dict]:
    """Per ``<engine>_<direction>``: the study's statistics over per-model medians."""
    out = {}
    for (engine, direction), grp in per_model(rows).groupby(["engine", "direction"], sort=True):
        medians = dict(zip(grp["model"], grp["median_pct"]))
        kept = {m: v for m, v in medians.items() if v >= 0}
        below = [v for v in kept.values() if v < PLOT_CUTOFF]
        out[f"{engine}_{direction}"] = {
            "n_models": len(kept),
            "median_of_medians": statistics.median(kept.values()) if kept else math.nan,
            "mean_of_medians": statistics.fmean(kept.values()) if kept else math.nan,
            "mean_of_medians_below_300": statistics.fmean(below) if below else math.nan,
            "n_positive": sum(v > 0 for v in kept.values()),
            "excluded_negative": sorted(m for m, v in medians.items() if not v >= 0),
            "medians": medians,
        }
    return out


def violin(summary: dict[str, dict], path: Path) -> Path:
    """The four distributions of per-model medians (the paper's Fig. 5), without its 300 % cut."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [k for k in ("hf_upgrade", "hf_downgrade", "vllm_upgrade", "vllm_downgrade") if k in summary]
    data = [[v for v in summary[k]["medians"].values() if not math.isnan(v)] or [0.0] for k in labels]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.violinplot(data, showmeans=True, showmedians=True)
    ax.set_xticks(range(1, len(labels) + 1), [k.replace("_", "\n") for k in labels])
    ax.set_ylabel("throughput improvement % (per-model median)")
    ax.set_yscale("symlog", linthresh=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write(rows: pd.DataFrame, summary: dict, out: Path, settings: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "hpo_replay.csv"
    rows.to_csv(csv, index=False)
    js = out / layout.HPO_SUMMARY
    js.write_text(json.dumps({"settings": settings, "summary": summary}, indent=1, default=float))
    return [csv, js, violin(summary, out / "hpo_violin.pdf")]


def format_summary(summary: dict[str, dict]) -> str:
    lines = [f"{'':16} {'models':>6} {'median':>8} {'mean':>8} {'mean<300':>9} {'positive':>8}"]
    for key, s in summary.items():
        lines.append(
            f"{key:16} {s['n_models']:>6} {s['median_of_medians']:>8.2f} {s['mean_of_medians']:>8.2f} "
            f"{s['mean_of_medians_below_300']:>9.2f} {s['n_positive']:>8}"
        )
    return "\n".join(lines)
