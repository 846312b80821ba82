"""How far a configuration at an offset from the incumbent can beat it: learned from other landscapes.

The trend rules of :mod:`.stopping` need measurements on both sides of a configuration before
they rule it out, and the roofline alone is a loose bound (engines reach a small,
batch-dependent share of it). An :class:`Envelope` adds what other landscapes of the same engine
show: from a near-optimal configuration a (within :data:`NEAR` of its landscape's optimum) to a
configuration c at offset (batch x 2^db, GPUs x 2^dg), how far the throughput ratio v(c)/v(a)
exceeds the roofline ratio r(c)/r(a) — the ratio of the engine's efficiencies at the two — at
quantile ``level``. A configuration is out when even that keeps it below the incumbent. It learns
the shape of an engine's efficiency along batch size and GPU count, not any landscape's scale;
the level is chosen per cross-validation fold (as the stopping rule's ``slack``), so it is scored
on landscapes it was not learned from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from infpop_analysis.hpo.landscape import Config, Landscape

#: A training configuration anchors the envelope when it is within this share of its optimum:
#: the envelope is applied to an incumbent, which the search has climbed to.
NEAR = 0.9
#: Fewer samples than this at an offset: no bound there.
MIN_SAMPLES = 5
#: Quantile levels cross-validation chooses from (1.0: the largest ratio any training landscape shows).
LEVELS: tuple[float, ...] = (0.95, 0.99, 1.0)
#: The level used outside cross-validation (chosen on the published landscapes; the benchmark
#: prints it beside the levels chosen per fold).
LEVEL = 0.99

Roofline = Mapping[Config, float]


def _offset(c: Config, a: Config) -> tuple[int, int]:
    return round(math.log2(c.batch_size / a.batch_size)), round(math.log2(c.n_gpus / a.n_gpus))


def _log_ratio(roof: Roofline, c: Config, a: Config) -> float:
    rc, ra = roof.get(c), roof.get(a)
    return math.log(rc / ra) if rc and ra else 0.0


@dataclass(frozen=True)
class Envelope:
    """Per offset (batch levels, GPU doublings) from the incumbent: the log of the largest ratio
    of efficiencies (throughput over roofline) the training landscapes show, at ``level``."""

    engine: str
    level: float
    bounds: Mapping[tuple[int, int], float] = field(repr=False)
    #: Roofline of the searched landscape.
    roofline: Roofline = field(default_factory=dict, repr=False)

    @classmethod
    def learn(
        cls, lands: Sequence[Landscape], engine: str, level: float, roofline_of: Callable[[Landscape], Roofline]
    ) -> Envelope:
        """The envelope of ``engine`` at quantile ``level`` over the landscapes ``lands`` (cached:
        a benchmark learns one per training set, engine and level, and searches many landscapes with it)."""
        key = (tuple(id(land) for land in lands), engine, level)
        cached = _LEARNED.get(key)
        if cached is not None and all(a is b for a, b in zip(cached[0], lands)):
            return cached[1]
        samples: dict[tuple[int, int], list[float]] = {}
        for land in lands:
            if land.engine == engine:
                for k, v in _samples(land, roofline_of).items():
                    samples.setdefault(k, []).extend(v)
        bounds = {k: float(np.quantile(v, level)) for k, v in samples.items() if len(v) >= MIN_SAMPLES}
        learned = cls(engine, level, bounds)
        _LEARNED[key] = (tuple(lands), learned)
        return learned

    def at(self, roofline: Roofline) -> Envelope:
        """This envelope for a landscape whose roofline is ``roofline``."""
        return Envelope(self.engine, self.level, self.bounds, roofline)

    def rules_out(self, c: Config, ok: Mapping[Config, float], target: float) -> bool:
        """Whether ``c`` stays below ``target`` given the successes ``ok`` (the incumbent anchors)."""
        incumbent = max(ok, key=lambda a: ok[a])
        bound = self.bounds.get(_offset(c, incumbent))
        if bound is None:
            return False
        return _log_ratio(self.roofline, c, incumbent) + bound < math.log(target / ok[incumbent])


_LEARNED: dict[tuple, tuple[tuple[Landscape, ...], Envelope]] = {}
_SAMPLES: dict[int, tuple[Landscape, dict[tuple[int, int], list[float]]]] = {}


def _samples(land: Landscape, roofline_of: Callable[[Landscape], Roofline]) -> dict[tuple[int, int], list[float]]:
    """Per offset from each near-optimal configuration of ``land``: the log efficiency ratios
    (cached per landscape: every fold of a cross-validation reuses them)."""
    cached = _SAMPLES.get(id(land))
    if cached is not None and cached[0] is land:
        return cached[1]
    out: dict[tuple[int, int], list[float]] = {}
    optimum = land.optimum("strict")
    if optimum is not None:
        roof = roofline_of(land)
        ok = {c: v for c in land.points if (v := land.score(c, "strict")) is not None and v > 0}
        for a, va in ok.items():
            if va >= NEAR * optimum:
                for c, vc in ok.items():
                    if c != a:
                        out.setdefault(_offset(c, a), []).append(math.log(vc / va) - _log_ratio(roof, c, a))
    _SAMPLES[id(land)] = (land, out)
    return out
