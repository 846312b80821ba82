"""What other landscapes say about where a new one peaks: the prior of the structured search.

A landscape's *shape* carries over between models far better than its scale: vLLM peaks at many
GPUs and a large batch, HF at a small batch, and a model too large for one GPU fails there on
every engine. A :class:`Prior` keeps the shape of each reference landscape (its throughput over
its own optimum, 0 for a failure) and, given the trials measured so far on the landscape being
searched, weighs every reference (and the reference moved one batch level up or down: a smaller
model peaks at a larger batch) by how well it explains them. :meth:`Prior.hit_probability`
then says, per untried configuration, how likely it is to be within ``tolerance`` of the
optimum; the search runs the most likely one.

Whoever builds a prior decides what it may know. The benchmark builds one per searched model
from every *other* model (:func:`leave_model_out`), so no landscape informs its own search, nor
does the same model on the other GPU (close to a copy). A live search after a hardware change
wants the opposite: the user's own earlier sweep of the same models is the best prior there is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from infpop_analysis.hpo.landscape import Config, Landscape
from infpop_analysis.hpo.stopping import TOLERANCE

#: A reference on other hardware than the target counts this much (memory and speed differ).
OTHER_HARDWARE_WEIGHT = 0.5
#: Spread of log-throughput ratios a matching reference is expected to show (about +-25 %).
LOG_SIGMA = 0.25
#: Weight factor per trial whose outcome (success vs failure) a reference gets wrong: rare
#: but possible (a killed run, memory a bit tighter), so such a reference is discounted, not dropped.
OUTCOME_MISMATCH = 0.05
#: A reference also stands for itself moved this many batch levels (log2 steps) up or down: a
#: smaller model or a larger GPU peaks at a larger batch, with much the same shape around the peak.
MAX_SHIFT = 1
#: Weight factor per level a reference is moved: the unmoved shape stays the likeliest.
SHIFT_WEIGHT = 0.3


@dataclass(frozen=True)
class Surface:
    """One reference landscape's shape: throughput over its optimum per configuration, 0 for a failure."""

    engine: str
    model: str
    hardware: str
    shape: Mapping[Config, float] = field(repr=False)

    @classmethod
    def of(cls, land: Landscape) -> Surface | None:
        """The shape of ``land``, or None when it has no success to normalise by."""
        optimum = land.optimum("strict")
        if optimum is None:
            return None
        shape = {c: (v / optimum if (v := land.score(c, "strict")) is not None else 0.0) for c in land.points}
        return cls(land.engine, land.model, land.hardware, shape)

    def shifted(self, levels: int) -> Mapping[Config, float]:
        """The shape moved ``levels`` batch levels up (down when negative), per GPU count."""
        out = {}
        for g in {c.n_gpus for c in self.shape}:
            sizes = sorted(c.batch_size for c in self.shape if c.n_gpus == g)
            for i, b in enumerate(sizes):
                if 0 <= i + levels < len(sizes):
                    out[Config(g, sizes[i + levels])] = self.shape[Config(g, b)]
        return out


