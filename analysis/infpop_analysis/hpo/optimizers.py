"""Optimizers over (GPU count, batch size), all behind one interface.

An optimizer proposes the next configuration from the space and the observations so far
(``propose(space, history)``); it keeps no other state. That is what lets a live search resume
from the results on disk, and what lets the benchmark replay every method the same way. A
repeated proposal costs nothing (its result is already known), so methods are compared on the
distinct configurations they evaluate: each one is a GPU job.

- ``grid``: every configuration, GPU count then batch size ascending, skipping batches above a
  failure at the same GPU count (how infpop's sweep runs).
- ``random``: a seeded random order without repetition.
- ``tpe``: hyperopt's TPE, the study's optimizer, over the study's encoding (two ``hp.choice``).
- ``ours`` (:class:`Structured`): climbs batch size in log2 steps on one GPU count, compares GPU
  counts at the best batch, and treats a failure at batch b as a sign that larger batches at that
  GPU count fail too; it proposes only configurations that could still beat the incumbent
  (:func:`~infpop_analysis.hpo.stopping.plausible`) and stops when none is left.
- ``ours+physics``: the same, starting at the best estimate (the roofline at the engine's
  calibrated efficiency) among configurations predicted to fit, and ruling out those predicted
  to run out of memory or bounded below the incumbent.
- ``hillclimb`` / ``hillclimb+physics`` (:class:`HillClimb`): a plain local search, the
  baseline the structured search must beat; ``+physics`` starts at the best estimate.
- ``ours+history`` / ``ours+prior``: physics, and led by a :class:`~infpop_analysis.hpo.prior.Prior`
  (the same model on another GPU / other models' landscapes): each step runs the plausible
  configuration most likely to be the optimum; the same evidence stops it. ``ours+history``
  opens with three different guesses: the configuration rated best on the other GPU, physics'
  best estimate, and a second GPU count (without the other GPU's landscape, the last two).
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from infpop_analysis.hpo.landscape import Config
from infpop_analysis.hpo.prior import Prior
from infpop_analysis.hpo.stopping import SLACK, TOLERANCE, Physics, plausible

#: The guesses a search led by history opens with (:meth:`Structured._opening`), in order; a
#: search without the prior skips the first.
OPENING: tuple[str, ...] = ("the prior's best", "physics' best estimate", "another GPU count")
#: Hyperopt's loss for a failure: the study's script scored a failure 99999999 ("worst").
FAILURE_LOSS = 99999999.0


class Observation(NamedTuple):
    config: Config
    #: Throughput, or None for a failed trial.
    value: float | None
    #: Whether it may be the incumbent and the pick. False: a real measurement of the landscape's
    #: shape that a constraint rules out as a pick (``--require-equivalent``: outputs that differ
    #: from the reference's, :mod:`~infpop_analysis.hpo.equivalent`).
    eligible: bool = True


class Optimizer(Protocol):
    name: str

    def propose(self, space: Sequence[Config], history: Sequence[Observation]) -> Config | None:
        """The next configuration to evaluate, or None when nothing is left to try."""

    def stop_reason(self, space: Sequence[Config], history: Sequence[Observation]) -> str | None:
        """Why it proposes nothing more now, or None while it goes on (never None once
        :meth:`propose` returned None: every search names why it stopped)."""


#: Why a grid, random or TPE search stops (a grid also skips batches above a failure at one GPU count).
_EXHAUSTED = "every configuration was tried"


def _untried(space: Sequence[Config], history: Sequence[Observation]) -> list[Config]:
    seen = {o.config for o in history}
    return [c for c in sorted(space) if c not in seen]


def _above_failure(c: Config, history: Sequence[Observation]) -> bool:
    return any(o.value is None and o.config.n_gpus == c.n_gpus and o.config.batch_size < c.batch_size for o in history)


@dataclass(frozen=True)
class Grid:
    #: Skip batches above a failure at the same GPU count, as infpop's sweep does.
    prune_oom: bool = True
    name: str = "grid"

    def propose(self, space: Sequence[Config], history: Sequence[Observation]) -> Config | None:
        todo = [c for c in _untried(space, history) if not (self.prune_oom and _above_failure(c, history))]
        return todo[0] if todo else None

    def stop_reason(self, space: Sequence[Config], history: Sequence[Observation]) -> str | None:
        return None if self.propose(space, history) is not None else _EXHAUSTED


@dataclass(frozen=True)
class RandomSearch:
    seed: int = 0
    name: str = "random"

    def propose(self, space: Sequence[Config], history: Sequence[Observation]) -> Config | None:
        order = sorted(space)
        _random.Random(self.seed).shuffle(order)
        seen = {o.config for o in history}
        return next((c for c in order if c not in seen), None)

    def stop_reason(self, space: Sequence[Config], history: Sequence[Observation]) -> str | None:
        return None if _untried(space, history) else _EXHAUSTED


class _Proposed(Exception):
    """Raised by the replayed objective when TPE asks for a configuration not yet measured."""

    def __init__(self, config: Config):
        self.config = config


@dataclass(frozen=True)
class TPE:
    """hyperopt TPE with the study's encoding: ``hp.choice`` over the batch and GPU lists.

    ``batch_sizes``/``gpu_counts`` are the lists TPE searches; a combination that is not in the
    measured space scores as a failure, as in the study (whose list held 1024 where the data
    holds 1028). ``max_repeats`` bounds how many already-measured proposals ``propose`` replays
    while looking for a new one.
    """

    batch_sizes: tuple[int, ...]
    gpu_counts: tuple[int, ...]
    seed: int = 0
    max_repeats: int = 500
    name: str = "tpe"

    def _space(self) -> dict:
        from hyperopt import hp

        return {
            "batchSize": hp.choice("batchSize", list(self.batch_sizes)),
            "nrGPUs": hp.choice("nrGPUs", list(self.gpu_counts)),
        }

    def minimize(
        self,
        loss: Callable[[Config], float],
        max_evals: int,
        *,
        points: Sequence[Config] = (),
        stop: Callable[[], bool] | None = None,
    ) -> Config:
        """Run hyperopt's fmin on ``loss``; return the configuration of the best trial.

        ``points`` are evaluated first (in order), as hyperopt's ``points_to_evaluate``.
        """
        import numpy as np
        from hyperopt import fmin, tpe

        def objective(args: dict) -> float:
            return loss(Config(int(args["nrGPUs"]), int(args["batchSize"])))

        start = [
            {"batchSize": self.batch_sizes.index(c.batch_size), "nrGPUs": self.gpu_counts.index(c.n_gpus)}
            for c in points
        ]
        best = fmin(
            objective,
            self._space(),
            algo=tpe.suggest,
            max_evals=max_evals,
            rstate=np.random.default_rng(self.seed),
            points_to_evaluate=start or None,
            early_stop_fn=(lambda *_: (stop(), [])) if stop else None,
            show_progressbar=False,
            verbose=False,
        )
        return Config(self.gpu_counts[best["nrGPUs"]], self.batch_sizes[best["batchSize"]])

    def propose(self, space: Sequence[Config], history: Sequence[Observation]) -> Config | None:
        """Replay ``history`` into TPE (same seed, same order) and return its first new proposal."""
        todo = set(_untried(space, history))
        if not todo:
            return None
        known = {o.config: o.value for o in history}
        replayable = [
            o.config for o in history if o.config.batch_size in self.batch_sizes and o.config.n_gpus in self.gpu_counts
        ]

        def loss(config: Config) -> float:
            if config in known:
                value = known[config]
                return FAILURE_LOSS if value is None else -value
            if config in todo:
                raise _Proposed(config)
            return FAILURE_LOSS  # a combination outside the measured space

        try:
            self.minimize(loss, len(replayable) + self.max_repeats, points=replayable)
        except _Proposed as proposal:
            return proposal.config
        return None

    def stop_reason(self, space: Sequence[Config], history: Sequence[Observation]) -> str | None:
        """Why :meth:`propose` returned None: the space exhausted, or hyperopt repeating itself."""
        return (
            f"{self.max_repeats} proposals without an untried configuration" if _untried(space, history) else _EXHAUSTED
        )


@dataclass(frozen=True)
class Structured:
    """The structured search ("ours"): a pure function of the observations, whatever their order.

    Every step proposes among the *plausible* configurations only (:meth:`candidates`); when
    none is left it stops (:meth:`stop_reason`). With a ``prior``, each step first asks it which
    plausible configuration is likeliest to be the optimum given the trials so far, and runs that
    one (fewer GPUs first among equals: cheaper); the steps below take over when the prior gives
    none a chance; with ``opening``, the first trials are different guesses (:meth:`_opening`),
    with or without a prior. With ``physics`` and nothing measured yet, the first trial is the best estimate among
    configurations predicted to fit. Otherwise:

    1. Start at the centre of the grid (the upper-middle GPU count, the middle batch size): a
       model that needs several GPUs fails or crawls (CPU offload) on one, the most GPUs cost
       the most, and a middle batch runs quickly and rarely fails.
    2. Climb batch size on the GPU count of the incumbent (the best result so far that may be
       picked: :attr:`Observation.eligible`), two log2 levels at a time (up, then down; one level
       with ``physics``, whose start is near the peak already). A failure at batch b prunes
       larger batches at that GPU count.
    3. Compare the adjacent GPU counts (fewer first, as they cost less) at that batch size; when
       one wins, steps 2-3 continue from it, so GPU count is climbed like batch size.
    4. Refine: one level up and down around the incumbent.
    5. Fall back to the remaining plausible points, those next to the best results first.

    Under a constraint (``--require-equivalent``) the climb centres on the incumbent, never on a
    faster result the constraint rules out: the steps around a configuration that cannot be
    picked refine a peak that is no answer, while the stopping rule waits for something to beat
    the incumbent. Every result still counts where throughput alone speaks: the stopping rule's
    trends and step 5's neighbours. Where every success so far is ruled out, the search walks
    down towards the reference instead (:meth:`_towards_reference`).
    """

    prior: Prior | None = None
    name: str = "ours"
    #: What the memory and roofline model say about this landscape (``ours+physics``).
    physics: Physics | None = None
    slack: float = SLACK
    #: Parts of the stopping rule left out (:data:`~infpop_analysis.hpo.stopping.PARTS`): ablations.
    without: frozenset[str] = frozenset()
    #: Open with the different guesses of :data:`OPENING` (:meth:`_opening`) before the prior,
    #: or without one the steps below, lead (``ours+history``).
    opening: bool = False

    def candidates(self, space: Sequence[Config], history: Sequence[Observation]) -> list[Config]:
        """The untried configurations that could still beat the incumbent (empty: stop)."""
        seen = {o.config: o.value for o in history}
        eligible = {o.config for o in history if o.eligible}
        return plausible(
            space,
            seen,
            tolerance=TOLERANCE,
            slack=self.slack,
            physics=self.physics,
            without=self.without,
            eligible=eligible,
        )

    def stop_reason(self, space: Sequence[Config], history: Sequence[Observation]) -> str | None:
        """Why the search stops now, or None while it goes on."""
        if not _untried(space, history):
            return "every configuration was tried"
        todo = self.candidates(space, history)
        physics = self.physics
        evidence = "trend along batch size and GPU count, OOMs seen"
        if physics is not None:
            # a capacity search's physics has no bound (tokens/s do not bound requests/s)
            evidence += ", OOMs predicted" + (" and the roofline bound" if physics.bound else "")
        if not todo:
            return f"no untried configuration can beat the incumbent by more than {TOLERANCE:.0%} ({evidence})"
        return None

    def propose(self, space: Sequence[Config], history: Sequence[Observation]) -> Config | None:
        if self.stop_reason(space, history) is not None:
            return None
        todo = self.candidates(space, history)
        seen = {o.config: o.value for o in history}
        levels = {g: sorted(c.batch_size for c in space if c.n_gpus == g) for g in {c.n_gpus for c in space}}
        gpus = sorted(levels)
        todo_set = set(todo)

        def pruned(c: Config) -> bool:
            return any(v is None and f.n_gpus == c.n_gpus and f.batch_size < c.batch_size for f, v in seen.items())

        def open_(c: Config) -> bool:
            return c in todo_set and not pruned(c)

        ok = {c: v for c, v in seen.items() if v is not None}
        eligible = {o.config for o in history if o.eligible}
        mine = [c for c in ok if c in eligible]
        best = max(mine, key=lambda c: (ok[c], -c.n_gpus, -c.batch_size)) if mine else None
        if self.opening and (step := self._opening(todo, seen, levels, open_, best)) is not None:
            return step
        if self.prior is not None and self.prior.surfaces:
            chance = self.prior.hit_probability(todo, seen)
            likeliest = max(todo, key=lambda c: (chance[c], -c.n_gpus, -c.batch_size))
            if chance[likeliest] > 0:
                return likeliest
        start = self.physics is not None and "estimate_start" not in self.without
        if start and self.physics.estimate and not any(v is not None for v in seen.values()):
            if (best := self._best_estimate(todo)) is not None:
                return best

        def at(g: int, level: int) -> Config | None:
            sizes = levels[g]
            return Config(g, sizes[level]) if 0 <= level < len(sizes) else None

        if not ok:
            return self._first_success(gpus, levels, seen, open_) or self._fallback(todo, seen, pruned, levels)
        if best is None:
            return self._towards_reference(ok, levels, open_) or self._fallback(todo, seen, pruned, levels)
        level = levels[best.n_gpus].index(best.batch_size)
        # Physics starts near the optimum (the best estimate that fits): one level at a time
        # there; without it, the centre of the grid is far from it: two levels at a time.
        big = 1 if self.physics is not None else 2
        for step in (big, -big):
            cand = at(best.n_gpus, level + step)
            if cand is not None and open_(cand):
                return cand
        gi = gpus.index(best.n_gpus)
        for g in [gpus[j] for j in (gi - 1, gi + 1) if 0 <= j < len(gpus)]:
            cand = self._nearest(g, best.batch_size, levels, open_)
            if cand is not None:
                return cand
        for step in (1, -1):
            cand = at(best.n_gpus, level + step)
            if cand is not None and open_(cand):
                return cand
        return self._fallback(todo, seen, pruned, levels)

    def _best_estimate(self, todo: Sequence[Config]) -> Config | None:
        """The untried configuration predicted to fit with the best estimate (fewer GPUs, then
        smaller batches, among equals), or None without one."""
        expected = self.physics.estimate if self.physics is not None else {}
        fits = [c for c in todo if c in expected]
        return max(fits, key=lambda c: (expected[c], -c.n_gpus, -c.batch_size)) if fits else None

    def _opening(
        self,
        todo: list[Config],
        seen: dict[Config, float | None],
        levels: dict[int, list[int]],
        open_: Callable[[Config], bool],
        incumbent: Config | None,
    ) -> Config | None:
        """The first trials of a search led by history, each a different guess (:data:`OPENING`):
        the configuration the references rate best (skipped without a prior); physics' best
        estimate; where those measured one GPU count only, the ``incumbent``'s batch on another
        (none without an incumbent: the steps after the opening lead),
        those the prior ranks best first (else fewer GPUs first). The other GPU's landscape
        names the optimum's neighbourhood more often than physics does, but its order of GPU
        counts often does not carry over (vLLM Phi-1 peaks at one GPU on A100, four on V100),
        and neither does physics' (HF's estimate barely moves with GPU count; Phi-1 on one A100
        runs at half its two-GPU speed): a search that stays next to one guess pays for a wrong
        one for many trials. None where the step has no candidate, or the opening is over."""
        led = self.prior is not None and bool(self.prior.surfaces)
        step = len(seen) + (0 if led else 1)
        if step >= len(OPENING):
            return None
        if step == 0:
            rated = max(todo, key=lambda c: (self.prior.rating(c), -c.n_gpus, -c.batch_size))
            return rated if self.prior.rating(rated) > 0 else None
        if step == 1:
            return self._best_estimate(todo)
        if incumbent is None:
            return None
        if len({c.n_gpus for c, v in seen.items() if v is not None}) >= 2:
            return None  # two GPU counts measured already: the prior (or the climb) leads from here
        measured = {c.n_gpus for c in seen}
        ranked = ([g for g in self.prior.gpu_counts() if g in levels] if led else []) + sorted(levels)
        for g in dict.fromkeys(g for g in ranked if g not in measured):
            if (cand := self._nearest(g, incumbent.batch_size, levels, open_)) is not None:
                return cand
        return None

    @staticmethod
    def _towards_reference(
        ok: dict[Config, float], levels: dict[int, list[int]], open_: Callable[[Config], bool]
    ) -> Config | None:
        """Where successes exist but a constraint rules every one out as the pick: from the
        fastest, the nearest open batch below it at its GPU count, then at each smaller GPU
        count (the largest batch not above it first); None where none is open.

        The reference (``--require-equivalent``: the fewest GPUs, the smallest batch) matches
        itself, and a configuration's arithmetic departs from it as batch size and GPU count
        grow (other kernels, reductions split another way), so the likeliest equivalent
        configurations lie between the fastest success and the reference. Walking down one level
        at a time from the fastest finds the largest batch that still matches, the fastest
        below a peak; once one does, it is the incumbent and the climb leads again. Climbing up
        from the fastest instead would measure configurations further from the reference still."""
        top = max(ok, key=lambda c: (ok[c], -c.n_gpus, -c.batch_size))
        for g in sorted((g for g in levels if g <= top.n_gpus), reverse=True):
            below = [b for b in levels[g] if b < top.batch_size or (g < top.n_gpus and b == top.batch_size)]
            for b in reversed(below):
                if open_(Config(g, b)):
                    return Config(g, b)
        return None

    @staticmethod
    def _nearest(g: int, batch: int, levels: dict[int, list[int]], open_: Callable[[Config], bool]) -> Config | None:
        """GPU count ``g`` at ``batch``, or the largest smaller batch there, if not yet tried and not pruned."""
        sizes = [b for b in levels[g] if b <= batch] or levels[g][:1]
        cand = Config(g, sizes[-1])
        return cand if open_(cand) else None

    @staticmethod
    def _first_success(
        gpus: list[int], levels: dict[int, list[int]], seen: dict[Config, float | None], open_: Callable[[Config], bool]
    ) -> Config | None:
        """Before any success: the centre of the grid, then two levels below the smallest failure;
        GPU counts from the centre up (more memory), then down."""
        centre = len(gpus) // 2
        for g in gpus[centre:] + gpus[:centre][::-1]:
            sizes = levels[g]
            failed = [sizes.index(c.batch_size) for c in seen if c.n_gpus == g]
            target = max(min(failed) - 2, 0) if failed else len(sizes) // 2
            below = range(min(failed) if failed else len(sizes))
            for level in sorted(below, key=lambda i: (abs(i - target), i)):
                if open_(Config(g, sizes[level])):
                    return Config(g, sizes[level])
        return None

    @staticmethod
    def _fallback(
        todo: list[Config],
        seen: dict[Config, float | None],
        pruned: Callable[[Config], bool],
        levels: dict[int, list[int]],
    ) -> Config:
        """The untried point with the best measured neighbour (same GPU count one level away, or
        an adjacent GPU count at the same batch); pruned points last."""
        gpus = sorted(levels)

        def neighbours(c: Config) -> list[Config]:
            sizes, gi = levels[c.n_gpus], gpus.index(c.n_gpus)
            li = sizes.index(c.batch_size)
            out = [Config(c.n_gpus, sizes[j]) for j in (li - 1, li + 1) if 0 <= j < len(sizes)]
            return out + [Config(gpus[j], c.batch_size) for j in (gi - 1, gi + 1) if 0 <= j < len(gpus)]

        def priority(c: Config) -> tuple:
            near = [v for n in neighbours(c) if (v := seen.get(n)) is not None]
            return (not pruned(c), max(near, default=-1.0), -c.n_gpus, -c.batch_size)

        return max(todo, key=priority)


@dataclass(frozen=True)
class HillClimb:
    """A plain hill-climb, the baseline a structured search has to beat.

    Start at the best estimate among configurations predicted to fit (with ``physics``), else at
    the centre of the grid; climb batch size one level at a time on the incumbent's GPU count
    (up, then down), then try every GPU count at the incumbent's batch (or the largest smaller
    one); a trial becomes the incumbent when it beats it by :data:`GAIN` or more. It stops when
    no neighbour of the incumbent is left. Batches above a failure at one GPU count are skipped.
    Like every optimizer here, a pure function of the observations (replayed in order).
    """

    physics: Physics | None = None
    name: str = "hillclimb"

    #: The gain a trial needs over the incumbent to become it.
    GAIN = 0.05

    def propose(self, space: Sequence[Config], history: Sequence[Observation]) -> Config | None:
        todo = [c for c in _untried(space, history) if not _above_failure(c, history)]
        if not todo:
            return None
        levels = {g: sorted(c.batch_size for c in space if c.n_gpus == g) for g in {c.n_gpus for c in space}}
        gpus = sorted(levels)
        incumbent: Observation | None = None
        for o in history:
            if (
                o.value is not None
                and o.eligible
                and (incumbent is None or o.value >= incumbent.value * (1 + self.GAIN))
            ):
                incumbent = o
        if incumbent is None:
            if not history and self.physics is not None and self.physics.estimate:
                fits = [c for c in todo if c in self.physics.estimate and c not in self.physics.oom]
                if fits:
                    return max(fits, key=lambda c: (self.physics.estimate[c], -c.n_gpus, -c.batch_size))
            seen = {o.config: o.value for o in history}
            open_ = set(todo).__contains__
            return Structured._first_success(gpus, levels, seen, open_) or todo[0]
        best = incumbent.config
        sizes = levels[best.n_gpus]
        level = sizes.index(best.batch_size)
        for step in (1, -1):
            if 0 <= level + step < len(sizes) and Config(best.n_gpus, sizes[level + step]) in todo:
                return Config(best.n_gpus, sizes[level + step])
        for g in gpus:
            smaller = [b for b in levels[g] if b <= best.batch_size] or levels[g][:1]
            if Config(g, smaller[-1]) in todo:
                return Config(g, smaller[-1])
        return None

    def stop_reason(self, space: Sequence[Config], history: Sequence[Observation]) -> str | None:
        """Why the climb stops now, or None while it goes on."""
        if self.propose(space, history) is not None:
            return None
        return f"no untried neighbour of the incumbent (a move needs a gain of {self.GAIN:.0%})"
