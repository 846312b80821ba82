"""The search methods as records, and the one stopping decision every search makes.

A :class:`Method` says what a method needs (the physical model, a prior, and where the
benchmark takes that prior from), which optimizer proposes its trials, and how it stops. The
benchmark, the live search and a search job (:class:`~infpop_analysis.hpo.search.Session`) look
methods up in :data:`METHODS` and ask :class:`Stopping` whether to go on, so a method stops by
the same rule wherever it runs:

- a ``budget`` of trials, where the user gives one (live search only);
- ``patience`` trials in a row without an improvement beyond the tolerance (the baselines:
  :func:`~infpop_analysis.hpo.stopping.no_improvement`);
- otherwise the optimizer's own rule: ``ours*`` stops when no untried configuration can beat
  the incumbent (:func:`~infpop_analysis.hpo.stopping.plausible`), a hill-climb when no
  neighbour of its incumbent is left, any optimizer when it has nothing left to propose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from infpop.errors import InputError

from infpop_analysis.hpo.landscape import Config, Landscape
from infpop_analysis.hpo.optimizers import TPE, Grid, HillClimb, Observation, Optimizer, RandomSearch, Structured
from infpop_analysis.hpo.prior import LEAVE_MODEL_OUT, Prior, leave_model_out, twin_prior
from infpop_analysis.hpo.stopping import PATIENCE, PHYSICS_SLACK, SLACK, TOLERANCE, Physics, no_improvement

OptimizerKind = Literal["tpe", "random", "grid", "hillclimb", "structured"]


@dataclass(frozen=True)
class PriorSource:
    """Where the benchmark takes a method's prior from, among the published landscapes (a live
    search learns it from the table the user gives)."""

    #: How the benchmark's summary describes the prior.
    description: str
    #: The prior for searching a landscape, from the others; None where they hold none.
    learn: Callable[[Sequence[Landscape], Landscape], Prior | None]
    #: Whether cross-validation learns it from the training fold only (other models' shapes are
    #: a tuned input); else from every landscape (the same model on the other GPU is what a user
    #: after a hardware change has).
    training_fold_only: bool


@dataclass(frozen=True)
class Stopping:
    """When a search stops: a budget, a patience, else the optimizer's own rule."""

    #: Stop after this many consecutive trials without improvement (None: never for that).
    patience: int | None = None
    #: Stop at this many trials (None: no budget).
    budget: int | None = None
    tolerance: float = TOLERANCE

    def reason(self, history: Sequence[Observation]) -> str | None:
        """Why the search stops before proposing anything more, or None while it goes on."""
        if self.budget is not None and len(history) >= self.budget:
            return f"budget of {self.budget} trials reached"
        # Only an eligible trial can improve on the incumbent (a constraint's: ``Observation.eligible``).
        values = [o.value if o.eligible else None for o in history]
        if self.patience is not None and no_improvement(values, self.patience, self.tolerance):
            return f"{self.patience} trials without improvement"
        return None

    def next(self, optimizer: Optimizer, space: Sequence[Config], history: Sequence[Observation]) -> Config | str:
        """The next configuration to run, or why the search stops."""
        reason = self.reason(history)
        if reason is not None:
            return reason
        config = optimizer.propose(space, history)
        return config if config is not None else optimizer.stop_reason(space, history)


