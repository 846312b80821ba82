"""When a search may stop: no untried configuration can plausibly beat the incumbent.

A user cannot see a landscape's optimum, so a search must end on its own and name its pick.
:func:`plausible` keeps the untried configurations that could still beat the incumbent by more
than the tolerance, given the evidence a search has:

- *trend along batch size* (per GPU count): throughput over log2(batch) rises to one peak and
  falls after it, so beyond two measured points that already fall away from the peak (by more
  than the tolerance: a smaller fall is a tie, as on vLLM's plateau) nothing better lies;
  between two measured points, nothing more than ``slack`` above the better one;
- *trend along GPU count*: the same on each GPU count's best measured throughput; and a GPU
  count measured at the incumbent's batch size more than ``slack`` twice below it is out (the
  batch profile keeps its shape across GPU counts, its peak moving by a level or so);
- *OOMs seen*: a batch above a failure at the same GPU count fails too;
- *physics* (:class:`Physics`, optional): configurations the memory model says fail, and those
  whose roofline bound (no engine beats it) stays below the incumbent. The one batch level
  above the incumbent stays open even where the memory model says it fails: its frontier is
  uncertain by about a level (precision 0.92), and an incumbent right below it is where that
  error would hide the optimum (a throughput still rising with batch size). The bound is not
  scaled by a measured efficiency: HF's efficiency varies by orders of magnitude with batch
  size, so a scaled roofline is no bound (``Physics.estimate``, scaled, only picks the first
  trial).

A constraint may restrict the incumbent to some configurations (``eligible``:
``--require-equivalent`` admits only those whose outputs match the reference's). Every trial
still shapes the trends, but a falling trend then rules out only what it keeps at or below the
incumbent, and the GPU-count rule scales a GPU count's value by how far the incumbent's own
GPU count peaks above the incumbent. Without a constraint both are as above.

Each part can be removed (``without``, a set of :data:`PARTS`) to measure what it does: the
benchmark's ablations.

Baselines get the common practical rule instead (:func:`no_improvement`): stop after ``k``
consecutive trials without an improvement of more than the tolerance.

A difference within the tolerance is a tie: the published data holds one repetition per
configuration, so no interval is known there; with repetitions, a live search treats
configurations whose intervals overlap as tied (:func:`tied`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from infpop_analysis.hpo.landscape import Config

#: The search looks for a configuration within this fraction of the optimum.
TOLERANCE = 0.01
#: How far an unmeasured point between two measured ones may rise above the better of them.
#: Chosen per setting on the published landscapes by the benchmark's rule (the fewest trials
#: keeping the final hit rate at 0.95; it prints the choice cross-validated): physics alone
#: starts near the peak and its bound rules out the far configurations, so it needs none; a
#: search led by a prior jumps between configurations and gathers sparser trends.
SLACK = 0.05
#: The slack of physics without a prior (``ours+physics``).
PHYSICS_SLACK = 0.0
#: Baselines stop after this many consecutive trials without improvement (a common choice); the
#: benchmark also tunes it per baseline among :data:`PATIENCES`, by the rule that tunes the slack.
PATIENCE = 5
#: The patience values a baseline's tuned patience is chosen among (fixed before any run).
PATIENCES: tuple[int, ...] = (5, 10, 15, 20, 25, 30, 40)
#: The parts of the start and the rule an ablation may remove: the start at the best estimate
#: (the search's, :class:`~infpop_analysis.hpo.optimizers.Structured`), the roofline bound, the
#: predicted-OOM exclusion, the GPU-count rule (a GPU count far below the incumbent at its batch
#: is out) and the one-level-up exception to the predicted-OOM exclusion.
PARTS: tuple[str, ...] = ("estimate_start", "roofline_bound", "predicted_oom", "gpu_count_rule", "level_up_exception")


@dataclass(frozen=True)
class Physics:
    """What the memory and roofline model say about one landscape before any trial."""

    #: Configurations predicted to run out of memory.
    oom: frozenset[Config] = frozenset()
    #: Tokens/s no engine beats per configuration (:func:`infpop.physics.bound`).
    bound: Mapping[Config, float] = field(default_factory=dict)
    #: Expected tokens/s per configuration (the roofline at the engine's calibrated efficiency):
    #: no bound, so it never rules anything out; it says where to start.
    estimate: Mapping[Config, float] = field(default_factory=dict)


def tied(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    """Whether two configurations' intervals (low, high) overlap: neither is shown better."""
    if a is None or b is None:
        return False
    return a[0] <= b[1] and b[0] <= a[1]


