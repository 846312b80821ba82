"""Workload loaders on small files shaped like each dataset's published format, errors that
name the file and the record, synthetic workloads, and reference output lengths end to end."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import pytest
from infpop.errors import InputError
from infpop.manifest import SyntheticSpec, WorkloadSpec, load_manifest, parse_manifest
from infpop.plan import plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.trial import run_group
from infpop.workloads import load_prompts, loader, new_tokens, with_reference_tokens
from infpop.workloads.prompt import Prompt
from minimal_manifest import manifest_text


def _alpaca(path: Path, n: int = 6) -> Path:
    records = [
        {
            "instruction": f"Write {i} words about the sea.",
            "input": "" if i % 2 else f"Style {i}",
            "output": " ".join(["wave"] * (i + 1)),
        }
        for i in range(n)
    ]
    path.write_text(json.dumps(records, indent=1))
    return path


def _dolly(path: Path) -> Path:
    cats = ["closed_qa", "brainstorming", "open_qa", "general_qa", "summarization", "classification"]
    with open(path, "w") as fh:
        for i, cat in enumerate(cats):
            fh.write(
                json.dumps(
                    {
                        "instruction": f"Question {i}?",
                        "context": "Some context." if cat == "closed_qa" else "",
                        "response": f"Answer {i}.",
                        "category": cat,
                    }
                )
                + "\n"
            )
    return path


def _cnn(path: Path) -> Path:
    with gzip.open(path, "wt", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "article", "highlights"])
        for i in range(4):
            w.writerow(
                [f"{i:040x}", f'LONDON (CNN) -- Story {i}.\nIt goes on, with "quotes", commas.', f"Story {i} .\nMore ."]
            )
    return path


def _sharegpt(path: Path) -> Path:
    records = [
        {
            "id": "a",
            "conversations": [
                {"from": "human", "value": "Hi, who are you?"},
                {"from": "gpt", "value": "A model."},
                {"from": "human", "value": "And?"},
                {"from": "gpt", "value": "That is all."},
            ],
        },
        {"id": "b", "conversations": [{"from": "gpt", "value": "Opening line"}, {"from": "human", "value": "ok"}]},
        {"id": "c", "conversations": [{"from": "human", "value": "alone"}]},
        {"id": "d", "conversations": [{"from": "human", "value": "Explain BPE."}, {"from": "gpt", "value": "Merges."}]},
    ]
    path.write_text(json.dumps(records))
    return path


def test_alpaca_joins_instruction_and_input(tmp_path: Path) -> None:
    prompts = loader("alpaca")(_alpaca(tmp_path / "alpaca_data.json"))
    assert len(prompts) == 6
    assert prompts[0] == Prompt(text="Write 0 words about the sea.\nStyle 0", reference_text="wave")
    assert prompts[1].text == "Write 1 words about the sea."


def test_dolly_keeps_the_question_answering_categories(tmp_path: Path) -> None:
    prompts = loader("dolly")(_dolly(tmp_path / "databricks-dolly-15k.jsonl"))
    assert [p.reference_text for p in prompts] == ["Answer 0.", "Answer 2.", "Answer 3."]
    assert prompts[0].text == "Question 0?\nSome context."


def test_cnn_dailymail_reads_multiline_csv_articles(tmp_path: Path) -> None:
    prompts = loader("cnn-dailymail")(_cnn(tmp_path / "test.csv.gz"))
    assert len(prompts) == 4
    assert prompts[3].text == 'LONDON (CNN) -- Story 3.\nIt goes on, with "quotes", commas.'
    assert prompts[3].reference_text == "Story 3 .\nMore ."


def test_sharegpt_takes_the_first_human_and_assistant_turn(tmp_path: Path) -> None:
    prompts = loader("sharegpt")(_sharegpt(tmp_path / "sg.json"))
    assert prompts == [
        Prompt("Hi, who are you?", reference_text="A model."),
        Prompt("Explain BPE.", reference_text="Merges."),
    ]


def test_humaneval_reference_is_the_missing_line(humaneval_path: Path) -> None:
    prompts = loader("humaneval-infilling")(humaneval_path)
    assert all(p.reference_text for p in prompts)


MALFORMED = [
    (
        "alpaca",
        "a.json",
        '[{"instruction": "x", "input": "", "output": "y"}, {"instruction": "x", "input": 3, "output": "y"}]',
        "record 2: field 'input' must be str",
    ),
    ("alpaca", "a.json", '[{"instruction": "x", "input": "", ', "line 1 column"),
    ("alpaca", "a.json", '[{"instruction": "x", "input": "", "output": "y"}, "text"]', "record 2: expected an object"),
    (
        "dolly",
        "d.jsonl",
        '{"instruction": "q", "context": "", "response": "a", "category": "open_qa"}\n{"instruction": "q"}\n',
        "record 2: field 'context' must be str",
    ),
    (
        "dolly",
        "d.jsonl",
        '{"instruction": "q", "context": "", "response": "a", "category": "open_qa"}\nnot json\n',
        "record 2: not valid JSON",
    ),
    (
        "cnn-dailymail",
        "c.csv",
        "id,article,highlights\n1,text,summary\n2,only two\n",
        "record 2 (line 3): the number of fields",
    ),
    ("cnn-dailymail", "c.csv", "id,story,highlights\n1,text,summary\n", "header: column 'article' is missing"),
    (
        "sharegpt",
        "s.json",
        '[{"id": "a", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt"}]}]',
        "record 1 turn 2: field 'value' must be str",
    ),
    ("sharegpt", "s.json", '[{"id": "a", "conversations": "hi"}]', "record 1: field 'conversations' must be list"),
]


@pytest.mark.parametrize("name,filename,text,message", MALFORMED, ids=[f"{m[0]}-{i}" for i, m in enumerate(MALFORMED)])
def test_malformed_files_name_the_file_and_record(
    tmp_path: Path, name: str, filename: str, text: str, message: str
) -> None:
    path = tmp_path / filename
    path.write_text(text)
    with pytest.raises(InputError, match=re.escape(message)) as info:
        loader(name)(path)
    assert str(path) in str(info.value)


SYNTH = {
    "n_prompts": 200,
    "input_tokens": {"kind": "uniform", "min": 4, "max": 9},
    "output_tokens": {"kind": "lognormal", "median": 20, "sigma": 0.5, "min": 2, "max": 60},
}


def test_synthetic_workload_is_seeded_and_within_bounds() -> None:
    spec = WorkloadSpec(name="synthetic", synthetic=SyntheticSpec.model_validate(SYNTH), order="natural", seed=5)
    prompts = load_prompts(spec, None)
    assert prompts == load_prompts(spec, None)
    assert prompts != load_prompts(spec.model_copy(update={"seed": 6}), None)
    assert {len(p.text.split()) for p in prompts} == set(range(4, 10))
    outs = sorted(p.reference_tokens for p in prompts)
    assert outs[0] >= 2 and outs[-1] <= 60 and 15 <= outs[len(outs) // 2] <= 25


@pytest.mark.parametrize(
    "workload,message",
    [
        ({"name": "synthetic"}, "needs a 'synthetic' section"),
        ({"name": "synthetic", "path": "x", "synthetic": SYNTH}, "reads no file"),
        ({"name": "alpaca", "path": "x", "synthetic": SYNTH}, "belongs to name 'synthetic'"),
        ({"name": "squad", "path": "x"}, "unknown workload 'squad'"),
        (
            {"name": "synthetic", "synthetic": {**SYNTH, "input_tokens": {"kind": "uniform", "min": 9, "max": 4}}},
            "max 4 is below min 9",
        ),
    ],
)
def test_malformed_workload_sections_name_the_field(workload: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_manifest(manifest_text(workload=workload), "m.yaml")
    assert "  workload" in str(info.value)


def test_reference_lengths_are_capped_and_need_a_reference() -> None:
    prompts = with_reference_tokens(
        [Prompt("a", reference_text="xx yy"), Prompt("b", reference_tokens=50)],
        lambda texts: [len(t.split()) for t in texts],
    )
    assert [p.reference_tokens for p in prompts] == [2, 50]
    assert new_tokens(prompts, "reference", 10) == [2, 10]
    assert new_tokens(prompts, "fixed", 10) == 10
    with pytest.raises(InputError, match="prompt 0 of this workload has none"):
        with_reference_tokens([Prompt("a")], lambda texts: [])


def test_reference_output_lengths_on_the_tiny_model(write_manifest, tiny_model: Path, tmp_path: Path) -> None:
    """Each Alpaca prompt generates its reference length in the model's tokens, capped."""
    from transformers import AutoTokenizer

    data = _alpaca(tmp_path / "alpaca.json", n=10)
    path = write_manifest(
        batch_sizes=[1, 4],
        max_new_tokens=[6],
        output_length="reference",
        workload={"name": "alpaca", "path": str(data)},
    )
    (group,) = plan(load_manifest(path), "local", EMBEDDED_DEFAULT.partitions["local"])
    results = run_group(group)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    expected = sum(
        max(1, min(6, len(tok(r["output"], add_special_tokens=False)["input_ids"])))
        for r in json.loads(data.read_text())
    )
    assert expected < 6 * 10  # the cap and the references both matter
    for r in results:
        assert r.status == "ok" and r.valid, r.error
        assert r.generated_tokens == expected
        assert r.trial.trial_id.endswith("_w-alpaca_ref")
