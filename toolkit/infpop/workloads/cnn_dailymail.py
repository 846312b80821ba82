"""CNN/DailyMail (summarisation): CSV with the header ``id,article,highlights`` (the release
on the Hugging Face hub, ``abisee/cnn_dailymail``, as CSV). The prompt is the article; the
reference output is the highlights, which together are the article's summary.
"""

from __future__ import annotations

from pathlib import Path

from infpop.workloads.prompt import Prompt
from infpop.workloads.readers import read_csv_records


def load(path: Path) -> list[Prompt]:
    return [
        Prompt(text=row["article"], reference_text=row["highlights"])
        for row in read_csv_records(path, columns=["id", "article", "highlights"])
    ]
