"""The submission log: which job runs which group, one JSON line per submission.

A sweep appends to ``<root>/<study>/.infpop/submissions.jsonl`` whenever it submits a group
(:func:`log_submission`); ``infpop status`` and the next sweep read it back
(:func:`read_submissions`) to find each group's last job, its state and its log. A live
search's job in flight is recorded in its state file with the same fields (:class:`JobRecord`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from infpop.errors import InputError
from infpop.results import utcnow

LOG_NAME = "submissions.jsonl"


class JobRecord(BaseModel):
    """A submitted job: its id (``123``, ``123_4`` for an array task, a pid locally), where and
    how it runs, and the log to read when it fails."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    partition: str
    #: The executor kind (:data:`infpop.plugins.EXECUTORS`).
    executor: str = "local"
    log: str | None = None


class Submission(JobRecord):
    """One line of the submission log: a group submitted as a job."""

    group: str
    submitted_at: str


def log_submission(bookkeeping: Path, group: str, job: JobRecord) -> Submission:
    """Append ``group``'s new job to the study's log (``bookkeeping``: its ``.infpop`` folder)."""
    entry = Submission(**job.model_dump(), group=group, submitted_at=utcnow())
    bookkeeping.mkdir(parents=True, exist_ok=True)
    with open(bookkeeping / LOG_NAME, "a") as fh:
        fh.write(entry.model_dump_json() + "\n")
    return entry


def read_submissions(bookkeeping: Path) -> list[Submission]:
    """The study's submissions, oldest first; a line that is no submission is an input error naming it."""
    path = bookkeeping / LOG_NAME
    if not path.exists():
        return []
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                entries.append(Submission.model_validate_json(line))
            except ValidationError as exc:
                raise InputError(f"{path}:{n}: not a submission: {exc.errors()[0]['msg']}") from None
    return entries


def latest(entries: Iterable[Submission]) -> dict[str, Submission]:
    """The last submission of each group (a rerun supersedes earlier jobs)."""
    return {e.group: e for e in entries}
