"""The ``deterministic`` axis: HF's deterministic algorithms run for real on the tiny model and
each result records what torch read back; the plan refuses the mode where it cannot be on
(vLLM before 0.11.1, GPUs below compute capability 8.0, vLLM's CPU build), naming the field, the
value, the engine and the partition; on and off never share a job, whose process the mode
switches as a whole. (vLLM's mode cannot run here: its CPU build lacks it, which is refused.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from infpop.engines.hf import HFPipelineEngine
from infpop.errors import InputError
from infpop.manifest import load_manifest
from infpop.plan import GroupSpec, plan
from infpop.profile import EMBEDDED_DEFAULT, PartitionProfile
from infpop.trial import run_group
from infpop_analysis.equivalence import equivalence
from infpop_analysis.table import aggregate, config_axes
from minimal_manifest import write_manifest_file

LOCAL = EMBEDDED_DEFAULT.partitions["local"]
A100 = PartitionProfile(
    executor="slurm", hardware="a100", slurm_partition="a", gpu_type="a100", gpus_per_node=8, compute_capability="8.0"
)
#: The V100 partition as a site declares it: its GPUs' architecture and the images built for it.
V100 = PartitionProfile(
    executor="slurm",
    hardware="v100",
    slurm_partition="v",
    gpu_type="v100",
    gpus_per_node=4,
    compute_capability="7.0",
    images={"hf": "/img/infpop-hf-sm70.sif", "vllm": "/img/infpop-vllm-sm70.sif"},
)
MIB = 1 << 20


def _manifest(tmp_path: Path, **fields: object) -> Path:
    return write_manifest_file(tmp_path / "m.yaml", workload={"path": "p.jsonl"}, **fields)


def _refused(path: Path, partition: str, profile: PartitionProfile, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        plan(load_manifest(path), partition, profile)


def test_hf_deterministic_trials_run_in_their_own_job_and_record_what_torch_read(
    write_manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    path = write_manifest(deterministic=[True, False], batch_sizes=[1, 4], max_new_tokens=[3])
    groups = plan(load_manifest(path), "local", LOCAL)
    assert [g.first.deterministic for g in groups] == [False, True], "one job each: the mode is process-wide"
    assert [g.group_id.endswith("_det") for g in groups] == [False, True]
    for group in groups:
        assert {t.deterministic for t in group.trials} == {group.first.deterministic}
        for result in run_group(group):
            assert result.status == "ok", result.error
            assert result.deterministic is group.first.deterministic, "read back from torch after load"
            assert result.trial.trial_id.endswith("_det") is group.first.deterministic
        assert not torch.are_deterministic_algorithms_enabled(), "closing the engine switched it off again"
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ, "and put the environment back"
    table, _ = aggregate(groups[0].output_root)
    assert "deterministic" in config_axes(table), "an axis: on and off are different configurations"
    assert table.groupby("deterministic")["deterministic_on"].agg(set).to_dict() == {False: {False}, True: {True}}
    # Outputs are compared like with like: a configuration with the mode on against a reference with it on.
    eq = equivalence(table)
    assert sorted(eq["deterministic"]) == [False, False, True, True]
    assert [ref.endswith("_det") for ref in eq["reference_trial"]] == [bool(d) for d in eq["deterministic"]]


def test_an_engine_that_did_not_switch_the_mode_on_records_an_error(write_manifest) -> None:
    """An engine factory that drops the trial's setting (a plugin that forgot it): torch reads the
    mode back off, and the trial is not recorded as deterministic."""
    (group,) = plan(load_manifest(write_manifest(deterministic=[True], batch_sizes=[2])), "local", LOCAL)

    def forgetful(g: GroupSpec) -> HFPipelineEngine:
        t = g.first
        return HFPipelineEngine(t.model, model_path=g.model_path, n_gpus=1, dtype=t.dtype, options={})

    (result,) = run_group(group, forgetful)
    assert result.status == "error" and result.deterministic is False
    assert result.error == "deterministic is true, yet the engine reads its mode back as false"


def test_vllm_runs_with_the_axis_not_the_environment(write_manifest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job's environment that switches batch invariance on does not leak into a trial with the
    axis off: vLLM reads the axis's value (recorded), and the environment is put back after."""
    monkeypatch.setenv("VLLM_BATCH_INVARIANT", "1")
    path = write_manifest(
        engines=["vllm"],
        engine_options={"vllm": {"max_model_len": 512, "enforce_eager": True}},
        kv_cache_bytes=[64 * MIB],
        batch_sizes=[2],
    )
    (group,) = plan(load_manifest(path), "local", LOCAL)
    (result,) = run_group(group)
    assert result.status == "ok", result.error
    assert result.trial.deterministic is False and result.deterministic is False
    assert os.environ["VLLM_BATCH_INVARIANT"] == "1"


def test_on_and_off_land_in_different_vllm_jobs(tmp_path: Path) -> None:
    path = _manifest(tmp_path, engines=["hf", "vllm"], deterministic=[False, True], batch_sizes=[1, 8])
    groups = plan(load_manifest(path), "a100", A100)
    jobs = {(g.first.engine, g.first.deterministic): g.job_name for g in groups}
    assert len(groups) == len(jobs) == 4
    assert jobs[("vllm", True)] == jobs[("vllm", False)] + "_det"
    assert len({g.first.group_key for g in groups}) == 4


def test_vllm_without_batch_invariance_is_refused(tmp_path: Path) -> None:
    path = _manifest(tmp_path, engines=["hf", "vllm"], deterministic=[False, True])
    where = r"m\.yaml: deterministic: true: engine 'vllm' on partition '{}'"
    # V100: the GPUs' architecture, from the profile or from the image's lock.
    _refused(path, "v100", V100, where.format("v100") + r": its batch-invariant mode .* needs compute capability 8\.0 or newer, but the partition's GPUs have 7\.0")  # fmt: skip
    no_cc = V100.model_copy(update={"compute_capability": None})
    _refused(path, "v100", no_cc, where.format("v100") + r".* needs compute capability 8\.0 .* have 7\.0")
    # A GPU that has it, with the V100 image's vLLM, which has not.
    sm80 = V100.model_copy(update={"compute_capability": "8.0"})
    _refused(path, "sm80", sm80, where.format("sm80") + r": vllm 0\.10\.2 \(pinned by containers/vllm-sm70\.lock\.toml\) has no batch-invariant mode .* it came in 0\.11\.1")  # fmt: skip
    # vLLM's CPU build: its batch-invariant kernels are Triton's, which it lacks.
    cpu = _manifest(tmp_path, engines=["vllm"], deterministic=[True], kv_cache_bytes=[64 * MIB])
    _refused(cpu, "local", LOCAL, where.format("local") + r" runs on CPU, where its batch-invariant mode")
    # HF's deterministic algorithms run on each of them.
    hf = _manifest(tmp_path, engines=["hf"], deterministic=[True])
    assert plan(load_manifest(hf), "v100", V100) and plan(load_manifest(hf), "local", LOCAL)


@pytest.mark.parametrize("value", [["yes"], [1], [None], [], [True, True], "true", [float("nan")], ["<b>"]])
def test_garbage_values_are_refused_by_name(tmp_path: Path, value: object) -> None:
    with pytest.raises(InputError, match=r"m\.yaml: invalid manifest .*\n.*deterministic"):
        load_manifest(_manifest(tmp_path, deterministic=value))
