"""Reading JSON-lines datasets (plain or gzip) with errors that name the file and record."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from infpop.errors import InputError


def check_fields(path: Path, where: str, rec: Any, required: dict[str, type]) -> dict[str, Any]:
    """``rec`` as a record with ``required`` fields of the given types, or an error naming
    the file, the record (``where``) and the field."""
    if not isinstance(rec, dict):
        raise InputError(f"{path}: {where}: expected an object, got {type(rec).__name__}")
    for key, typ in required.items():
        if not isinstance(rec.get(key), typ):
            raise InputError(f"{path}: {where}: field {key!r} must be {typ.__name__}, got {rec.get(key)!r:.60}")
    return rec


def read_records(path: Path, required: dict[str, type]) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}: record {lineno}: not valid JSON ({exc.msg})") from None
                yield check_fields(path, f"record {lineno}", rec, required)
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read dataset: {exc}") from None
