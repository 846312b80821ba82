"""The search's objective: capacity per GPU under a latency SLO, read from trials' results and from
a tidy table of capacity searches (generated here: the published data measured no capacity), a
search that found no rate meeting the SLO valued 0, an OOM a failure; the live search's pick and
state in the objective's unit; refusals. The live search itself: tests/integration/test_capacity_search.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from infpop.capacity import Capacity
from infpop.cli import main
from infpop.errors import InputError
from infpop.manifest import CapacitySearch, Slo, load_manifest, parse_manifest
from infpop.plan import plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.results import Provenance, ResultStore, TrialResult, utcnow
from infpop.search_state import SearchState
from infpop_analysis.hpo.landscape import Config, Landscape, landscapes
from infpop_analysis.hpo.objective import CAPACITY, THROUGHPUT, for_manifest
from infpop_analysis.hpo.search import observe, pick, targets, write_state
from infpop_analysis.table import conform, row
from minimal_manifest import manifest_text, write_manifest_file

SLO = {"e2e_p99_s": 1.0}
SEARCH = {"min_rate": 1, "max_rate": 64, "tolerance": 1}
CAPACITY_SCENARIO = {"kind": "online", "duration_s": 60, "slo": SLO, "capacity": SEARCH}
#: Capacity (requests/s, whole configuration) per (GPU count, batch size): rising with the batch
#: to a peak, then falling as latency binds; 0: the SLO failed at min_rate; None: OOM.
MEASURED: dict[tuple[int, int], float | None] = {
    (1, 1): 4.0,
    (1, 2): 8.0,
    (1, 4): 12.0,
    (1, 8): 0.0,
    (2, 1): 6.0,
    (2, 2): 14.0,
    (2, 4): 20.0,
    (2, 8): None,
}


def _capacity(rps: float | None) -> Capacity:
    """A capacity search's record: converged at ``rps``, violated at min_rate (0), or an OOM (None)."""
    slo, search = Slo(**SLO), CapacitySearch(**SEARCH)
    if rps is None:
        return Capacity(
            slo=slo, search=search, probes=[], capacity_rps=None, capacity_tokens_s=None, violated_rps=None,
            stopped="probe_failed", why="the probe at min_rate 1/s ended oom",
        )  # fmt: skip
    if rps == 0:
        return Capacity(
            slo=slo, search=search, probes=[], capacity_rps=None, capacity_tokens_s=None, violated_rps=1.0,
            stopped="violated_at_min_rate", why="the SLO fails at min_rate 1/s: lower it",
        )  # fmt: skip
    return Capacity(
        slo=slo, search=search, probes=[], capacity_rps=rps, capacity_tokens_s=3 * rps, violated_rps=rps + 1,
        stopped="converged", why="the bracket is within the tolerance",
    )  # fmt: skip


def _results(groups, hardware_scale: float = 1.0) -> list[TrialResult]:
    """One result per planned trial, its capacity from :data:`MEASURED` (scaled)."""
    now = utcnow()
    prov = Provenance(host="h", gpus=["cpu"], versions={}, manifest_sha256="x", started_at=now, finished_at=now)
    out = []
    for t in (t for g in groups for t in g.trials):
        rps = MEASURED[(t.n_gpus, t.batch_size)]
        scaled = None if rps is None else rps * hardware_scale
        status = "oom" if rps is None else ("timeout" if rps == 0 else "ok")
        out.append(
            TrialResult(
                trial=t,
                status=status,
                throughput=None if not scaled else 3 * scaled,
                wall_s=2.0,
                provenance=prov,
                capacity=_capacity(scaled),
            )
        )
    return out


@pytest.fixture
def capacity_manifest(tmp_path: Path, humaneval_path: Path) -> Path:
    return write_manifest_file(
        tmp_path / "capacity.yaml",
        gpu_counts=[1, 2],
        batch_sizes=[1, 2, 4, 8],
        workload={"path": str(humaneval_path), "limit": 4},
        output_root=str(tmp_path / "runs"),
        scenario=CAPACITY_SCENARIO,
    )


