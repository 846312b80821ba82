"""ShareGPT (conversation): a JSON array of ``{id, conversations: [{from, value}, ...]}``.

Only the first round is used, as in the workload study: the first human turn is the prompt and
the assistant's answer to it the reference output. Conversations that do not open with a
human turn followed by a ``gpt`` turn (a few hundred in the published dump) are skipped;
a malformed record is an error naming its position.
"""

from __future__ import annotations

from pathlib import Path

from infpop.workloads.jsonl import check_fields
from infpop.workloads.prompt import Prompt
from infpop.workloads.readers import read_json_records

CANONICAL_URL = (
    "https://huggingface.co/datasets/anon8231489123/ShareGPT_Vicuna_unfiltered/resolve/main/"
    "ShareGPT_V3_unfiltered_cleaned_split.json"
)


def load(path: Path) -> list[Prompt]:
    prompts = []
    for i, rec in enumerate(read_json_records(path, required={"conversations": list}), 1):
        turns = [
            check_fields(path, f"record {i} turn {j}", turn, {"from": str, "value": str})
            for j, turn in enumerate(rec["conversations"][:2], 1)
        ]
        if [t["from"] for t in turns] == ["human", "gpt"]:
            prompts.append(Prompt(text=turns[0]["value"], reference_text=turns[1]["value"]))
    return prompts
