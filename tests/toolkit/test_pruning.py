"""OOM pruning as the README states it: a rerun without pruning runs what pruning skipped, and an
online OOM at one request rate prunes that batch size at the rates not yet run.

A GPU cannot run out of memory on CPU: the real HF engine gets an injected CUDA OOM at batch
sizes from ``limit`` up (~1 s per test on the tiny model).
"""

from __future__ import annotations

from pathlib import Path

import torch
from infpop.engines.hf import HFPipelineEngine
from infpop.manifest import load_manifest
from infpop.plan import GroupSpec, plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.sweep import count_done, pending_groups
from infpop.trial import run_group

LOCAL = EMBEDDED_DEFAULT.partitions["local"]


class OOMFrom(HFPipelineEngine):
    """The real HF engine, with a CUDA OOM injected at batch sizes >= ``limit``."""

    limit = 4

    def _check(self, batch_size: int) -> None:
        if batch_size >= self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

    def generate(self, prompts, batch_size, max_new_tokens):
        self._check(batch_size)
        return super().generate(prompts, batch_size, max_new_tokens)

    def generate_timed(self, prompts, batch_size, max_new_tokens):
        self._check(batch_size)
        return super().generate_timed(prompts, batch_size, max_new_tokens)


def _oom_engine(group: GroupSpec) -> OOMFrom:
    t = group.first
    return OOMFrom(t.model, model_path=group.model_path, n_gpus=1, dtype=t.dtype, options={})


def _group(manifest: Path, **kw) -> GroupSpec:
    (group,) = plan(load_manifest(manifest), "local", LOCAL, **kw)
    return group


def test_a_rerun_without_pruning_runs_the_trials_pruning_skipped(write_manifest) -> None:
    manifest = write_manifest(batch_sizes=[2, 4, 8, 16])
    pruned = _group(manifest)
    assert [r.status for r in run_group(pruned, _oom_engine)] == ["ok", "oom", "skipped_oom", "skipped_oom"]
    assert pending_groups([pruned]) == [] and count_done([pruned]) == 4, "with pruning, the study is complete"

    unpruned = _group(manifest, prune_oom=False)
    assert count_done([unpruned]) == 2 and [n for _, n in pending_groups([unpruned])] == [2]
    rerun = run_group(unpruned, _oom_engine)
    assert [(r.trial.batch_size, r.status) for r in rerun] == [(8, "oom"), (16, "oom")]
    assert "out of memory" in rerun[0].error, "the trial really ran"
    assert run_group(unpruned, _oom_engine) == [], "and is done for the next rerun"


def test_an_online_oom_prunes_that_batch_size_at_the_other_rates(write_manifest) -> None:
    scenario = {"kind": "online", "request_rates": [20, 40], "duration_s": 0.2, "min_duration_s": 0.1}
    group = _group(write_manifest(batch_sizes=[2, 4, 8], max_new_tokens=[2], scenario=scenario))
    got = {(r.trial.batch_size, r.trial.request_rate): r for r in run_group(group, _oom_engine)}
    assert {k: r.status for k, r in got.items()} == {
        (2, 20): "ok",
        (2, 40): "ok",
        (4, 20): "oom",
        (4, 40): "skipped_oom",  # the same batch size at the next rate: the server's limit
        (8, 20): "skipped_oom",
        (8, 40): "skipped_oom",
    }
    assert got[(4, 40)].error == "OOM at batch 4 in this series"
