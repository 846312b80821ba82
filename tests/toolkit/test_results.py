"""Result files on disk: atomic, concurrent-safe, and a corrupt one is reported, never silently used."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from infpop.cli import main
from infpop.manifest import ModelSpec, WorkloadSpec
from infpop.plan import TrialSpec
from infpop.results import Provenance, ResultStore, TrialResult, iter_results, utcnow


def _result(batch: int, rep: int = 0, model: str = "m") -> TrialResult:
    trial = TrialSpec(
        study="s",
        hardware="cpu",
        partition="local",
        engine="hf",
        model=ModelSpec(name=model, source="org/m"),
        n_gpus=1,
        batch_size=batch,
        max_new_tokens=5,
        repetition=rep,
        dtype="float32",
        workload=WorkloadSpec(path="p.jsonl"),
    )
    prov = Provenance(
        host="h", gpus=["cpu"], versions={}, manifest_sha256="0" * 64, started_at=utcnow(), finished_at=utcnow()
    )
    return TrialResult(
        trial=trial, status="ok", n_prompts=10, generated_tokens=50, wall_s=1.0, throughput=50.0, provenance=prov
    )


def _writer(root: str, worker: int, n: int) -> None:
    store = ResultStore(root)
    for i in range(n):
        store.write(_result(batch=i + 1, rep=worker, model=f"m{worker % 4}"))


def test_sixteen_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 25)) for w in range(16)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    results = list(iter_results(tmp_path))
    assert all(isinstance(r, TrialResult) for r in results)
    assert len(results) == 16 * 25
    assert len({r.trial.trial_id for r in results}) == 16 * 25
    assert not [p for p in tmp_path.rglob("*.tmp")], "no temp file may be left behind"


def test_rewriting_a_result_replaces_it_whole(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    path = store.write(_result(4))
    store.write(_result(4).model_copy(update={"status": "oom"}))
    assert json.loads(path.read_text())["status"] == "oom"


def test_truncated_result_is_reported_and_excluded(tmp_path: Path, capsys) -> None:
    store = ResultStore(tmp_path / "runs")
    good = store.write(_result(1))
    bad = store.write(_result(2))
    bad.write_text(bad.read_text()[:100])
    (tmp_path / "runs" / "s" / ".infpop").mkdir()
    (tmp_path / "runs" / "s" / ".infpop" / "bookkeeping.json").write_text("{}")  # hidden: not a result

    assert main(["aggregate", str(tmp_path / "runs"), "-o", str(tmp_path / "t.parquet")]) == 0
    captured = capsys.readouterr()
    assert str(bad) in captured.err and "corrupt" in captured.err
    assert "1 trials" in captured.out
    import pandas as pd

    table = pd.read_parquet(tmp_path / "t.parquet")
    assert list(table["trial_id"]) == [_result(1).trial.trial_id]
    assert (tmp_path / "t.csv").exists()
    assert store.done(_result(2).trial) is None, "a corrupt result counts as missing, so a rerun redoes it"
    assert store.done(_result(1).trial) is not None and good.exists()
