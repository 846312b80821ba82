"""InfPop HPO: optimizers on synthetic landscapes, the study's RQ5 replay and the benchmark on the
published data (skipped without ../shared), and the CLI."""

from __future__ import annotations

import json
import math
import random

import pandas as pd
import pytest
from conftest import PUBLISHED
from infpop.cli import main
from infpop.errors import InputError
from infpop_analysis.hpo import benchmark as bm
from infpop_analysis.hpo import replay as rp
from infpop_analysis.hpo.landscape import Config, Landscape, Point, landscapes
from infpop_analysis.hpo.optimizers import TPE, Grid, Observation, RandomSearch, Structured, make
from infpop_analysis.hpo.prior import Prior, leave_model_out

ALLDATA = PUBLISHED / "allData.csv"
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1028)
GPUS = (1, 2, 4, 8)


def synthetic(
    peak: dict[int, tuple[int, float]],
    oom: dict[int, int],
    hardware: str = "a100",
    model: str = "m",
    engine: str = "hf",
) -> Landscape:
    """Throughput rising with batch to a peak per GPU count, declining after it, OOM from ``oom[g]``."""
    points = {}
    for g in GPUS:
        best_b, top = peak[g]
        for b in BATCHES:
            if b >= oom.get(g, 10**9):
                points[Config(g, b)] = Point("oom", math.nan)
            else:
                distance = abs(math.log2(b) - math.log2(best_b))
                points[Config(g, b)] = Point("ok", top * (1 - 0.08 * distance))
    return Landscape(engine, model, hardware, points)


def drive(optimizer, land: Landscape, budget: int = 100) -> list[Config]:
    history: list[Observation] = []
    while len(history) < budget and (c := optimizer.propose(land.space, history)) is not None:
        history.append(Observation(c, land.score(c)))
    return [o.config for o in history]


@pytest.fixture
def land() -> Landscape:
    return synthetic({1: (16, 50.0), 2: (32, 70.0), 4: (32, 60.0), 8: (64, 40.0)}, {1: 64, 2: 128, 4: 256})


def test_structured_search_finds_a_peaked_optimum_in_few_trials_and_prunes_above_oom(land: Landscape) -> None:
    order = drive(Structured(), land)
    assert order.index(Config(2, 32)) < 8
    # Structured search never runs a batch above a known OOM before every unpruned point is tried.
    first_pruned = next(
        i
        for i, c in enumerate(order)
        if land.points[c].status == "oom"
        and any(
            land.points[o].status == "oom" and o.n_gpus == c.n_gpus and o.batch_size < c.batch_size for o in order[:i]
        )
    )
    assert all(
        land.points[c].status == "ok"
        or c.batch_size == min(b for (g, b), p in land.points.items() if g == c.n_gpus and p.status == "oom")
        for c in order[:first_pruned]
    )


def test_every_method_is_complete_so_an_irregular_optimum_is_still_found() -> None:
    # OOM at batch 1 yet fine at 2 and 4 (the study's Wizardcoder-33b on V100): pruning must not lose it.
    land = synthetic({1: (16, 5.0), 2: (4, 9.0), 4: (16, 6.0), 8: (16, 5.5)}, {1: 32, 4: 64, 8: 64})
    land.points[Config(2, 1)] = Point("oom", math.nan)
    land.points[Config(2, 8)] = Point("oom", math.nan)
    land.points[Config(2, 4)] = Point("ok", 20.0)
    for optimizer in (Structured(), Grid(), RandomSearch(3)):
        order = drive(optimizer, land)
        assert sorted(order) == land.space
        assert Config(2, 4) in order


def test_structured_search_depends_on_what_was_measured_not_on_the_order(land: Landscape) -> None:
    history = [Observation(c, land.score(c)) for c in drive(Structured(), land, budget=7)]
    shuffled = history[:]
    random.Random(1).shuffle(shuffled)
    assert Structured().propose(land.space, history) == Structured().propose(land.space, shuffled)


def _family(peak_gpus: int, peak_batch: int, scale: float, model: str, hardware: str = "a100") -> Landscape:
    """A landscape peaking at (peak_gpus, peak_batch), lower the further a GPU count is from it."""
    return synthetic(
        {g: (peak_batch, scale * (1 - 0.1 * abs(math.log2(g / peak_gpus)))) for g in GPUS},
        {1: 256},
        hardware=hardware,
        model=model,
    )


