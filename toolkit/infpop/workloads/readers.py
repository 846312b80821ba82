"""Reading JSON-array and CSV datasets (plain or gzip), with errors that name the file and
record, as :mod:`infpop.workloads.jsonl` does for JSON lines.

A record is numbered from 1: its position in a JSON array, its line in a JSON-lines file, its
row below the header in a CSV file (a CSV row may span lines: articles contain newlines).
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from infpop.errors import InputError
from infpop.workloads.jsonl import check_fields, read_records


def _open(path: Path) -> IO[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rt", encoding="utf-8", newline="")


def _starts_with_array(path: Path) -> bool:
    with _open(path) as fh:
        while ch := fh.read(1):
            if not ch.isspace():
                return ch == "["
    return False


def read_json_records(path: Path, required: dict[str, type]) -> Iterator[dict[str, Any]]:
    """Records of a JSON array or, when the file is not one, of JSON lines: datasets ship in
    both (Alpaca's release is an array, mirrors of it are JSON lines)."""
    try:
        if not _starts_with_array(path):
            yield from read_records(path, required)
            return
        with _open(path) as fh:
            try:
                records = json.load(fh)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})") from None
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read dataset: {exc}") from None
    for i, rec in enumerate(records, 1):
        yield check_fields(path, f"record {i}", rec, required)


def read_csv_records(path: Path, columns: list[str]) -> Iterator[dict[str, str]]:
    """Rows of a CSV file with a header naming at least ``columns``."""
    try:
        with _open(path) as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: header: column {missing[0]!r} is missing (header: {reader.fieldnames})")
            for i, row in enumerate(reader, 1):
                if None in row or None in row.values():
                    raise InputError(
                        f"{path}: record {i} (line {reader.line_num}): the number of fields differs from "
                        f"the header's {len(reader.fieldnames)}"
                    )
                yield row
    except csv.Error as exc:
        raise InputError(f"{path}: record near line {reader.line_num}: not valid CSV ({exc})") from None
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read dataset: {exc}") from None
