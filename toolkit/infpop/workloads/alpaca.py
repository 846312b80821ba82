"""Alpaca (text generation, 52k records): a JSON array of ``{instruction, input, output}``.

The prompt is the instruction, then the input where the record has one; the reference output
is ``output``. (The workload study concatenated the two without a separator; the newline here
keeps words apart and changes a prompt by at most one token.)
"""

from __future__ import annotations

from pathlib import Path

from infpop.workloads.prompt import Prompt
from infpop.workloads.readers import read_json_records

CANONICAL_URL = "https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/main/alpaca_data.json"


def load(path: Path) -> list[Prompt]:
    return [
        Prompt(text="\n".join(filter(None, (rec["instruction"], rec["input"]))), reference_text=rec["output"])
        for rec in read_json_records(path, required={"instruction": str, "input": str, "output": str})
    ]
