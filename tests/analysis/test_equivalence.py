"""Output equivalence: fingerprints of the generated tokens, and equivalence.csv from them."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from infpop.cli import main
from infpop.engines.hf import HFPipelineEngine
from infpop.fingerprints import HEAD, by_prompt, fingerprint
from infpop.manifest import load_manifest
from infpop.plan import GroupSpec, plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.results import CorruptResult, read_result
from infpop.trial import run_group
from infpop_analysis.equivalence import equivalence, parse
from infpop_analysis.report import equivalence as equivalence_section
from infpop_analysis.report.sources import Sources
from infpop_analysis.summaries import config_summaries
from infpop_analysis.table import aggregate, config_axes, conform


def test_same_ids_same_fingerprint_and_any_changed_id_another() -> None:
    ids = list(range(100, 140))
    assert fingerprint(ids) == fingerprint(tuple(ids))
    digest, head = fingerprint(ids).split(":")
    assert head == ",".join(map(str, ids[:HEAD]))
    for i in range(len(ids)):
        changed = ids[:i] + [ids[i] + 1] + ids[i + 1 :]
        assert fingerprint(changed).split(":")[0] != digest, f"a change at token {i} went unseen"
    assert fingerprint(ids[:-1]).split(":")[0] != digest, "a shorter output is another output"


def test_a_prompt_sent_twice_counts_its_first_request_and_an_unserved_one_is_none() -> None:
    assert by_prompt(3, [(1, [5, 6]), (1, [7]), (0, [1])]) == [fingerprint([1]), fingerprint([5, 6]), None]


def _trial(engine: str, n_gpus: int, batch: int, outputs: list[list[int]] | None, rep: int = 0) -> dict:
    cell = None if outputs is None else " ".join(fingerprint(ids) for ids in outputs)
    key = dict(hardware="cpu", engine=engine, model="m", n_gpus=n_gpus, batch_size=batch, max_new_tokens=20)
    return key | dict(dtype="bfloat16", workload="w", repetition=rep, outputs=cell, status="ok", throughput=1.0,
                      trial_id=f"{engine}-g{n_gpus}-b{batch}-r{rep}")  # fmt: skip


REF = [list(range(20)), list(range(20, 40)), list(range(40, 60)), list(range(60, 80))]


def _diverge(prompt: int, at: int) -> list[list[int]]:
    out = [list(ids) for ids in REF]
    out[prompt][at] = 9999
    return out


def test_the_reference_is_the_fewest_gpus_at_batch_1_and_divergences_are_located() -> None:
    table = conform(
        pd.DataFrame(
            [
                _trial("hf", 2, 8, _diverge(0, 3)),
                _trial("hf", 2, 1, REF),
                _trial("hf", 1, 8, _diverge(1, HEAD + 2)),  # only after the head: not located
                _trial("hf", 1, 1, REF),
                _trial("hf", 1, 1, _diverge(2, 5), rep=1),  # the reference's own repetition
                _trial("vllm", 1, 4, _diverge(3, 0)),
                _trial("vllm", 1, 2, _diverge(3, 1)),
                _trial("vllm", 1, 1, None),  # not measured: never the reference, no shares
            ]
        )
    )
    eq = equivalence(table).set_index(["against", "engine", "n_gpus", "batch_size"]).sort_index()
    same = eq.loc["same engine"]
    assert set(same.loc["hf", "reference_trial"]) == {"hf-g1-b1-r0"}
    assert set(same.loc["vllm", "reference_trial"]) == {"vllm-g1-b2-r0"}
    assert same.loc[("hf", 2, 1), "identical"] == 1.0
    row = same.loc[("hf", 2, 8)]
    assert (row["identical"], row["identical_head"], row["first_divergence_mean"]) == (0.75, 0.75, 3)
    row = same.loc[("hf", 1, 8)]
    assert (row["identical"], row["identical_head"], row["diverged_after_head"]) == (0.75, 1.0, 1)
    assert pd.isna(row["first_divergence_mean"])
    row = same.loc[("hf", 1, 1)]
    assert (row["trials"], row["prompts"], row["first_divergence_mean"]) == (1, 4, 5), "repetition 1 against 0"
    assert same.loc[("vllm", 1, 4), "first_divergence_mean"] == 0
    assert same.loc[("vllm", 1, 1), "prompts"] == 0 and pd.isna(same.loc[("vllm", 1, 1), "identical"])
    across = eq.loc["first engine"]
    assert list(across.index) == [("vllm", 1, 2)]
    assert across["reference_trial"].iloc[0] == "hf-g1-b1-r0" and across["identical"].iloc[0] == 0.75
    assert across["first_divergence_mean"].iloc[0] == 1


def test_a_missing_axis_value_is_never_compared_with_a_present_one() -> None:
    """A record from before ``batching`` was kept is a configuration of its own beside the same
    trial shape with it, and comparing the two never asks ``"static" == NA`` (which no ``if`` may see)."""
    old = _trial("hf", 1, 4, _diverge(0, 2), rep=1)
    rows = [_trial("hf", 1, 1, REF) | {"batching": "static"}, _trial("hf", 1, 4, REF) | {"batching": "static"}, old]
    eq = equivalence(conform(pd.DataFrame(rows)))
    assert eq["batch_size"].tolist() == [1, 4, 4] and eq["batching"].isna().tolist() == [False, False, True]
    assert eq["identical"].tolist()[1:] == [1.0, 0.75], "each compared with the reference on its own"


def test_a_trial_that_served_no_prompt_is_never_the_reference() -> None:
    failed = _trial("hf", 1, 1, None) | {"outputs": "- - - -", "status": "timeout"}
    eq = equivalence(conform(pd.DataFrame([failed, _trial("hf", 1, 2, REF), _trial("hf", 1, 4, _diverge(0, 2))])))
    assert set(eq["reference_trial"]) == {"hf-g1-b2-r0"}
    assert eq.set_index("batch_size")["prompts"].to_dict() == {1: 0, 2: 0, 4: 4}


def test_a_table_without_fingerprints_gives_an_empty_table() -> None:
    eq = equivalence(conform(pd.DataFrame([_trial("hf", 1, 1, None)])))
    assert eq.empty and "identical" in eq.columns


def _group(manifest: Path) -> GroupSpec:
    (group,) = plan(load_manifest(manifest), "local", EMBEDDED_DEFAULT.partitions["local"])
    return group


class NoIds(HFPipelineEngine):
    """The real HF engine reporting no token ids: stands in for an engine that cannot tell them."""

    def generate(self, prompts, batch_size, max_new_tokens):
        return replace(super().generate(prompts, batch_size, max_new_tokens), token_ids=None)


def test_an_engine_without_token_ids_records_outputs_as_not_measured(write_manifest, humaneval_path: Path) -> None:
    group = _group(
        write_manifest(batch_sizes=[2], max_new_tokens=[2], workload={"path": str(humaneval_path), "limit": 4})
    )
    t = group.first
    (result,) = run_group(group, lambda g: NoIds(t.model, model_path=g.model_path, n_gpus=1, dtype=t.dtype, options={}))
    assert result.status == "ok" and result.outputs is None
    assert "token ids" in result.unmeasured["outputs"]


class Paced(HFPipelineEngine):
    """The real HF engine, each batch taking at least 0.25 s: a steady pace, as a GPU's usually
    is, so that a configuration reaches the target at ``min`` whatever the load of this shared
    machine does to the tiny model's compute time (a tenth of a second to a second and more)."""

    def generate(self, prompts, batch_size, max_new_tokens):
        t0 = time.perf_counter()
        out = super().generate(prompts, batch_size, max_new_tokens)
        time.sleep(max(0.0, 0.25 - (time.perf_counter() - t0)))
        return out


