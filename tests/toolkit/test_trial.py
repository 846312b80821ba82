"""The trial runner on a real tiny model: exact token counts, OOM as an outcome, pruning, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from infpop.engines.hf import HFPipelineEngine
from infpop.manifest import load_manifest
from infpop.plan import GroupSpec, plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.results import ResultStore
from infpop.trial import default_engine, run_group
from infpop_analysis.table import aggregate


def _group(manifest: Path, **kw) -> GroupSpec:
    (group,) = plan(load_manifest(manifest), "local", EMBEDDED_DEFAULT.partitions["local"], **kw)
    return group


class OOMAbove(HFPipelineEngine):
    """The real HF engine with an injected CUDA OOM at batch sizes >= ``limit``.

    Stands in for a GPU running out of memory, which cannot happen on CPU.
    """

    limit = 4

    def generate(self, prompts, batch_size, max_new_tokens):
        if batch_size >= self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return super().generate(prompts, batch_size, max_new_tokens)


def _oom_engine(group: GroupSpec) -> OOMAbove:
    t = group.first
    return OOMAbove(t.model, model_path=group.model_path, n_gpus=1, dtype=t.dtype, options={})


def test_token_counts_are_prompts_times_new_tokens(write_manifest) -> None:
    group = _group(write_manifest(batch_sizes=[1, 5], max_new_tokens=[2, 7]))
    results = run_group(group)
    assert len(results) == 4
    for r in results:
        assert r.status == "ok", r.error
        assert r.n_prompts == 12
        assert r.generated_tokens == 12 * r.trial.max_new_tokens
        assert r.prompt_tokens > r.n_prompts
        assert len(r.batch_latencies_s) == -(-12 // r.trial.batch_size)  # ceil: the last batch is partial
        assert r.throughput == pytest.approx(r.generated_tokens / r.wall_s)
        assert r.load_s is not None and r.load_s > 0
        assert r.provenance.gpus == ["cpu"]
        assert r.provenance.versions["transformers"]


def test_oom_is_recorded_and_larger_batches_are_skipped(write_manifest) -> None:
    group = _group(write_manifest(batch_sizes=[1, 2, 4, 8, 16], max_new_tokens=[2, 3]))
    results = {(r.trial.max_new_tokens, r.trial.batch_size): r for r in run_group(group, _oom_engine)}
    for tokens in (2, 3):
        assert [results[(tokens, b)].status for b in (1, 2, 4, 8, 16)] == [
            "ok",
            "ok",
            "oom",
            "skipped_oom",
            "skipped_oom",
        ]
        oom = results[(tokens, 4)]
        assert "out of memory" in oom.error and oom.error.startswith("in warm-up"), "its warm-up batch fails first"
        assert oom.generated_tokens == 0 and oom.throughput is None
        assert results[(tokens, 8)].error == "OOM at batch 4 in this series"


class PagedOOMAbove(OOMAbove):
    """:class:`OOMAbove` reporting after load what an engine with a paged KV cache reports (vLLM:
    its blocks and resolved settings), which the HF engine has none of."""

    def kv_cache_blocks(self) -> int:
        return 64

    def resolved(self) -> dict[str, int]:
        return {"max_num_seqs": 8, "block_size": 16}


def test_trials_recorded_without_running_have_the_engine_settings_of_those_that_ran(write_manifest) -> None:
    """A pruned trial (``skipped_oom``) and one out of memory in its warm-up are recorded with the
    job's engine settings, as its ok trials are: in the table, every row of the job says how its
    engine batched and what it resolved, and a pruned configuration's row is comparable with the
    ones that ran."""
    group = _group(write_manifest(batch_sizes=[1, 4, 8]))
    t = group.first
    run_group(group, lambda g: PagedOOMAbove(t.model, model_path=g.model_path, n_gpus=1, dtype=t.dtype, options={}))
    table, corrupt = aggregate(group.output_root)
    assert not corrupt and table["status"].tolist() == ["ok", "oom", "skipped_oom"]
    settings = ["batching", "deterministic_on", "kv_cache_blocks", "resolved_max_num_seqs", "resolved_block_size"]
    reported = {"kv_cache_blocks": 64, "resolved_max_num_seqs": 8, "resolved_block_size": 16}
    expected = {"batching": "static", "deterministic_on": False} | reported
    assert table[settings].astype(object).to_dict("records") == [expected] * 3


def test_pruning_off_runs_every_batch_as_the_study_did(write_manifest) -> None:
    group = _group(write_manifest(batch_sizes=[2, 4, 8]), prune_oom=False)
    statuses = [r.status for r in run_group(group, _oom_engine)]
    assert statuses == ["ok", "oom", "oom"]


def test_rerun_writes_nothing_and_resumes_missing(write_manifest) -> None:
    group = _group(write_manifest(batch_sizes=[1, 3, 6]))
    store = ResultStore(group.output_root)
    first = run_group(group)
    assert len(first) == 3
    before = {t.trial_id: store.path(t).read_text() for t in group.trials}
    assert run_group(group) == []
    store.path(group.trials[1]).unlink()
    again = run_group(group)
    assert [r.trial.batch_size for r in again] == [3]
    assert store.path(group.trials[0]).read_text() == before[group.trials[0].trial_id]


def test_pruning_survives_a_resume(write_manifest) -> None:
    group = _group(write_manifest(batch_sizes=[1, 4, 8]))
    run_group(group, _oom_engine)
    store = ResultStore(group.output_root)
    store.path(group.trials[2]).unlink()  # the skipped trial, as if the job died before writing it
    (redo,) = run_group(group, default_engine)  # a healthy engine: the OOM on disk still prunes
    assert redo.status == "skipped_oom"


def test_an_engine_error_is_recorded_and_the_group_goes_on(write_manifest) -> None:
    class FailsOnce(HFPipelineEngine):
        def generate(self, prompts, batch_size, max_new_tokens):
            if batch_size == 2:
                raise ValueError("tokenizer exploded")
            return super().generate(prompts, batch_size, max_new_tokens)

    group = _group(write_manifest(batch_sizes=[1, 2, 3]))
    t = group.first
    results = run_group(
        group, lambda g: FailsOnce(t.model, model_path=g.model_path, n_gpus=1, dtype="float32", options={})
    )
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert "ValueError: tokenizer exploded" in results[1].error
    # an error is retried on the next run, an ok is not
    assert [r.trial.batch_size for r in run_group(group)] == [2]


def test_a_model_that_cannot_load_fails_every_trial_with_the_reason(write_manifest, tmp_path: Path) -> None:
    path = write_manifest(models=[{"name": "ghost", "source": str(tmp_path / "no-such-model")}])
    results = run_group(_group(path))
    assert {r.status for r in results} == {"error"}
    assert all("no-such-model" in r.error for r in results)


def test_trial_timeout_keeps_the_partial_throughput(write_manifest) -> None:
    group = _group(write_manifest(batch_sizes=[1], trial_timeout_s=1e-9))
    (r,) = run_group(group)
    assert r.status == "timeout"
    assert r.generated_tokens == 3 and r.throughput > 0
    assert "after 1 of 12 prompts" in r.error