@dataclass(frozen=True)
class Prior:
    """Reference shapes of one engine, for a search on ``hardware``."""

    engine: str
    hardware: str
    surfaces: tuple[Surface, ...]
    #: How the references were chosen, for reports (e.g. "leave-one-model-out").
    provenance: str = ""

    @classmethod
    def learn(cls, lands: Sequence[Landscape], engine: str, hardware: str, provenance: str = "") -> Prior:
        """A prior from the landscapes of ``engine`` in ``lands`` (any hardware; ``hardware`` is the target's)."""
        surfaces = tuple(s for land in lands if land.engine == engine and (s := Surface.of(land)) is not None)
        return cls(engine, hardware, surfaces, provenance)

    @property
    def models(self) -> frozenset[str]:
        return frozenset(s.model for s in self.surfaces)

    def rating(self, config: Config) -> float:
        """How well the references run ``config``: the mean of its throughput over each one's
        optimum (0 where one failed or did not measure it)."""
        return sum(s.shape.get(config, 0.0) for s in self.surfaces) / len(self.surfaces) if self.surfaces else 0.0

    def gpu_counts(self) -> list[int]:
        """The references' GPU counts, best first: by the mean over references of the best
        throughput each reaches at that GPU count (over its own optimum; 0 where it has none)."""
        counts = sorted({c.n_gpus for s in self.surfaces for c in s.shape})

        def reach(g: int) -> float:
            return sum(max((v for c, v in s.shape.items() if c.n_gpus == g), default=0.0) for s in self.surfaces)

        return sorted(counts, key=lambda g: (-reach(g), g))

    @cached_property
    def _hypotheses(self) -> list[tuple[Mapping[Config, float], float]]:
        """Every reference at every shift, with its log weight before any trial is seen."""
        out = []
        for s in self.surfaces:
            base = 0.0 if s.hardware == self.hardware else math.log(OTHER_HARDWARE_WEIGHT)
            for k in range(-MAX_SHIFT, MAX_SHIFT + 1):
                out.append((s.shifted(k) if k else s.shape, base + abs(k) * math.log(SHIFT_WEIGHT)))
        return out

    def hit_probability(
        self, space: Sequence[Config], seen: Mapping[Config, float | None], tolerance: float = TOLERANCE
    ) -> dict[Config, float]:
        """Per untried configuration of ``space``: the weighted share of references under which it
        is within ``tolerance`` of the optimum, given the trials ``seen`` (config -> throughput,
        None = failed).

        Under a reference, an untried point is predicted at its shape times the scale fitted on
        the successes seen (before any success, the reference's own optimum is the scale), and the
        optimum is the best of those predictions and of the throughputs already measured.
        """
        untried = [c for c in space if c not in seen]
        best_seen = max((v for v in seen.values() if v is not None), default=0.0)
        fits = [_fit(shape, seen) for shape, _ in self._hypotheses]
        logs = [log_w + log_l for (_, log_w), (log_l, _) in zip(self._hypotheses, fits)]
        top = max(logs, default=0.0)
        weights = [math.exp(x - top) for x in logs]
        total = sum(weights)
        out = dict.fromkeys(untried, 0.0)
        for (shape, _), (_, scale), w in zip(self._hypotheses, fits, weights):
            if scale is None:
                predicted = {c: shape.get(c, 0.0) for c in untried}
                optimum = 1.0
            else:
                predicted = {c: scale * shape.get(c, 0.0) for c in untried}
                optimum = max([best_seen, *predicted.values()])
            for c in untried:
                if predicted[c] > 0 and predicted[c] >= (1 - tolerance) * optimum:
                    out[c] += w / total
        return out


def _fit(shape: Mapping[Config, float], seen: Mapping[Config, float | None]) -> tuple[float, float | None]:
    """How well ``shape`` explains the trials ``seen``: its log-likelihood and the fitted scale.

    A reference explains the successes up to one scale factor (fitted in log space: models
    differ in speed more than in where they peak) and should agree on which trials failed. The
    scale is None when no success falls where the reference succeeded.
    """
    log_l = 0.0
    gaps = []
    for c, v in seen.items():
        t = shape.get(c)
        if t is None:
            continue
        if (v is None) != (t == 0.0):
            log_l += math.log(OUTCOME_MISMATCH)
        elif v is not None and v > 0:
            gaps.append(math.log(v / t))
    if not gaps:
        return log_l, None
    mean = sum(gaps) / len(gaps)
    return log_l - sum((g - mean) ** 2 for g in gaps) / (2 * LOG_SIGMA**2), math.exp(mean)


LEAVE_MODEL_OUT = (
    "leave-one-model-out: the prior for a landscape is learned from the landscapes of the same "
    "engine of every other model (both GPUs); none of the searched model's landscapes is used"
)


def leave_model_out(lands: Sequence[Landscape], land: Landscape) -> Prior:
    """The prior for searching ``land``: every landscape of its engine except those of its model."""
    return Prior.learn(
        [other for other in lands if other.model != land.model],
        land.engine,
        land.hardware,
        provenance=LEAVE_MODEL_OUT,
    )


def twin_prior(lands: Sequence[Landscape], land: Landscape) -> Prior | None:
    """The same (engine, model) on another GPU, as a prior for ``land``; None when not measured."""
    twins = [o for o in lands if (o.engine, o.model) == (land.engine, land.model) and o.hardware != land.hardware]
    prior = Prior.learn(twins, land.engine, land.hardware, provenance="the same model on the other GPU")
    return prior if prior.surfaces else None