def test_a_repetition_skipped_as_not_needed_is_a_repetition_of_its_configuration(
    write_manifest, humaneval_path: Path
) -> None:
    """Adaptive repetitions on the real HF engine: each configuration stops at ``min`` (five
    paced values reach a target of 99% of the mean unless their CV exceeds 0.8) and its
    repetition not needed is recorded ``skipped_enough`` with the job's engine settings, so the
    table gives it the configuration columns of its runs, and configs.csv and equivalence.csv
    see one configuration per batch size, with no reader filling in what the record lacked."""
    manifest = write_manifest(
        batch_sizes=[1, 2], max_new_tokens=[2], workload={"path": str(humaneval_path), "limit": 2},
        repetitions={"min": 5, "max": 6, "target_rel_halfwidth": 0.99},
    )  # fmt: skip
    group = _group(manifest)
    t = group.first
    run_group(group, lambda g: Paced(t.model, model_path=g.model_path, n_gpus=1, dtype=t.dtype, options={}))
    table, corrupt = aggregate(group.output_root)
    assert not corrupt
    assert table["status"].tolist() == (["ok"] * 5 + ["skipped_enough"]) * 2, table[["batch_size", "wall_s"]]
    columns = [*config_axes(table), "deterministic_on"]
    assert "batching" in columns
    skipped, ran = table[table["status"] == "skipped_enough"], table[table["status"] == "ok"]
    expected = ran.drop_duplicates("batch_size")[columns].astype(object).to_dict("records")
    assert skipped[columns].astype(object).to_dict("records") == expected
    assert skipped["batching"].tolist() == ["static", "static"]

    configs = config_summaries(table)
    assert configs["batch_size"].tolist() == [1, 2] and configs["n"].tolist() == [5, 5]
    assert configs["repetitions"].tolist() == [5, 5] and configs["stop_reason"].tolist() == ["target"] * 2
    eq = equivalence(table)
    assert eq["batch_size"].tolist() == [1, 2] and eq["trials"].tolist() == [4, 5], eq


def test_old_results_stay_readable_and_a_malformed_fingerprint_is_named(write_manifest, tmp_path: Path) -> None:
    group = _group(write_manifest(batch_sizes=[2], max_new_tokens=[2]))
    (result,) = run_group(group)
    path = next((tmp_path / "runs").rglob("*.json"))
    data = json.loads(path.read_text())
    assert data["outputs"] == result.outputs and len(result.outputs) == result.n_prompts
    del data["outputs"]
    path.write_text(json.dumps(data))
    assert read_result(path).outputs is None
    data["outputs"] = ["not a fingerprint"]
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptResult, match=path.name):
        read_result(path)


