"""Plan expansion and grouping: deterministic ids, one job per loaded model, batches ascending."""

from __future__ import annotations

from pathlib import Path

import pytest
from infpop.cli import main
from infpop.errors import InputError
from infpop.manifest import load_manifest
from infpop.plan import plan
from infpop.profile import PartitionProfile, load_profile
from minimal_manifest import write_manifest_file

A100 = PartitionProfile(executor="slurm", hardware="a100", slurm_partition="gpu-a100", gpu_type="a100", gpus_per_node=8)


def _manifest(tmp_path: Path, **fields) -> Path:
    grid = {
        "output_root": "runs",
        "models": [{"name": "m1", "source": "org/m1"}, {"name": "m2", "source": "./local-m2"}],
        "gpu_counts": [4, 1],
        "batch_sizes": [16, 1, 4],
        "max_new_tokens": [10, 5],
        "dtype": "float16",
        "workload": {"path": "p.jsonl"},
        "repetitions": 2,
    }
    return write_manifest_file(tmp_path / "m.yaml", **(grid | fields))


def test_expansion_covers_the_grid_once(tmp_path: Path) -> None:
    groups = plan(load_manifest(_manifest(tmp_path)), "a100", A100)
    trials = [t for g in groups for t in g.trials]
    assert len(trials) == 2 * 1 * 2 * 3 * 2 * 2  # models x engines x gpus x batches x tokens x reps
    assert len({t.trial_id for t in trials}) == len(trials)


def test_one_group_per_loaded_model(tmp_path: Path) -> None:
    groups = plan(load_manifest(_manifest(tmp_path, engines=["hf", "vllm"])), "a100", A100)
    keys = [(g.first.model.name, g.first.engine, g.n_gpus) for g in groups]
    assert len(keys) == len(set(keys)) == 2 * 2 * 2
    for g in groups:
        assert {t.group_key for t in g.trials} == {g.first.group_key}


def test_batches_run_ascending_within_each_series(tmp_path: Path) -> None:
    group = plan(load_manifest(_manifest(tmp_path)), "a100", A100)[0]
    order = [(t.repetition, t.max_new_tokens, t.batch_size) for t in group.trials]
    assert order == sorted(order)
    assert [t.batch_size for t in group.trials[:3]] == [1, 4, 16]


def test_trial_paths_are_readable_and_stable(tmp_path: Path) -> None:
    path = _manifest(tmp_path)
    first = plan(load_manifest(path), "a100", A100)
    again = plan(load_manifest(path), "a100", A100)
    assert [t.relpath for g in first for t in g.trials] == [t.relpath for g in again for t in g.trials]
    t = first[0].trials[0]
    assert t.relpath == "s/a100/hf/m1/g1_b1_t5_r0.json"
    assert first[0].group_id == "s/a100/hf/m1/g1"


def test_local_model_path_resolves_and_hub_id_stays(tmp_path: Path) -> None:
    groups = {g.first.model.name: g for g in plan(load_manifest(_manifest(tmp_path)), "a100", A100)}
    assert groups["m1"].model_path == "org/m1"
    assert groups["m2"].model_path == str(tmp_path / "local-m2")
    assert groups["m1"].output_root == str(tmp_path / "runs")


def test_more_gpus_than_a_node_has_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"gpu_counts: 16 GPUs requested, but a node of partition 'a100' has 8"):
        plan(load_manifest(_manifest(tmp_path, gpu_counts=[1, 16])), "a100", A100)


def test_prune_option_reaches_every_group(tmp_path: Path) -> None:
    loaded = load_manifest(_manifest(tmp_path))
    assert all(g.prune_oom for g in plan(loaded, "a100", A100))
    assert not any(g.prune_oom for g in plan(loaded, "a100", A100, prune_oom=False))


def test_unknown_partition_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["plan", str(_manifest(tmp_path)), "--partition", "h100"]) == 2
    assert "partition 'h100' is not in profile 'embedded'" in capsys.readouterr().err


def test_plan_command_counts_and_writes_nothing(tmp_path: Path, capsys) -> None:
    path = _manifest(tmp_path)
    assert main(["plan", str(path), "--partition", "local"]) == 0
    out = capsys.readouterr().out
    assert "48 trials in 4 jobs" in out and "0 done, 48 to run" in out
    assert not (tmp_path / "runs").exists()


def test_default_profile_is_local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFPOP_PROFILE", raising=False)
    profile = load_profile(None)
    assert list(profile.partitions) == ["local"]
    assert profile.partitions["local"].executor == "local"


def test_vllm_offline_holds_every_batch_at_once_without_prefix_caching(tmp_path: Path) -> None:
    """vLLM's own defaults would cap a batch at 256 or 1024 sequences, and cache prefixes."""
    groups = plan(load_manifest(_manifest(tmp_path, engines=["vllm"], batch_sizes=[1, 512])), "a100", A100)
    trials = [t for g in groups for t in g.trials]
    assert {t.engine_options["max_num_seqs"] for t in trials} == {512}, "the group's largest batch"
    assert {t.engine_options["enable_prefix_caching"] for t in trials} == {False}
    assert not any(t.trial_id.endswith("_pc") or "_seqs" in t.trial_id for t in trials), "the study's ids stay"
    both = plan(load_manifest(_manifest(tmp_path, engines=["vllm"], prefix_caching=[True, False])), "a100", A100)
    assert len(both) == 2 * len(groups) and {g.first.prefix_caching for g in both} == {False, True}


def test_a_vllm_cap_below_a_batch_is_refused(tmp_path: Path) -> None:
    path = _manifest(tmp_path, engines=["vllm"], batch_sizes=[4, 512], engine_options={"vllm": {"max_num_seqs": 256}})
    with pytest.raises(InputError, match=r"engine_options\.vllm\.max_num_seqs: 256 .* batch size 512"):
        plan(load_manifest(path), "a100", A100)
