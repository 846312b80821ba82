"""``infpop hpo search --require-equivalent``: pick only a configuration that says what the reference says.

Batch size and GPU count change a forward pass's arithmetic, and a greedy decode may then pick
other tokens (:mod:`infpop.fingerprints`); a search ranking by speed alone may recommend a
configuration that changes the model's answers. With this constraint the pick is restricted to
configurations *equivalent* to the reference:

- the *reference* is the rule of ``equivalence.csv`` (:mod:`infpop_analysis.equivalence`): the
  target's configuration with the fewest GPUs, then the smallest batch (batch 1 where searched);
- *equivalent*: the share of prompts, among those both trials served, whose fingerprints (a
  digest of every generated token id) are identical to the reference's is at least ``share``
  (default 1: every prompt), over at least one prompt: :func:`~infpop_analysis.equivalence.compare`'s
  ``identical``. A trial that did not run ok, or recorded no fingerprints, is not equivalent.

The reference runs first, so each later trial is judged as it lands. A configuration that is
not equivalent stays an observation of the landscape's shape (its throughput is real, and
equivalence is not monotone in batch size, so it says nothing about its neighbours' outputs),
but it cannot be the incumbent (``Observation.eligible``): the stopping rule goes on until no
untried configuration can plausibly beat the best *equivalent* one. A reference that failed
makes the constraint impossible: the search stops and says so, with no pick.

What the constraint cost is the pick's throughput over the best measured by the same search,
whatever its outputs (:class:`~infpop.search_state.Equivalence`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from infpop.errors import InputError
from infpop.results import TrialResult
from infpop.search_state import Equivalence, Pick

from infpop_analysis.equivalence import REFERENCE_ORDER, compare, prints
from infpop_analysis.hpo.landscape import Config
from infpop_analysis.hpo.methods import Stopping
from infpop_analysis.hpo.optimizers import Observation, Optimizer


def required_share(share: float) -> float:
    """``share``, refused (exit 2) unless a share of prompts in (0, 1]."""
    if not (math.isfinite(share) and 0 < share <= 1):
        raise InputError(f"search: --min-identical: the share of identical prompts must be in (0, 1], got {share!r}")
    return share


class Judged(NamedTuple):
    """A finished trial judged against the reference."""

    #: Its observation, ``eligible`` where it ran ok with outputs equivalent to the reference's.
    observation: Observation
    #: The share of prompts both served whose outputs are identical; None where none can be compared.
    identical: float | None


@dataclass(frozen=True)
class RequireEquivalent:
    """The constraint on one target's search: its reference and the share of identical prompts required."""

    reference: Config
    share: float = 1.0

    @classmethod
    def of(cls, space: Sequence[Config], share: float = 1.0) -> RequireEquivalent:
        """The constraint on a search over ``space``, its reference chosen as ``equivalence.csv`` chooses."""
        reference = min(space, key=lambda c: tuple(getattr(c, axis) for axis in REFERENCE_ORDER))
        return cls(reference, required_share(share))

    @property
    def definition(self) -> str:
        need = "every prompt" if self.share == 1 else f"at least a share {self.share:g} of the prompts"
        return (
            f"identical output fingerprints (every generated token id) on {need} both served, "
            f"as the reference {self.reference} (fewest GPUs, then smallest batch)"
        )

    def _reference_result(self, history: Sequence[tuple[Observation, TrialResult]]) -> TrialResult | None:
        return next((r for o, r in history if o.config == self.reference), None)

    def impossible(self, history: Sequence[tuple[Observation, TrialResult]]) -> str | None:
        """Why no configuration can be judged equivalent (the reference failed or recorded no
        fingerprints); None while the reference is pending or usable."""
        ref = self._reference_result(history)
        if ref is None:
            return None
        why = None
        if ref.status != "ok":
            why = f"ended {ref.status}" + (f" ({ref.error})" if ref.error else "")
        elif not any(ref.outputs or ()):
            why = "recorded no output fingerprints (the engine reported no token ids)"
        if why is None:
            return None
        return f"the reference {self.reference} {why}: no configuration can be judged equivalent, nothing is picked"

    def judge(self, history: Sequence[tuple[Observation, TrialResult]]) -> list[Judged]:
        """Every finished trial against the reference (none equivalent while it is missing or failed)."""
        ref = self._reference_result(history)
        usable = ref is not None and self.impossible(history) is None
        reference = prints(ref.outputs) if usable else []
        out = []
        for o, r in history:
            identical = compare([prints(r.outputs)], reference)["identical"] if usable and r.outputs else None
            eligible = o.value is not None and identical is not None and identical >= self.share
            out.append(Judged(o._replace(eligible=eligible), identical))
        return out

    def next(
        self,
        stopping: Stopping,
        optimizer: Optimizer,
        space: Sequence[Config],
        history: Sequence[tuple[Observation, TrialResult]],
        judged: Sequence[Judged],
    ) -> Config | str:
        """The next configuration (the reference first), or why the search stops; ``judged``:
        ``history`` judged (:meth:`judge`), by the caller, who reuses it for the state and the log
        (judging compares every trial's fingerprints with the reference's)."""
        observations = [j.observation for j in judged]
        if all(o.config != self.reference for o in observations):
            return stopping.reason(observations) or self.reference
        return self.impossible(history) or stopping.next(optimizer, space, observations)

    def record(self, picked: Pick | None = None, unconstrained: Pick | None = None) -> Equivalence:
        """The state's account of the constraint: the best measured whatever its outputs, and the
        cost (none yet while the search runs)."""
        return Equivalence(
            reference=str(self.reference),
            definition=self.definition,
            unconstrained=unconstrained,
            value_ratio=picked.value / unconstrained.value if picked and unconstrained else None,
            basis="the pick's value over the best this search measured whatever its outputs (repetition 0 "
            "of each); a configuration it did not try may be faster still",
        )
