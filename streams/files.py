"""CDR files: CSV with a header or JSON Lines, optionally gzip-compressed; ``-`` is stdin."""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

from config.numbering import NumberingPlan
from streams.cdr import CDR, Reject, parse_record


def open_text(path: str) -> IO[str]:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace", newline="")
    return Path(path).open(encoding="utf-8-sig", errors="replace", newline="")


def read_records(path: str, plan: NumberingPlan) -> Iterator[CDR | Reject]:
    """Yield every record of one file; the format is sniffed from the first non-blank character."""
    with open_text(path) as fh:
        text = fh.read()
    stripped = text.lstrip()
    if not stripped:
        return
    if stripped[0] in "[{":
        yield from _jsonl(text, plan)
    else:
        yield from (parse_record(row, plan) for row in csv.DictReader(io.StringIO(text)))


def _jsonl(text: str, plan: NumberingPlan) -> Iterator[CDR | Reject]:
    # Only "\n" ends a line: JSON strings may hold U+2028 and friends unescaped.
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield Reject("malformed_json", str(exc)[:120])
            continue
        if isinstance(doc, list):
            yield from (parse_record(item, plan) for item in doc)
        else:
            yield parse_record(doc, plan)
