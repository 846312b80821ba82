"""Issue 23, analysis half: hostile result files and tables, two users at once, a full disk.

Each test replays one reproduction of the issue through the real ``infpop`` CLI (``main`` in
process, or the installed command in subprocesses where processes race), on result files and
tables the test writes, and checks what a user relies on: nothing from the data runs in the
report or lands outside ``-o``, an impossible or unreadable input is named and left out (or
refused with exit 2), two aggregates into one folder both succeed with a consistent pair, a full
disk is named and leaves no temp, empty or half-written file. The full-disk tests mount a real
small tmpfs (root only; CI runs as root).

Cost: 90 s for the module on 2 cores shared with three other test runs (two aggregates racing
four times, 28 s; the browser, 22 s; each full-disk case about 6 s; the rest a second or two each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import chromium, render
from infpop.cli import main
from infpop.manifest import ModelSpec, WorkloadSpec
from infpop.plan import TrialSpec
from infpop.results import Provenance, TrialResult, utcnow
from infpop_analysis.table import conform, write_table

EVIL = """<img src=x onerror="document.body.setAttribute('data-pwned',1)">"""


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``infpop ARGS`` in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def infpop(*args: str) -> subprocess.Popen:
    """``infpop ARGS`` as its own process (the installed command, as a user runs it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "infpop", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def result_json(batch: int = 1, rep: int = 0, model: str = "m", **changes) -> dict:
    """A valid result record as JSON data; ``changes`` overwrite fields (``trial__x`` a trial field)."""
    trial = TrialSpec(study="s", hardware="cpu", partition="local", engine="hf",
                      model=ModelSpec(name=model, source="org/m"), n_gpus=1, batch_size=batch, max_new_tokens=5,
                      repetition=rep, dtype="float32", workload=WorkloadSpec(path="p.jsonl"))  # fmt: skip
    prov = Provenance(host="h", gpus=["cpu"], versions={}, manifest_sha256="0" * 64, started_at=utcnow(),
                      finished_at=utcnow())  # fmt: skip
    data = TrialResult(trial=trial, status="ok", n_prompts=10, generated_tokens=50, wall_s=1.0,
                       throughput=50.0 * batch, provenance=prov).model_dump(mode="json")  # fmt: skip
    for key, value in changes.items():
        where, _, field = key.rpartition("__")
        (data[where] if where else data)[field] = value
    return data


def write_result(root: Path, data: dict, name: str) -> Path:
    path = root / "s" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))  # Python writes inf and nan as Infinity and NaN, as a hand edit might
    return path