def test_leave_model_out_prior_holds_no_landscape_of_the_searched_model_nor_another_engine() -> None:
    lands = [
        synthetic({g: (16, 10.0 * g) for g in GPUS}, {}, hardware=hw, model=m, engine=e)
        for m in ("a", "b", "c")
        for e in ("hf", "vllm")
        for hw in ("a100", "v100")
    ]
    for land in lands:
        prior = leave_model_out(lands, land)
        assert land.model not in prior.models
        assert prior.models == {"a", "b", "c"} - {land.model}
        assert {s.engine for s in prior.surfaces} == {land.engine}
        assert len(prior.surfaces) == 4 and prior.hardware == land.hardware  # two models x two GPUs
        assert "leave-one-model-out" in prior.provenance


def test_a_prior_of_similar_landscapes_leads_to_the_optimum_at_once() -> None:
    refs = [_family(2, 32, 50.0 + 10 * i, f"ref{i}") for i in range(4)]
    land = _family(2, 32, 123.0, "new", hardware="v100")
    prior = Prior.learn(refs, "hf", "v100")
    assert drive(Structured(prior=prior), land, budget=1) == [Config(2, 32)]
    # References of another engine are not a prior for this one: the search is the prior-free one.
    other = Prior.learn(refs, "vllm", "v100")
    assert not other.surfaces
    assert drive(Structured(prior=other), land) == drive(Structured(), land)


def test_a_misleading_prior_still_finds_an_irregular_optimum_and_tries_every_point() -> None:
    # References peak at 8 GPUs, batch 512; the searched landscape is the Wizardcoder-33b-like one
    # (OOM at batch 1 on 2 GPUs yet fine at 4): the prior must not hide it.
    refs = [_family(8, 512, 100.0 + i, f"ref{i}") for i in range(3)]
    land = synthetic({1: (16, 5.0), 2: (4, 9.0), 4: (16, 6.0), 8: (16, 5.5)}, {1: 32, 4: 64, 8: 64})
    land.points[Config(2, 1)] = Point("oom", math.nan)
    land.points[Config(2, 8)] = Point("oom", math.nan)
    land.points[Config(2, 4)] = Point("ok", 20.0)
    searcher = Structured(prior=Prior.learn(refs, "hf", "a100"))
    order = drive(searcher, land)
    assert sorted(order) == land.space
    history = [Observation(c, land.score(c)) for c in order[:9]]
    shuffled = history[:]
    random.Random(2).shuffle(shuffled)
    assert searcher.propose(land.space, history) == searcher.propose(land.space, shuffled)


def test_only_ours_plus_prior_takes_a_prior(land: Landscape) -> None:
    prior = Prior.learn([land], "hf", "a100")
    with pytest.raises(InputError, match="requires a prior"):
        make("ours+prior", 0, BATCHES, GPUS)
    with pytest.raises(InputError, match="takes no prior"):
        make("ours", 0, BATCHES, GPUS, prior=prior)
    assert make("ours+prior", 0, BATCHES, GPUS, prior=prior).name == "ours+prior"


def test_tpe_proposals_replay_the_history_deterministically_and_are_new(land: Landscape) -> None:
    tpe = TPE(BATCHES, GPUS, seed=5)
    history = [Observation(c, land.score(c)) for c in land.space[:6]]
    first = tpe.propose(land.space, history)
    assert first == tpe.propose(land.space, history)
    assert first in land.points and first not in {o.config for o in history}


def test_failed_trial_cost_is_estimated_and_a_success_costs_gpus_times_tokens_over_throughput(land: Landscape) -> None:
    assert land.gpu_seconds(Config(2, 32)) == pytest.approx(2 * 1033 * 5 / 70.0)
    cheap_failure = land.gpu_seconds(Config(2, 128))
    assert 0 < cheap_failure == pytest.approx(2 * 128 * 5 / 70.0)


def test_replay_carries_the_next_best_when_the_old_best_fails_and_scores_the_found_gain() -> None:
    old = synthetic({1: (16, 50.0), 2: (64, 90.0), 4: (32, 60.0), 8: (32, 40.0)}, {}, hardware="v100")
    new = synthetic({1: (16, 80.0), 2: (32, 70.0), 4: (32, 60.0), 8: (64, 40.0)}, {2: 64}, hardware="a100")
    config, value = rp.transferred(old, new, "partial")
    assert config == Config(2, 32) and value == pytest.approx(70.0)  # (2, 64) is OOM on the new GPU
    rows = rp.replay([old, new], repetitions=2)
    up = rows[rows["direction"] == "upgrade"]
    assert list(up["seed"]) == [0, 1]
    assert set(up["found_config"]) == {"g1_b16"}
    assert up["improvement_pct"].tolist() == pytest.approx([(80 - 70) / 70 * 100] * 2)