@dataclass(frozen=True)
class Method:
    """One search method: what it needs, which optimizer proposes, how it stops."""

    name: str
    optimizer: OptimizerKind
    #: Uses the memory and roofline model where the model and GPU are in the catalog.
    physics: bool = False
    #: Cannot run without that model: the benchmark leaves it out without a catalog.
    needs_physics: bool = False
    #: Searches led by a prior (None: none); where the benchmark takes it from.
    prior: PriorSource | None = None
    #: The method searched where the prior holds nothing (None: this one, without the prior).
    without_prior: str | None = None
    #: The method searched (and named) where the physics is unknown.
    without_physics: str | None = None
    #: Its proposals do not depend on the seed.
    deterministic: bool = True
    #: Baselines stop after this many trials without improvement; None: by the optimizer's rule.
    patience: int | None = None
    #: The stopping rule's slack (structured search) where the physics is known; without it, :data:`SLACK`.
    slack: float = SLACK
    #: Opens with different guesses before its prior leads (:attr:`~infpop_analysis.hpo.optimizers.Structured.opening`).
    opening: bool = False

    def stopping(
        self, budget: int | None = None, patience: int | None = None, tolerance: float = TOLERANCE
    ) -> Stopping:
        """This method's stopping rule; ``patience`` overrides a baseline's (the benchmark tunes it)."""
        return Stopping(self.patience if patience is None else patience, budget, tolerance)

    def resolve(self, prior: Prior | None, physics: Physics | None) -> Method:
        """The method that runs given what is at hand: without its prior or its physics, the
        method that needs neither (``ours+history`` without the prior runs itself: its opening
        without the prior's guess, then physics' steps; without both, ``ours``)."""
        if self.prior is not None and prior is None and self.without_prior:
            return METHODS[self.without_prior].resolve(None, physics)
        if self.physics and physics is None and self.without_physics and (self.prior is None or prior is None):
            return METHODS[self.without_physics]
        return self

    def build(
        self,
        seed: int,
        batch_sizes: Sequence[int],
        gpu_counts: Sequence[int],
        prior: Prior | None = None,
        physics: Physics | None = None,
        slack: float | None = None,
    ) -> Optimizer:
        """The optimizer of this method; ``batch_sizes``/``gpu_counts`` are TPE's lists.

        ``prior`` is required by the prior methods that fall back to another method without it
        (optional for the others that take one) and refused by every other method, so a report
        never names a method that did not use the prior it was given (or used one it was not);
        ``physics`` is used by the physics methods only. ``slack`` defaults to the method's
        (:data:`SLACK` where the physics is unknown).
        """
        if self.prior is None and prior is not None:
            raise InputError(f"optimizer: method {self.name!r} takes no prior")
        if self.prior is not None and prior is None and self.without_prior:
            raise InputError(f"optimizer: method {self.name!r} requires a prior")
        physics = physics if self.physics else None
        if slack is None:
            slack = self.slack if physics is not None else SLACK
        match self.optimizer:
            case "structured":
                return Structured(prior=prior, name=self.name, physics=physics, slack=slack, opening=self.opening)
            case "tpe":
                return TPE(tuple(batch_sizes), tuple(gpu_counts), seed=seed)
            case "random":
                return RandomSearch(seed)
            case "grid":
                return Grid()
            case "hillclimb":
                return HillClimb(physics=physics, name=self.name)


HISTORY = PriorSource(
    "ours+history: physics, plus a prior from the same (engine, model) on the other GPU (none: physics, "
    "opened as with one)",
    twin_prior,
    training_fold_only=False,
)
OTHER_MODELS = PriorSource(f"physics, plus a prior by {LEAVE_MODEL_OUT}", leave_model_out, training_fold_only=True)

#: Every method by name, in the order the benchmark reports them.
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("tpe", "tpe", deterministic=False, patience=PATIENCE),
        Method("random", "random", deterministic=False, patience=PATIENCE),
        Method("grid", "grid", patience=PATIENCE),
        Method("hillclimb", "hillclimb"),
        Method("hillclimb+physics", "hillclimb", physics=True, needs_physics=True, without_physics="hillclimb"),
        Method("ours", "structured"),
        Method(
            "ours+physics", "structured", physics=True, needs_physics=True, without_physics="ours", slack=PHYSICS_SLACK
        ),
        Method(
            "ours+history",
            "structured",
            physics=True,
            needs_physics=True,
            prior=HISTORY,
            without_physics="ours",
            opening=True,
        ),
        Method(
            "ours+prior",
            "structured",
            physics=True,
            prior=OTHER_MODELS,
            without_prior="ours+physics",
        ),
    )
}


def method(name: str) -> Method:
    """The method called ``name``."""
    if name not in METHODS:
        raise InputError(f"optimizer: unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]
