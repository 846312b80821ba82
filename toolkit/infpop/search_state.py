"""A live search's state file: what ``infpop hpo search`` has done for one target and is doing.

The search (:mod:`infpop_analysis.hpo.search`) rewrites ``<root>/<study>/.infpop/search/<target>.json``
around each job it submits: the trials so far, the job in flight, and once it stops, why and
its pick. Values are of the objective the search maximised (``objective``, in ``unit``: offline
throughput in tok/s, or capacity per GPU under the scenario's SLO). A state written before
searches had an objective reads as a throughput search, its ``throughput`` fields as the values. ``infpop status`` and the report read it back through :func:`read_searches`, which
refuses a file that is no search state (exit 2, naming it). The
results on disk stay the search's real state (a rerun resumes from them); this file says what a
user asks while it runs or after it stopped.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from infpop.atomic import write_atomic
from infpop.errors import InputError
from infpop.submissions import JobRecord


class SearchJob(JobRecord):
    """The job in flight: a submitted job (as the submission log records one) at one GPU count."""

    n_gpus: int


#: A value's field, read from ``throughput`` in a state of a search before objectives.
_VALUE = AliasChoices("value", "throughput")


class SearchTrial(BaseModel):
    """A finished trial of the search, in the order trials finished."""

    model_config = ConfigDict(extra="forbid")

    config: str
    status: str
    #: The objective measured (the state's ``unit``); None for a failure.
    value: float | None = Field(validation_alias=_VALUE)
    load_s: float | None
    trial_id: str
    #: With ``--require-equivalent``: the share of prompts (served by both) whose outputs are
    #: identical to the reference's; None without the constraint or with no prompt to compare.
    identical: float | None = None
    #: With ``--require-equivalent``: whether it may be the pick (ran ok, outputs equivalent).
    equivalent: bool | None = None


class Pick(BaseModel):
    """The best configuration measured, its interval where repetitions exist, and its ties."""

    model_config = ConfigDict(extra="forbid")

    config: str
    #: The objective measured there (the state's ``unit``).
    value: float = Field(validation_alias=_VALUE)
    #: (low, high) of the mean objective over the repetitions on disk; None below two.
    interval: tuple[float, float] | None
    interval_note: str
    tied_with: list[str]


class Equivalence(BaseModel):
    """``--require-equivalent``: the pick restricted to configurations whose outputs match the
    reference's, and what that restriction cost in the searched objective."""

    model_config = ConfigDict(extra="forbid")

    #: The reference configuration (fewest GPUs, then smallest batch), run first.
    reference: str
    #: What equivalent means here (the share of identical prompts required).
    definition: str
    #: The best configuration measured whatever its outputs; None where none ran ok.
    unconstrained: Pick | None
    #: The pick's value over the unconstrained best's (1: the constraint cost nothing);
    #: None where either is missing.
    value_ratio: float | None
    #: What the ratio is based on.
    basis: str

    def outcome(self, pick: Pick | None, unit: str) -> str:
        """What the constraint did to ``pick``, as the search's log and ``infpop status`` say it."""
        if pick is None:
            return f"no configuration equivalent to the reference {self.reference}: nothing picked"
        best = self.unconstrained
        if best is None or best.config == pick.config:
            return f"equivalent to the reference {self.reference}, and the best measured: the constraint cost nothing"
        return (
            f"the best equivalent to the reference {self.reference}: {self.value_ratio:.0%} of the best "
            f"measured, {best.config} {best.value:.4g} {unit}, whose outputs differ"
        )


class SearchState(BaseModel):
    """One target's search: its settings, trials, the job in flight, and how it ended."""

    model_config = ConfigDict(extra="forbid")

    target: str
    #: The method that ran (the one asked for, or what it fell back to without physics or prior).
    method: str
    #: What the search maximised ("throughput", "capacity per GPU") and its unit.
    objective: str = "throughput"
    unit: str = "tok/s"
    seed: int
    budget: int | None
    #: Where the prior's landscapes came from; None without one.
    prior: str | None
    physics: bool
    #: Why the search stopped; None while it runs.
    stop_reason: str | None = None
    job: SearchJob | None = None
    pick: Pick | None = None
    #: The constraint ``--require-equivalent`` puts on the pick (None: none); ``pick`` is then
    #: the best equivalent configuration.
    equivalence: Equivalence | None = None
    trials: list[SearchTrial] = []

    def write(self, path: Path) -> None:
        write_atomic(path, self.model_dump_json(indent=1))


def search_folder(bookkeeping: Path) -> Path:
    """A study's search folder (states, logs, one-trial group files) under its ``.infpop`` folder."""
    return bookkeeping / "search"


def state_path(bookkeeping: Path, target: str) -> Path:
    """The state file of ``target`` under a study's ``.infpop`` folder."""
    return search_folder(bookkeeping) / f"{target}.json"


def read_searches(folder: Path) -> list[SearchState]:
    """The state files in a study's search folder (``.infpop/search``: one per searched model
    and engine), by name; none where the folder is absent."""
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            out.append(SearchState.model_validate_json(path.read_text()))
        except (OSError, ValidationError) as exc:
            raise InputError(f"search state {str(path)!r}: unreadable ({exc})") from exc
    return out