def test_the_study_space_cannot_reach_batch_1028() -> None:
    new = synthetic({g: (1028, 100.0 + g) for g in GPUS}, {}, hardware="a100")
    old = synthetic({g: (1028, 50.0 + g) for g in GPUS}, {}, hardware="v100")
    measured = rp.replay([old, new], repetitions=1, space="measured")
    study = rp.replay([old, new], repetitions=1, space="study")
    assert measured.set_index("direction").loc["upgrade", "found_config"] == "g8_b1028"
    assert study.set_index("direction").loc["upgrade", "improvement_pct"] < 0


def test_cli_replay_and_benchmark_write_their_outputs(tmp_path, land: Landscape) -> None:
    rows = []
    for hw, scale in (("a100", 1.0), ("v100", 0.6)):
        for (g, b), p in land.points.items():
            rows.append(
                {
                    "hardware": hw,
                    "engine": "hf",
                    "model": "m",
                    "n_gpus": g,
                    "batch_size": b,
                    "max_new_tokens": 5,
                    "status": p.status,
                    "throughput": p.throughput * scale,
                }
            )
    table = tmp_path / "table.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    assert (
        main(["hpo", "replay", str(table), "-o", str(tmp_path / "r"), "--repetitions", "2", "--evaluations", "30"]) == 0
    )
    out = pd.read_csv(tmp_path / "r" / "hpo_replay.csv")
    assert list(out.columns) == rp.COLUMNS and len(out) == 4
    assert json.loads((tmp_path / "r" / "hpo_summary.json").read_text())["settings"]["seeds"] == [0, 1]
    assert (tmp_path / "r" / "hpo_violin.pdf").stat().st_size > 0
    assert main(["hpo", "benchmark", str(table), "-o", str(tmp_path / "b"), "--seeds", "2"]) == 0
    result = json.loads((tmp_path / "b" / "hpo_benchmark.json").read_text())
    assert set(result["methods"]) == {"tpe", "random", "grid", "ours", "ours+prior"}
    assert all(m["hit_rate"] == 1.0 for m in result["methods"].values())
    assert "leave-one-model-out" in result["prior"]["ours+prior"]


def test_cli_rejects_a_table_without_the_max_new_tokens_asked_for(tmp_path, land: Landscape, capsys) -> None:
    table = tmp_path / "t.csv"
    pd.DataFrame(
        [
            {
                "hardware": "a100",
                "engine": "hf",
                "model": "m",
                "n_gpus": 1,
                "batch_size": 1,
                "max_new_tokens": 10,
                "status": "ok",
                "throughput": 1.0,
            }
        ]
    ).to_csv(table, index=False)
    assert main(["hpo", "benchmark", str(table), "-o", str(tmp_path / "b")]) == 2
    assert "max_new_tokens" in capsys.readouterr().err


@pytest.fixture(scope="module")
def published() -> list[Landscape]:
    if not ALLDATA.exists():
        pytest.skip(f"published data not found at {ALLDATA}")
    from infpop_analysis.published import import_published

    return landscapes(import_published(ALLDATA))


def test_replay_reproduces_the_papers_hf_numbers(published: list[Landscape]) -> None:
    """The paper's RQ5: HF upgrade "median 6.4% (avg 9.16%)", downgrade "median 5.61% (average 13.7%)".

    6.4 is the median of per-model medians; 9.16 is their mean without the one model above 300 %
    (the violin plot's cut; the study's own JSON has mean 28.36 with it); 13.7 is the mean of
    per-model medians. Five repetitions instead of ten keep this test short; the medians barely move.
    """
    summary = rp.summarize(rp.replay(published, engines=["hf"], repetitions=5))
    up, down = summary["hf_upgrade"], summary["hf_downgrade"]
    assert up["median_of_medians"] == pytest.approx(6.40, abs=0.3)
    assert up["mean_of_medians_below_300"] == pytest.approx(9.16, abs=1.0)
    assert down["mean_of_medians"] == pytest.approx(13.7, abs=1.0)
    assert down["median_of_medians"] == pytest.approx(5.61, abs=1.0)


def test_structured_search_beats_tpe_and_grid_on_the_published_landscapes(published: list[Landscape]) -> None:
    """Issue 5's targets, for ``ours+prior`` (prior learned leave-one-model-out), in the same run as TPE."""
    summary = bm.summarize(bm.benchmark(published, seeds=range(3)))
    m = summary["methods"]
    for ours in ("ours", "ours+prior"):
        assert m[ours]["hit_rate"] == 1.0
        assert m[ours]["median_evaluations"] <= 6
        assert m[ours]["median_evaluations"] < m["tpe"]["median_evaluations"]
        assert m[ours]["median_gpu_seconds"] <= m["grid"]["median_gpu_seconds"] / 4
    assert m["ours+prior"]["median_evaluations"] <= m["tpe"]["median_evaluations"] / 3