def _table(manifest: Path, tmp_path: Path) -> pd.DataFrame:
    """A tidy table of capacity searches on two GPU types, built by the table's own rows."""
    loaded = load_manifest(manifest)
    rows = []
    for hardware, scale in (("a100", 1.0), ("v100", 0.5)):
        groups = plan(loaded, "local", EMBEDDED_DEFAULT.partitions["local"], output_root=tmp_path / hardware)
        for r in _results(groups, scale):
            rows.append(row(r) | {"hardware": hardware})
    return conform(pd.DataFrame(rows))


def test_a_capacity_landscape_holds_capacity_per_gpu_zero_where_the_slo_failed_and_ooms_as_failures(
    capacity_manifest: Path, tmp_path: Path
) -> None:
    table = _table(capacity_manifest, tmp_path)
    land = {x.hardware: x for x in landscapes(table, 5, CAPACITY)}["a100"]
    assert land.objective is CAPACITY
    assert land.score(Config(2, 4)) == 10.0, "20 requests/s on two GPUs: 10 per GPU"
    assert land.score(Config(1, 4)) == 12.0 and land.optimum() == 12.0, "per GPU, one GPU serves most"
    assert land.points[Config(1, 8)] == (("ok", 0.0, 2.0)), "no rate met the SLO: capacity 0, measured"
    assert land.points[Config(2, 8)].status == "oom" and land.score(Config(2, 8)) is None
    # Billed by the trial's measured seconds, not by a rate of tokens.
    assert land.gpu_seconds(Config(2, 4)) == 2 * 2.0 and land.gpu_seconds(Config(2, 8)) == 2 * 2.0
    # The same table read for throughput: the tokens/s at the capacity, the zero-capacity trial a failure.
    (through,) = [x for x in landscapes(table, 5) if x.hardware == "a100"]
    assert through.score(Config(2, 4)) == 60.0 and through.score(Config(1, 8)) is None


def test_a_table_without_capacity_searches_is_refused_naming_the_column(tmp_path: Path) -> None:
    rows = [
        {"hardware": "a100", "engine": "hf", "model": "m", "n_gpus": 1, "batch_size": b, "max_new_tokens": 5}
        | {"status": "ok", "throughput": 10.0 * b, "wall_s": 1.0}
        for b in (1, 2)
    ]
    with pytest.raises(InputError, match="'capacity_stopped': 2 row"):
        landscapes(conform(pd.DataFrame(rows)), 5, CAPACITY)
    table = tmp_path / "t.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    assert main(["hpo", "benchmark", str(table), "-o", str(tmp_path / "b"), "--objective", "capacity"]) == 2
    assert not (tmp_path / "b").exists(), "nothing half-written"


def test_replay_and_benchmark_search_capacity_landscapes(capacity_manifest: Path, tmp_path: Path) -> None:
    from infpop_analysis.table import write_table

    table = tmp_path / "capacity.parquet"
    rows = _table(capacity_manifest, tmp_path)
    # A model whose every configuration met the SLO at no rate: nothing to find, left out.
    nowhere = rows.assign(model="z", capacity_rps=math.nan, capacity_rps_per_gpu=math.nan)
    nowhere["capacity_stopped"] = nowhere["capacity_stopped"].where(nowhere["status"] == "oom", "violated_at_min_rate")
    write_table(pd.concat([rows, nowhere], ignore_index=True), table)
    common = ["--objective", "capacity", "--max-new-tokens", "5"]
    assert main(["hpo", "benchmark", str(table), "-o", str(tmp_path / "b"), "--seeds", "1", *common]) == 0
    result = json.loads((tmp_path / "b" / "hpo_benchmark.json").read_text())
    assert result["objective"] == "capacity per GPU (requests/s per GPU at the SLO)"
    assert sorted(result["landscapes"]) == ["hf/m/a100", "hf/m/v100"]
    ours = result["landscapes"]["hf/m/a100"]["ours"]
    assert ours["pick"] == "g1_b4" and ours["final_hit_rate"] == 1.0, "the best per GPU, not the best total"
    argv = ["hpo", "replay", str(table), "-o", str(tmp_path / "r"), "--repetitions", "1", "--evaluations", "8"]
    assert main([*argv, *common]) == 0
    replayed = pd.read_csv(tmp_path / "r" / "hpo_replay.csv")
    upgrade = replayed.set_index("direction").loc["upgrade"]
    assert upgrade["transferred_config"] == "g1_b4" and upgrade["transferred_throughput"] == 12.0