def test_bf16_with_padding_changes_outputs_with_batch_size_and_float32_does_not(
    write_manifest, humaneval_path: Path, tmp_path: Path
) -> None:
    """The real case, on CPU: the tiny model's greedy decode, 8 prompts, 16 new tokens, batch 1 and
    8 with left padding. In bfloat16 the padded batch's arithmetic changes some argmaxes; in
    float32 it does not. equivalence.csv from ``infpop stats`` must tell the two apart, with the
    shares the result files' fingerprints give."""
    for dtype in ("float32", "bfloat16"):
        manifest = write_manifest(
            f"{dtype}.yaml", study=dtype, dtype=dtype, batch_sizes=[1, 8], max_new_tokens=[16],
            workload={"path": str(humaneval_path), "limit": 8},
        )  # fmt: skip
        assert all(r.status == "ok" and r.outputs for r in run_group(_group(manifest)))
    assert main(["aggregate", str(tmp_path / "runs"), "-o", str(tmp_path / "table.parquet")]) == 0
    assert main(["stats", str(tmp_path / "table.parquet"), "-o", str(tmp_path / "stats")]) == 0
    eq = pd.read_csv(tmp_path / "stats" / "equivalence.csv").set_index(["dtype", "batch_size"])

    def outputs(study: str, batch: int) -> list[str]:
        (path,) = (tmp_path / "runs" / study).rglob(f"g1_b{batch}_*.json")
        return read_result(path).outputs

    assert eq.loc[("float32", 8), "identical"] == 1.0
    assert outputs("float32", 1) == outputs("float32", 8)
    ref, b8 = outputs("bfloat16", 1), outputs("bfloat16", 8)
    assert eq.loc[("bfloat16", 8), "identical"] == sum(a == b for a, b in zip(ref, b8)) / 8 < 1.0
    assert eq.loc[("bfloat16", 8), "reference_batch_size"] == 1 and eq.loc[("bfloat16", 8), "prompts"] == 8
    heads = [(p[1], q[1]) for p, q in zip(parse(" ".join(ref)), parse(" ".join(b8))) if p[1] != q[1]]
    first = [next(i for i, (x, y) in enumerate(zip(a, b)) if x != y) for a, b in heads]
    assert eq.loc[("bfloat16", 8), "first_divergence_mean"] == pytest.approx(sum(first) / len(first))

    # The report puts it beside throughput and flags a fastest configuration that says something else.
    table = pd.read_parquet(tmp_path / "table.parquet")
    page = equivalence_section.render(table, Sources.beside(tmp_path / "table.parquet", stats=tmp_path / "stats"), 16)
    configs = pd.read_csv(tmp_path / "stats" / "configs.csv").set_index(["dtype", "batch_size"])
    fastest = {d: configs.loc[d, "mean"].idxmax() for d in ("float32", "bfloat16")}
    flagged = [d for d in fastest if eq.loc[(d, fastest[d]), "identical"] < 1]
    assert page.count("generates different text from its reference") == len(flagged)
    assert "bfloat16" in page and "identical_head" in page


def test_hf_online_fingerprints_each_served_prompt_from_its_first_request(write_manifest, humaneval_path: Path) -> None:
    """HF's dynamic batches (online) in float32 give each prompt what offline batch 1 gives it."""
    workload = {"path": str(humaneval_path), "limit": 6}
    (offline,) = run_group(_group(write_manifest("off.yaml", batch_sizes=[1], max_new_tokens=[4], workload=workload)))
    scenario = {"kind": "online", "request_rates": [30], "duration_s": 1.0, "seed": 1, "min_duration_s": 0}
    online = write_manifest("on.yaml", batch_sizes=[4], max_new_tokens=[4], workload=workload, scenario=scenario)
    (result,) = run_group(_group(online))
    assert result.status == "ok" and result.batching == "dynamic"
    served = {t.prompt_index for t in result.online.requests}
    assert result.online.n_requests > len(served) == 6, "prompts were sent more than once"
    assert result.outputs == offline.outputs


@pytest.mark.parametrize("cell", ["zz:1,2", "0123456789abcdef:1,x", "<script>alert(1)</script>", ":::"])
def test_a_malformed_fingerprint_in_a_table_is_named_and_nothing_is_written(tmp_path: Path, cell: str) -> None:
    """A hand-edited table: `infpop stats` names the trial and the value, exits 2, writes no csv."""
    rows = [
        dict(study="s", hardware="cpu", engine="hf", model="m", n_gpus=1, batch_size=b, max_new_tokens=4,
             repetition=0, status="ok", throughput=10.0 + b, trial_id=f"t{b}", outputs=f"0123456789abcdef:1 {cell}")
        for b in (1, 2)
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "table.csv", index=False)
    assert main(["stats", str(tmp_path / "table.csv"), "-o", str(tmp_path / "stats")]) == 2
    assert not list((tmp_path / "stats").glob("*.csv"))
