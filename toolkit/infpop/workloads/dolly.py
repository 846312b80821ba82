"""Dolly (question answering): JSON lines of ``{instruction, context, response, category}``.

Only the question-answering categories are kept, as in the workload study (about 60% of the
15k records); the prompt is the instruction, then the context where there is one; the
reference output is ``response``.
"""

from __future__ import annotations

from pathlib import Path

from infpop.workloads.prompt import Prompt
from infpop.workloads.readers import read_json_records

CANONICAL_URL = (
    "https://huggingface.co/datasets/databricks/databricks-dolly-15k/resolve/main/databricks-dolly-15k.jsonl"
)
QA_CATEGORIES = frozenset({"closed_qa", "open_qa", "general_qa"})


def load(path: Path) -> list[Prompt]:
    required = {"instruction": str, "context": str, "response": str, "category": str}
    return [
        Prompt(text="\n".join(filter(None, (rec["instruction"], rec["context"]))), reference_text=rec["response"])
        for rec in read_json_records(path, required=required)
        if rec["category"] in QA_CATEGORIES
    ]