def _levels(space: Sequence[Config]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for c in space:
        out.setdefault(c.n_gpus, []).append(c.batch_size)
    return {g: sorted(bs) for g, bs in out.items()}


def _trend_excluded(
    xs: list[int], values: Mapping[int, float | None], x: int, limit: float, tolerance: float, target: float
) -> bool:
    """Along one axis (sorted levels ``xs``), whether ``x`` (untried) cannot exceed ``limit``:
    two measured successes on one side of it falling towards it by more than ``tolerance`` (a
    smaller fall is a tie, not a trend: on a plateau it is noise), the nearer of them not above
    ``target`` (the incumbent plus the tolerance: always so unless the incumbent is constrained
    below the best measured), or measured neighbours on both sides whose better one (plus slack,
    folded into ``limit`` by the caller) stays below."""
    i = xs.index(x)
    below = [values[v] for v in xs[:i] if values.get(v) is not None]
    above = [values[v] for v in xs[i + 1 :] if values.get(v) is not None]
    if len(below) >= 2 and below[-1] * (1 + tolerance) < below[-2] and below[-1] <= target:
        return True
    if len(above) >= 2 and above[0] * (1 + tolerance) < above[1] and above[0] <= target:
        return True
    if below and above:
        return max(below[-1], above[0]) <= limit
    return False


def plausible(
    space: Sequence[Config],
    seen: Mapping[Config, float | None],
    *,
    tolerance: float = TOLERANCE,
    slack: float = SLACK,
    physics: Physics | None = None,
    without: frozenset[str] = frozenset(),
    eligible: Collection[Config] | None = None,
) -> list[Config]:
    """Untried configurations that could still beat the incumbent by more than ``tolerance``;
    ``without``: the parts of the rule (:data:`PARTS`) left out. ``eligible``: the configurations
    that may be the incumbent (None: every one); a constraint (``--require-equivalent``) leaves
    the others out of it, while their throughputs still say where the landscape rises and falls."""
    untried = [c for c in space if c not in seen]
    ok = {c: v for c, v in seen.items() if v is not None}
    candidates = {c: v for c, v in ok.items() if eligible is None or c in eligible}
    if not candidates:
        # Nothing (eligible) measured yet: everything not known (or predicted) to fail is open.
        failed = {c for c, v in seen.items() if v is None}
        out = [c for c in untried if not _above_failure(c, failed)]
        if physics is not None and "predicted_oom" not in without:
            out = [c for c in out if c not in physics.oom] or out
        return out
    best = max(candidates, key=lambda c: candidates[c])
    incumbent = candidates[best]
    target = incumbent * (1 + tolerance)
    limit = target / (1 + slack)
    levels = _levels(space)
    gpus = sorted(levels)
    failed = {c for c, v in seen.items() if v is None}
    per_g_best: dict[int, float | None] = {
        g: max((v for c, v in ok.items() if c.n_gpus == g), default=None) for g in gpus
    }
    out = []
    for c in untried:
        if _above_failure(c, failed):
            continue
        if (
            physics is not None
            and "predicted_oom" not in without
            and c in physics.oom
            and ("level_up_exception" in without or not _next_level_up(c, best, levels))
        ):
            continue
        column = {b: seen.get(Config(c.n_gpus, b), None) for b in levels[c.n_gpus]}
        column = {b: v for b, v in column.items() if Config(c.n_gpus, b) in ok}
        if _trend_excluded(levels[c.n_gpus], column, c.batch_size, limit, tolerance, target):
            continue
        if per_g_best[c.n_gpus] is None and _trend_excluded(gpus, per_g_best, c.n_gpus, limit, tolerance, target):
            continue
        at_best = ok.get(Config(c.n_gpus, best.batch_size))
        # The profile keeps its shape across GPU counts, so its peak there is ``at_best`` lifted as
        # the incumbent's GPU count rises above the incumbent (1 unless the incumbent is constrained).
        lift = per_g_best[best.n_gpus] / incumbent if incumbent > 0 else 1.0
        gpu_rule = "gpu_count_rule" not in without
        if gpu_rule and c.n_gpus != best.n_gpus and at_best is not None and at_best * lift * (1 + slack) ** 2 < target:
            continue
        if physics is not None and "roofline_bound" not in without and physics.bound.get(c, math.inf) < target:
            continue
        out.append(c)
    return out


def _next_level_up(c: Config, best: Config, levels: dict[int, list[int]]) -> bool:
    """Whether ``c`` is one batch level above ``best`` at its GPU count."""
    sizes = levels[c.n_gpus]
    i = sizes.index(c.batch_size)
    return c.n_gpus == best.n_gpus and i > 0 and sizes[i - 1] == best.batch_size


def _above_failure(c: Config, failed: set[Config]) -> bool:
    return any(f.n_gpus == c.n_gpus and f.batch_size < c.batch_size for f in failed)


def no_improvement(values: Sequence[float | None], patience: int = PATIENCE, tolerance: float = TOLERANCE) -> bool:
    """Whether the last ``patience`` trials (in order) brought no improvement above ``tolerance``."""
    best = None
    since = 0
    for v in values:
        if v is not None and (best is None or v > best * (1 + tolerance)):
            best, since = v, 0
        else:
            since += 1
    return best is not None and since >= patience
