"""CDR files: CSV with a header or JSON Lines, optionally gzip-compressed; ``-`` is stdin."""

from __future__ import annotations

import csv
import gzip
import io
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

from config.numbering import NumberingPlan
from streams.cdr import CDR, REQUIRED, Reject, parse_record
from streams.errors import InputError, path_error

FORMATS = "CSV with a header row or JSON Lines"


def open_text(path: str) -> IO[str]:
    """Raises UsageError naming the path when it cannot be opened."""
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    try:
        if path.endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace", newline="")
        return Path(path).open(encoding="utf-8-sig", errors="replace", newline="")
    except OSError as exc:
        raise path_error(path, exc) from exc


def read_text(path: str) -> str:
    """The whole file; InputError when a .gz is not gzip or the bytes are not text."""
    with open_text(path) as fh:
        try:
            text = fh.read()
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise InputError(f"{path}: not a valid gzip file ({exc})") from exc
        except OSError as exc:
            raise path_error(path, exc) from exc
    if "\x00" in text:
        raise InputError(f"{path}: binary data, not CDRs ({FORMATS})")
    return text


def read_records(path: str, plan: NumberingPlan) -> Iterator[CDR | Reject]:
    """Yield every record of one file; the format is sniffed from the first non-blank character.

    A CSV file whose header lacks a required column is refused (InputError) before any record."""
    text = read_text(path)
    stripped = text.lstrip()
    if not stripped:
        return
    if stripped[0] in "[{":
        yield from _jsonl(text, plan)
    else:
        yield from _csv(path, text, plan)


def _csv(path: str, text: str, plan: NumberingPlan) -> Iterator[CDR | Reject]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        missing = [name for name in REQUIRED if name not in (reader.fieldnames or ())]
        if missing:
            raise InputError(
                f"{path}: not CDRs: the CSV header lacks {', '.join(missing)} ({FORMATS})"
            )
        for row in reader:
            yield parse_record(row, plan)
    except csv.Error as exc:
        reason = str(exc)
        if reason.startswith("field larger than field limit"):
            limit = csv.field_size_limit()
            reason = f"a field longer than {limit:,} characters (an unbalanced quote?)"
        raise InputError(f"{path}: line {reader.line_num}: not valid CSV: {reason}") from exc


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
