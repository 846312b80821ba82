"""The submission layer's records: the submission log and a search's state file read back as
typed records, including files written before they were typed, and the executors by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from infpop.errors import InputError
from infpop.executors.local import LocalExecutor
from infpop.executors.slurm import SlurmExecutor
from infpop.plugins import EXECUTORS
from infpop.search_state import read_searches
from infpop.submissions import JobRecord, latest, log_submission, read_submissions

#: A line of a submission log as sweeps wrote it before the log was typed (json.dumps of a dict).
OLD_LINE = {
    "job_id": "12_3",
    "group": "s/a100/hf/m/g2",
    "partition": "a100",
    "submitted_at": "2026-11-30T10:00:00.000+00:00",
    "executor": "slurm",
    "log": "/runs/s/.infpop/logs/12_3/12_3_0_log.err",
}

#: A finished search's state file as the untyped search wrote it (no ``job`` key when it stopped
#: before submitting anything).
OLD_STATE = {
    "target": "cpu__hf__tiny",
    "method": "ours",
    "seed": 0,
    "budget": None,
    "prior": None,
    "physics": False,
    "stop_reason": "3 trials without improvement",
    "pick": {
        "config": "g1_b2",
        "throughput": 41.5,
        "interval": [40.0, 43.0],
        "interval_note": "95% bootstrap interval of the mean over the repetitions on disk",
        "tied_with": [],
    },
    "trials": [{"config": "g1_b2", "status": "ok", "throughput": 41.5, "load_s": 1.2, "trial_id": "t1"}],
}


def test_an_old_submission_log_reads_and_a_new_entry_keeps_its_fields(tmp_path: Path) -> None:
    (tmp_path / "submissions.jsonl").write_text(json.dumps(OLD_LINE) + "\n")
    log_submission(tmp_path, "s/a100/hf/m/g2", JobRecord(job_id="15", partition="a100", executor="slurm", log="x.err"))
    old, new = read_submissions(tmp_path)
    assert old.model_dump() == OLD_LINE
    assert set(json.loads((tmp_path / "submissions.jsonl").read_text().splitlines()[1])) == set(OLD_LINE)
    assert latest([old, new])["s/a100/hf/m/g2"].job_id == "15", "a rerun supersedes the earlier job"


def test_a_line_that_is_no_submission_is_named(tmp_path: Path) -> None:
    (tmp_path / "submissions.jsonl").write_text(json.dumps(OLD_LINE) + "\n" + json.dumps({"job_id": "9"}) + "\n")
    with pytest.raises(InputError, match=r"submissions\.jsonl:2: not a submission"):
        read_submissions(tmp_path)


def test_an_old_search_state_reads_and_a_broken_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "cpu__hf__tiny.json").write_text(json.dumps(OLD_STATE, indent=1))
    (state,) = read_searches(tmp_path)
    assert state.job is None and state.pick is not None and state.pick.interval == (40.0, 43.0)
    # Written before searches had an objective: a throughput search, its throughputs the values.
    assert (state.objective, state.unit, state.pick.value, state.trials[0].value) == ("throughput", "tok/s", 41.5, 41.5)
    rewritten = {**OLD_STATE, "job": None, "objective": "throughput", "unit": "tok/s", "equivalence": None}
    rewritten["pick"] = {("value" if k == "throughput" else k): v for k, v in OLD_STATE["pick"].items()}
    rewritten["trials"] = [
        {**{("value" if k == "throughput" else k): v for k, v in t.items()}, "identical": None, "equivalent": None}
        for t in OLD_STATE["trials"]
    ]  # not constrained
    assert json.loads(state.model_dump_json()) == rewritten
    (tmp_path / "cpu__vllm__tiny.json").write_text('{"target": "cpu__vllm__tiny"}')
    with pytest.raises(InputError, match="cpu__vllm__tiny.json"):
        read_searches(tmp_path)
    assert read_searches(tmp_path / "absent") == []


def test_the_executors_are_registered_by_the_profiles_name() -> None:
    assert EXECUTORS.load("local") is LocalExecutor and EXECUTORS.load("slurm") is SlurmExecutor
    assert {EXECUTORS.load(n).kind for n in EXECUTORS.names()} == EXECUTORS.names()