def test_the_physics_start_orders_by_the_estimate_per_gpu_and_no_token_bound_rules_capacity_out() -> None:
    from infpop.physics import Workload
    from infpop_analysis.hpo.oom import physics_for

    repo = Path(__file__).resolve().parents[2]
    (arch,) = [m.architecture for m in load_manifest(repo / "manifests" / "paper.yaml").manifest.models][:1]
    points = dict.fromkeys(Config(g, b) for g in (1, 2, 4) for b in (1, 8, 64))
    work = Workload(tuple(range(100, 700)), 16)
    offline = physics_for(Landscape("vllm", "m", "a100", points), arch, work)
    capacity = physics_for(Landscape("vllm", "m", "a100", points, objective=CAPACITY), arch, work)
    assert capacity.oom == offline.oom and capacity.bound == {} and offline.bound
    assert all(capacity.estimate[c] == pytest.approx(offline.estimate[c] / c.n_gpus) for c in points)


def test_the_objective_follows_the_manifests_slo_and_capacity_is_refused_without_one() -> None:
    offline = parse_manifest(manifest_text(workload={"path": "w.jsonl"}))
    online = parse_manifest(manifest_text(workload={"path": "w.jsonl"}, scenario=CAPACITY_SCENARIO))
    assert for_manifest(offline, None) is THROUGHPUT and for_manifest(online, None) is CAPACITY
    with pytest.raises(InputError, match=r"--objective capacity: the manifest's scenario has no slo \(scenario\.slo"):
        for_manifest(offline, "capacity")
    with pytest.raises(InputError, match="--objective throughput: the manifest's scenario has an slo"):
        for_manifest(online, "throughput")


def test_a_search_without_an_slo_refuses_the_capacity_objective(tmp_path: Path, humaneval_path: Path, capsys) -> None:
    manifest = write_manifest_file(
        tmp_path / "m.yaml", workload={"path": str(humaneval_path)}, output_root=str(tmp_path / "runs")
    )
    assert main(["hpo", "search", str(manifest), "--partition", "local", "--objective", "capacity"]) == 2
    assert "scenario.slo" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists(), "refused before planning anything"


def test_the_pick_and_the_state_carry_capacity_per_gpu(capacity_manifest: Path, tmp_path: Path) -> None:
    """The live search's reading of results on disk (the runs themselves: the integration test)."""
    groups = plan(load_manifest(capacity_manifest), "local", EMBEDDED_DEFAULT.partitions["local"])
    store = ResultStore(groups[0].output_root)
    for r in _results(groups):
        store.write(r)
    (target,) = targets(groups, 5, CAPACITY)
    history = observe(store, target)
    values = {str(o.config): o.value for o, _ in history}
    assert values["g2_b4"] == 10.0 and values["g1_b8"] == 0.0 and values["g2_b8"] is None
    chosen = pick(history, store, target, 1)
    assert chosen.config == "g1_b4" and chosen.value == 12.0
    path = tmp_path / "state.json"
    state = SearchState(
        target=target.name,
        method="ours",
        objective=CAPACITY.label,
        unit=CAPACITY.unit,
        seed=0,
        budget=None,
        prior=None,
        physics=False,
    )
    write_state(path, state.model_copy(update={"pick": chosen}), history)
    saved = json.loads(path.read_text())
    assert (saved["objective"], saved["unit"]) == ("capacity per GPU", "requests/s per GPU at the SLO")
    assert saved["pick"]["value"] == 12.0 and {t["config"]: t["value"] for t in saved["trials"]} == values
    assert math.isclose(CAPACITY.value(store.read(target.trials[Config(2, 2)])), 7.0)
