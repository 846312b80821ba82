"""Where a study stands: trials by outcome, the SLURM arrays that run them, logs of failed tasks,
and the live searches with the job each has in flight.

Everything comes from shared storage plus one ``sacct`` call: the group files (what was
planned), the result files (what finished, and how), the submission log (which job runs
which group) and the searches' state files (``.infpop/search/<target>.json``, written by
``infpop hpo search`` around each job). A trial without a result counts as *running* while its
group's last job runs, else *pending* (queued, cancelled or failed: a rerun of ``make sweep``
submits it again). A failed task shows the first line of its cause, read from its log (the last
exception of the job or of the trial it started, or the runtime's own error), so a job that
failed before its first trial says why where the user looks; an array whose every task failed
within :data:`FAST_FAILURE_S` of starting is named as such (the setup failed, not the trials).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infpop.errors import InputError
from infpop.executors.slurm import FAILED_STATES, job_elapsed, job_states
from infpop.joblogs import failure_note, stdout_log
from infpop.jobs import read_group
from infpop.results import DONE, CorruptResult, TrialResult, iter_results
from infpop.search_state import Equivalence, Pick, read_searches, search_folder
from infpop.submissions import JobRecord, latest, read_submissions

#: SLURM states in which a group's missing trials are being worked on.
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT"})
#: A task that failed within this many seconds of starting never got to its trials.
FAST_FAILURE_S = 60
#: Order of the counts in the summary line.
CATEGORIES = ("done", "ok", "oom", "timeout", "skipped_oom", "skipped_enough", "error", "running", "pending")


@dataclass
class Task:
    """One submitted group: its job (``<array>_<task>`` or a plain id), state and log."""

    job_id: str
    group: str
    partition: str
    executor: str
    state: str
    log: str | None
    #: Seconds it ran (SLURM's accounting), where known.
    elapsed_s: int | None = None

    @property
    def array_id(self) -> str:
        return self.job_id.split("_")[0]


@dataclass
class Search:
    """One live search's state file: its trials so far, the job in flight (with its SLURM
    state), or why it stopped and its pick."""

    target: str
    method: str
    #: What the search maximised, and its unit.
    objective: str
    unit: str
    trials: int
    stop_reason: str | None
    pick: Pick | None
    job: Task | None
    #: ``--require-equivalent``: the constraint and its cost; None without it.
    equivalence: Equivalence | None = None
    #: Trials whose outputs are equivalent to the reference's (under the constraint).
    equivalent: int = 0


@dataclass
class StudyStatus:
    study: str
    path: Path
    counts: Counter[str]
    trials: int
    tasks: list[Task] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    searches: list[Search] = field(default_factory=list)

    @property
    def failed(self) -> list[Task]:
        return [t for t in self.tasks if t.state in FAILED_STATES]


def classify(planned: Mapping[str, str], results: Mapping[str, str], group_states: Mapping[str, str]) -> Counter[str]:
    """Count trials by outcome.

    ``planned``: trial id -> group id; ``results``: trial id -> result status; ``group_states``:
    group id -> state of its last job. Every trial lands in one of done (split by status), error,
    running and pending; an ``error`` is retried, so while its group runs it counts as running.
    """
    counts: Counter[str] = Counter({c: 0 for c in CATEGORIES})
    for trial_id in set(planned) | set(results):
        status = results.get(trial_id)
        if status in DONE:
            counts["done"] += 1
            counts[status] += 1
        elif group_states.get(planned.get(trial_id, ""), "") in RUNNING_STATES:
            counts["running"] += 1
        else:
            counts[status or "pending"] += 1
    return counts


def study_status(path: str | Path) -> StudyStatus:
    """Read a study directory (``<output_root>/<study>``) and ask SLURM about its jobs."""
    path = Path(path)
    bookkeeping = path / ".infpop"
    if not bookkeeping.is_dir():
        raise InputError(f"STUDY {str(path)!r}: no study here (no .infpop folder; run `infpop sweep` first)")
    planned: dict[str, str] = {}
    for gf in sorted((bookkeeping / "groups").glob("*.json")):
        g = read_group(gf)
        planned.update({t.trial_id: g.group_id for t in g.trials})
    results: dict[str, str] = {}
    corrupt: list[str] = []
    for r in iter_results(path):
        if isinstance(r, CorruptResult):
            corrupt.append(str(r))
        elif isinstance(r, TrialResult):
            results[r.trial.trial_id] = r.status
    last = latest(read_submissions(bookkeeping))
    searches = read_searches(search_folder(bookkeeping))
    in_flight = [s.job for s in searches if s.job]
    slurm_ids = [e.job_id for e in [*last.values(), *in_flight] if e.executor == "slurm"]
    states = job_states(slurm_ids) if slurm_ids else {}
    tasks = [_task(e, g, states) for g, e in last.items()]
    failed = [t for t in tasks if t.executor == "slurm" and t.state in FAILED_STATES]
    elapsed = job_elapsed([t.job_id for t in failed]) if failed else {}
    for t in failed:
        t.elapsed_s = elapsed.get(t.job_id)
    counts = classify(planned, results, {t.group: t.state for t in tasks})
    live = [
        Search(
            target=s.target,
            method=s.method,
            objective=s.objective,
            unit=s.unit,
            trials=len(s.trials),
            stop_reason=s.stop_reason,
            pick=s.pick,
            job=_task(s.job, f"{s.target} at {s.job.n_gpus} GPU(s)", states) if s.job else None,
            equivalence=s.equivalence,
            equivalent=sum(bool(t.equivalent) for t in s.trials),
        )
        for s in searches
    ]
    return StudyStatus(path.name, path, counts, len(set(planned) | set(results)), tasks, corrupt, live)


def _task(job: JobRecord, group: str, states: Mapping[str, str]) -> Task:
    """A job as a submission-log entry (or a search's job in flight) records it, with its state."""
    return Task(
        job_id=job.job_id,
        group=group,
        partition=job.partition,
        executor=job.executor,
        state=states.get(job.job_id, "LOCAL"),
        log=job.log,
    )


def format_status(st: StudyStatus) -> str:
    """The report ``infpop status`` prints: one summary line, then arrays, then what to read."""
    c = st.counts
    # adaptive repetitions only (infpop.adaptive): a fixed study's line stays as it was
    enough = f", {c['skipped_enough']} skipped_enough" if c["skipped_enough"] else ""
    lines = [
        f"{st.study}: {st.trials} trials: {c['done']} done ({c['ok']} ok, {c['oom']} oom, {c['timeout']} timeout, "
        f"{c['skipped_oom']} skipped_oom{enough}), {c['error']} error, {c['running']} running, {c['pending']} pending"
    ]
    arrays: dict[str, list[Task]] = {}
    for t in st.tasks:
        if t.executor == "slurm":
            arrays.setdefault(t.array_id, []).append(t)
    for array_id, tasks in sorted(arrays.items()):
        states = Counter(t.state for t in tasks)
        summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        kind = "array" if "_" in tasks[0].job_id else "job"
        lines.append(f"  {kind} {array_id} on {tasks[0].partition}: {len(tasks)} task(s): {summary}")
        lines += [f"    {t.job_id:>12} {t.state:<11} {t.group}" for t in sorted(tasks, key=_task_order)]
        if (quick := _failed_at_start(tasks)) is not None:
            lines.append(
                f"    every task of {kind} {array_id} failed within {quick} s of starting: its jobs never got to "
                "their trials (a setup error: paths, image, environment); the causes below"
            )
    lines += [_search_line(search) for search in st.searches]
    if st.failed:
        lines.append("  failed tasks (cause, from the log):")
        lines += [f"    {t.job_id} {t.state}: {_failure_text(t.log)}" for t in st.failed]
    lines += [f"  unreadable result: {c}" for c in st.corrupt]
    return "\n".join(lines)


def _search_line(search: Search) -> str:
    head = f"  search {search.target} ({search.method}, {search.objective}): {search.trials} trial(s)"
    eq = search.equivalence
    if eq is not None:
        head += f", {search.equivalent} equivalent to the reference {eq.reference}"
    if search.job is not None:
        j = search.job
        return f"{head}; job {j.job_id} on {j.partition} {j.state}: {j.group}; log {_log_text(j.log)}"
    if search.stop_reason:
        pick = search.pick
        chosen = f"; pick {pick.config} {pick.value:.4g} {search.unit}" if pick else "; no successful trial"
        if eq is not None:
            chosen = f"{chosen}, {eq.outcome(pick, search.unit)}" if pick else f"; {eq.outcome(pick, search.unit)}"
        return f"{head}; stopped: {search.stop_reason}{chosen}"
    return f"{head}; no job in flight (rerun `infpop hpo search` to resume)"


def _failed_at_start(tasks: Sequence[Task]) -> int | None:
    """The longest run of an array's tasks when every one failed within FAST_FAILURE_S, else None."""
    runs = [t.elapsed_s for t in tasks if t.state in FAILED_STATES]
    if len(runs) != len(tasks) or any(r is None or r > FAST_FAILURE_S for r in runs):
        return None
    return max(r for r in runs if r is not None)


def _failure_text(log: str | None) -> str:
    """A failed task's cause and the log holding it (stdout or stderr), or why there is none."""
    started = log is not None and (Path(log).exists() or stdout_log(log).exists())
    return failure_note(log) if started else _log_text(log)


def _log_text(log: str | None) -> str:
    if log and Path(log).exists():
        return log
    return f"{log} (none: the task never started)" if log else "no log recorded"


def _task_order(t: Task) -> tuple[int, int]:
    array, _, task = t.job_id.partition("_")
    return (int(array) if array.isdigit() else 0, int(task) if task.isdigit() else 0)


def find_studies(output_root: str | Path) -> list[Path]:
    """Study directories under an output root: those with infpop bookkeeping."""
    root = Path(output_root)
    return sorted(p.parent for p in root.glob("*/.infpop") if p.is_dir())


def status_report(studies: Sequence[str | Path], output_root: str | Path = "runs") -> str:
    """``infpop status``: the given study directories, else every study under ``output_root``."""
    paths = [Path(s) for s in studies] or find_studies(output_root)
    if not paths:
        raise InputError(f"--output-root {str(output_root)!r}: no studies found (nothing submitted yet?)")
    return "\n".join(format_status(study_status(p)) for p in paths)
