"""HumanEval single-line infilling (1033 records). Only the prefix (``prompt``) is sent;
the suffix is ignored, as in the study. The reference output is the missing line
(``canonical_solution``)."""

from __future__ import annotations

from pathlib import Path

from infpop.workloads.jsonl import read_records
from infpop.workloads.prompt import Prompt

CANONICAL_URL = "https://github.com/openai/human-eval-infilling/raw/master/data/HumanEval-SingleLineInfilling.jsonl.gz"
CANONICAL_SHA256 = "1277073e7ddce163ef68598c2bca777f688a53df99422f097e37362090f88e1f"


def load(path: Path) -> list[Prompt]:
    return [
        Prompt(
            text=rec["prompt"], reference_text=ref if isinstance(ref := rec.get("canonical_solution"), str) else None
        )
        for rec in read_records(path, required={"prompt": str})
    ]