def table(models: tuple[str, ...] = ("m0", "m1"), engines: tuple[str, ...] = ("hf",), failed: tuple[str, ...] = (),
          **fixed) -> pd.DataFrame:  # fmt: skip
    """A small tidy table: every engine and model on GPUs 1, 2 x batches 1, 8, three repetitions;
    the engines in ``failed`` have only failed trials. ``fixed`` sets a column everywhere."""
    rows = [
        dict(study="s", hardware="cpu", engine=e, model=m, n_gpus=g, batch_size=b, max_new_tokens=5, repetition=r,
             status="error" if e in failed else "ok", throughput=np.nan if e in failed else g * b * (10 + r),
             error="RuntimeError: boom" if e in failed else None, trial_id=f"{e}_{m}_g{g}_b{b}_r{r}")
        for e in engines for m in models for g in (1, 2) for b in (1, 8) for r in range(3)
    ]  # fmt: skip
    return conform(pd.DataFrame(rows).assign(**fixed))


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- 1. nothing from the data runs in report.html --------------------------------------------


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (Debian's `chromium`; .ci/run installs it)")
def test_injected_markup_is_shown_as_text_and_never_runs(tmp_path: Path, capsys) -> None:
    """A model name and an error text carrying markup go through `infpop stats` (into report.md)
    and `infpop report`; a hardware name carrying a quote and markup becomes a landscape's div id.
    The real browser's DOM shows the text and no element or attribute the markup would create."""
    t = table(models=("m0", EVIL)).assign(error=EVIL)
    write_table(t, tmp_path / "table.parquet")
    assert cli(capsys, "stats", tmp_path / "table.parquet", "-o", tmp_path / "stats")[0] == 0
    assert EVIL in (tmp_path / "stats" / "report.md").read_text(), "the markup reaches report.md, to be escaped"
    hostile_id = table(hardware="cpu'\"><svg onload=\"document.body.setAttribute('data-pwned',2)\">")
    write_table(hostile_id, tmp_path / "id" / "table.parquet")
    rc, _, err = cli(capsys, "report", tmp_path / "id" / "table.parquet", "-o", tmp_path / "id",
                     "--stats", tmp_path / "stats")  # fmt: skip
    assert rc == 0, err
    rc, _, err = cli(capsys, "report", tmp_path / "table.parquet", "-o", tmp_path / "out")
    assert rc == 0, err
    for page in (tmp_path / "out" / "report.html", tmp_path / "id" / "report.html"):
        got = render(
            page,
            ready="document.readyState === 'complete' && document.querySelectorAll('.js-plotly-plot').length > 0",
            expressions={
                "pwned": "document.body.getAttribute('data-pwned')",
                "injected": "document.querySelectorAll('img[src=x], svg[onload], [onerror]').length",
                "shown": "document.body.innerText.includes('onerror=') || document.body.innerText.includes('onload=')",
            },
            screenshots={},
        )
        assert got.values == {"pwned": None, "injected": 0, "shown": True}, page


def test_result_files_with_markup_in_names_are_excluded(tmp_path: Path, capsys) -> None:
    """``trial.hardware`` and ``trial.engine`` are names (they become paths and HTML): a result
    file with markup there is named on stderr and left out, as a truncated one is."""
    runs = tmp_path / "runs"
    write_result(runs, result_json(1), "good")
    bad = [write_result(runs, result_json(2, trial__hardware=EVIL), "hw"),
           write_result(runs, result_json(3, trial__engine="../../x"), "engine")]  # fmt: skip
    rc, out, err = cli(capsys, "aggregate", runs, "-o", tmp_path / "table.parquet")
    assert rc == 0 and "1 trials" in out
    for path in bad:
        assert str(path) in err
    assert "trial.hardware" in err and "trial.engine" in err


# --- 2. nothing lands outside -o ---------------------------------------------------------------


@pytest.mark.parametrize("column", ["model", "hardware", "engine"])
def test_names_that_climb_out_are_refused_before_anything_is_written(tmp_path: Path, capsys, column: str) -> None:
    climbing = "../../../../../elsewhere/model"
    write_table(table(**{column: climbing}), tmp_path / "a" / "b" / "c" / "table.parquet")
    before = set(files(tmp_path))
    out = tmp_path / "a" / "b" / "c" / "figures"
    rc, _, err = cli(capsys, "figures", tmp_path / "a" / "b" / "c" / "table.parquet", "-o", out, "-j", "1")
    assert rc == 2 and climbing in err and column in err
    stats_rc, _, stats_err = cli(capsys, "stats", tmp_path / "a" / "b" / "c" / "table.parquet", "-o", out)
    if column != "model":  # statistics tables are named after hardware and engine, not models
        assert stats_rc == 2 and climbing in stats_err
    written = set(files(tmp_path)) - before
    assert all(out in p.parents for p in written), f"written outside -o: {written}"
    assert not (tmp_path / "elsewhere").exists() and not files(out / "landscapes")


# --- 3. two aggregates into one -o -------------------------------------------------------------


def test_two_aggregates_at_once_both_succeed_with_a_consistent_pair(tmp_path: Path) -> None:
    """Two result trees of the same size (so the two commands reach their writes together) but of
    different models, aggregated into one table at the same moment, four times: both commands
    succeed, and the parquet and the csv are whole and from the same run."""
    roots = {}
    for model in ("a", "b"):
        roots[model] = tmp_path / f"runs-{model}"
        for b in range(1, 401):
            write_result(roots[model], result_json(b, model=model), f"r{b}")
    out = tmp_path / "shared" / "table.parquet"
    for _ in range(4):
        procs = [infpop("aggregate", root, "-o", out) for root in roots.values()]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
        parquet, csv = pd.read_parquet(out), pd.read_csv(out.with_suffix(".csv"))
        assert len(parquet) == 400 and parquet["model"].nunique() == 1, "a whole table of one run"
        assert list(parquet["trial_id"]) == list(csv["trial_id"]), "parquet and csv come from the same run"
        assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


# --- 5. impossible values ----------------------------------------------------------------------


def test_impossible_values_are_named_and_excluded_and_a_symlink_counts_once(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    good = write_result(runs, result_json(1), "good")
    os.symlink(good, runs / "s" / "copy.json")
    impossible = {
        "huge_batch": result_json(2, trial__batch_size=10**30),
        "negative_batch": result_json(3, trial__batch_size=-4),
        "infinite": result_json(4, throughput=float("inf")),
        "nan": result_json(5, throughput=float("nan")),
        "negative_throughput": result_json(6, throughput=-5.0),
        "negative_tokens": result_json(7, generated_tokens=-50, prompt_tokens=-3),
    }
    bad = [write_result(runs, data, name) for name, data in impossible.items()]
    rc, out, err = cli(capsys, "aggregate", runs, "-o", tmp_path / "table.parquet")
    assert rc == 0 and "1 trials (1 ok)" in out
    for path in bad:
        assert f"{path}: impossible value" in err
    t = pd.read_parquet(tmp_path / "table.parquet")
    assert len(t) == 1 and t["throughput"].tolist() == [50.0]
    rc, _, err = cli(capsys, "stats", tmp_path / "table.parquet", "-o", tmp_path / "stats")
    assert rc == 0, err
    configs = pd.read_csv(tmp_path / "stats" / "configs.csv")
    assert configs["mean"].tolist() == [50.0] and "inf to inf" not in (tmp_path / "stats" / "report.md").read_text()


# --- 6. a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A real 2 MiB tmpfs and a filler file on it; the test frees what it needs by truncating."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        yield mnt, filler
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def free(filler: Path, nbytes: int) -> None:
    """Leave about ``nbytes`` free on the full disk."""
    os.truncate(filler, max(0, filler.stat().st_size - nbytes))


def assert_nothing_half_written(folder: Path, failed: bool = False) -> None:
    """No temp file and no empty file; and a folder a failed command left outputs in is marked."""
    left = [p for p in files(folder) if p.name != "filler"]
    assert not [p for p in left if p.name.endswith(".tmp")], f"temp files left: {left}"
    assert not [p for p in left if p.stat().st_size == 0], f"empty files under real names: {left}"
    outputs = [p for p in left if p.name != "INCOMPLETE"]
    if outputs and failed:
        assert (folder / "INCOMPLETE").exists(), f"a partial folder must be marked incomplete: {outputs}"


def test_aggregate_on_a_full_disk_says_so_and_leaves_nothing(tmp_path: Path, small_disk) -> None:
    mnt, _ = small_disk
    runs = tmp_path / "runs"
    for b in range(1, 4):
        write_result(runs, result_json(b), f"r{b}")
    p = infpop("aggregate", runs, "-o", mnt / "table.parquet")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1 and "No space left on device" in err and "Traceback" not in err, err
    assert "disk full" in err and str(mnt / "table.") in err
    assert [p.name for p in files(mnt)] == [".table.lock", "filler"], "no table, no temp file: only the pair's lock"
    debug = infpop("--debug", "aggregate", runs, "-o", mnt / "table.parquet")
    assert "Traceback" in debug.communicate(timeout=300)[1], "--debug shows the traceback"


@pytest.mark.parametrize("room", [0, 8 * 1024, 96 * 1024])
def test_stats_figures_and_report_on_a_full_disk(tmp_path: Path, small_disk, capsys, room: int) -> None:
    """With no room, a little (the INCOMPLETE mark and a file or two) and some (the statistics,
    a few figures): a command that fits succeeds whole; one that does not exits 1 naming the full
    disk, leaves no temp or empty file and marks a partial folder INCOMPLETE; the report (which
    carries plotly.js, more than the disk holds) always fails that way; and `infpop report` later
    reads whatever the statistics left."""
    mnt, filler = small_disk
    src = tmp_path / "table.parquet"
    write_table(table(engines=("hf", "vllm")), src)
    free(filler, room)
    for command, out in (("stats", mnt / "stats"), ("figures", mnt / "figures"), ("report", mnt / "report")):
        extra = ["-j", "1"] if command == "figures" else []
        rc, _, err = cli(capsys, command, src, "-o", out, *extra)
        if rc == 0 and command != "report":
            assert not (out / "INCOMPLETE").exists() and files(out), command
        else:
            assert rc == 1 and "No space left on device" in err and "Traceback" not in err, (command, err)
        if room == 0:
            assert rc == 1, command
        assert_nothing_half_written(out, failed=rc != 0)
    assert_nothing_half_written(mnt)
    free(filler, 10**6)  # room again: the report reads the partial stats without crashing
    rc, _, err = cli(capsys, "report", src, "-o", tmp_path / "after", "--stats", mnt / "stats")
    assert rc == 0, err
    if (mnt / "stats" / "INCOMPLETE").exists():
        assert "is incomplete" in (tmp_path / "after" / "report.html").read_text()


# --- 7. bad tables -----------------------------------------------------------------------------

BAD_TABLES = {
    "empty": (b"", "empty"),
    "unparsable": (b'hardware,engine,model\n"cpu,hf\nx,y,z,w,v\n', "cannot read as CSV"),
    "latin1": (
        "hardware,engine,model,n_gpus,batch_size,throughput\ncpu,hf,mod\xe8le,1,1,2.0\n".encode("latin-1"),
        "not UTF-8",
    ),  # fmt: skip
    "missing": (None, "no such file"),
    "text_in_number": (None, "column 'throughput'"),
}
COMMANDS = {
    "stats": ["stats"],
    "figures": ["figures"],
    "report": ["report"],
    "hpo benchmark": ["hpo", "benchmark"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", BAD_TABLES)
def test_bad_tables_are_named_with_exit_2(tmp_path: Path, capsys, command: str, kind: str) -> None:
    content, says = BAD_TABLES[kind]
    path = tmp_path / "table.csv"
    if kind == "text_in_number":
        t = table()
        t["throughput"] = t["throughput"].astype(object)
        t.loc[3, "throughput"] = "fast"
        t.to_csv(path, index=False)
    elif content is not None:
        path.write_bytes(content)
    rc, _, err = cli(capsys, *COMMANDS[command], path, "-o", tmp_path / "out")
    assert rc == 2, err
    assert str(path) in err and says in err, err
    if kind == "text_in_number":
        assert "'fast'" in err and "row 4" in err


def test_only_failed_trials(tmp_path: Path, capsys) -> None:
    """A study whose every trial failed: statistics, figures and report say so in valid files;
    the HPO commands, with nothing to search, exit 2 saying why (never StatisticsError)."""
    write_table(table(failed=("hf",)), tmp_path / "table.parquet")
    for args in (["stats", "-o", tmp_path / "stats"], ["figures", "-o", tmp_path / "figures", "-j", "1"],
                 ["report", "-o", tmp_path / "report"]):  # fmt: skip
        rc, _, err = cli(capsys, args[0], tmp_path / "table.parquet", *args[1:])
        assert rc == 0, err
    for command in (["hpo", "benchmark"], ["hpo", "replay"]):
        rc, _, err = cli(capsys, *command, tmp_path / "table.parquet", "-o", tmp_path / "hpo")
        assert rc == 2 and "nothing to search: no trial at max_new_tokens 5 measured its throughput" in err, err


# --- 8. a figure that cannot be drawn ----------------------------------------------------------


def test_figures_skip_an_engine_without_successful_trials(tmp_path: Path, capsys) -> None:
    write_table(table(engines=("hf", "vllm"), failed=("vllm",)), tmp_path / "table.parquet")
    out = tmp_path / "figures"
    rc, stdout, err = cli(capsys, "figures", tmp_path / "table.parquet", "-o", out, "-j", "1")
    assert rc == 0, err
    skipped = [line for line in err.splitlines() if line.startswith("infpop: skipped")]
    assert skipped and all("vllm" in line and "no successful trial" in line for line in skipped)
    assert (out / "batch_size" / "cpu_hf_g1.png").exists() and not (out / "batch_size" / "cpu_vllm_g1.png").exists()
    assert not (out / "INCOMPLETE").exists()
    assert all(p.stat().st_size > 0 for p in files(out)) and not [p for p in files(out) if p.suffix == ".tmp"]
    assert len(stdout.split()) == len(files(out)) - 1, "every file written is listed (plotly.min.js aside)"
