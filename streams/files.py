"""CDR files in any format (streams.formats; default the contract: CSV with a header or JSON
Lines), optionally gzip-compressed; ``-`` is stdin."""

from __future__ import annotations

import csv
import gzip
import io
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import tzinfo
from itertools import chain
from pathlib import Path
from types import ModuleType
from typing import IO, TextIO

import orjson

from config.numbering import NumberingPlan
from streams.cdr import CDR, REQUIRED, Reject, parse_record
from streams.errors import InputError, path_error
from streams.formats import Format
from streams.formats.contract import Contract

FORMATS = "CSV with a header row or JSON Lines"
Located = tuple[int, CDR | Reject]  # (line number, 1-based; the record or why not)
CHUNK_CHARS = 1 << 20  # characters read at a time


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


def read_records(
    path: str,
    plan: NumberingPlan,
    tz: tzinfo | None = None,
    fmt: Format | None = None,
) -> Iterator[CDR | Reject]:
    """Yield every record of one file in file order.

    A contract CSV file whose header lacks a required column is refused (InputError) before
    any record."""
    for _, rec in read_located(path, plan, tz, fmt):
        yield rec


def read_located(
    path: str,
    plan: NumberingPlan,
    tz: tzinfo | None = None,
    fmt: Format | None = None,
    columnar: bool = True,
) -> Iterator[Located]:
    """Every record of one file with its line number. The contract (the default) is sniffed
    from the first non-blank character: ``[`` or ``{`` JSON Lines, else CSV. The contract is
    read as a stream (a block of lines at a time); a contract CSV column-wise
    (streams.fastcsv) unless ``columnar`` is false. Other formats read the whole text first."""
    if fmt is None or isinstance(fmt, Contract):
        blocks = text_blocks(path)
        ahead: list[str] = []
        for block in blocks:
            ahead.append(block)
            if block.strip():
                break
        else:
            return
        if "".join(ahead).lstrip()[0] in "[{":
            yield from _jsonl(_lines(chain(ahead, blocks)), plan, tz)
        else:
            yield from _csv(path, chain(ahead, blocks), plan, tz, columnar)
        return
    text = read_text(path)
    try:
        for number, row in fmt.read_text(text):
            yield number, row if isinstance(row, Reject) else parse_record(row, plan, tz)
    except csv.Error as exc:
        raise InputError(f"{path}: not valid CSV for {fmt.name}: {_csv_reason(exc)}") from exc


def text_blocks(path: str) -> Iterator[str]:
    """The file's text in blocks of whole lines: only "\\n" ends a line (as ``str.split``),
    so a stray "\\r" or U+2028 reads as it did from the whole text. InputError for binary
    data or a broken gzip stream, where it is met."""
    with open_text(path) as fh:
        rest = ""
        while True:
            try:
                chunk = fh.read(CHUNK_CHARS)
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                raise InputError(f"{path}: not a valid gzip file ({exc})") from exc
            except OSError as exc:
                raise path_error(path, exc) from exc
            if not chunk:
                break
            if "\x00" in chunk:
                raise InputError(f"{path}: binary data, not CDRs ({FORMATS})")
            cut = chunk.rfind("\n") + 1
            if cut:
                yield rest + chunk[:cut]
                rest = chunk[cut:]
            else:
                rest += chunk
        if rest:
            yield rest


def _lines(blocks: Iterable[str]) -> Iterator[str]:
    for block in blocks:
        yield from block.split("\n")[:-1] if block.endswith("\n") else block.split("\n")


def _csv(
    path: str, blocks: Iterable[str], plan: NumberingPlan, tz: tzinfo | None, columnar: bool
) -> Iterator[Located]:
    blocks = iter(blocks)
    first = next(blocks)
    head, _, rest = first.partition("\n")
    header = head.split(",")
    fastcsv = _columnar() if columnar and not {'"', "\r"} & set(head) and head.strip() else None
    if fastcsv is not None and fastcsv.usable_header(header):
        _check_header(path, header)
        try:
            yield from fastcsv.read_blocks(header, chain([rest], blocks), plan, tz)
        except fastcsv.CsvError as exc:
            reason = _csv_reason(exc.error)
            raise InputError(f"{path}: line {exc.line}: not valid CSV: {reason}") from exc
        return
    lines = (line + "\n" for line in _lines(chain([first], blocks)))
    reader = csv.DictReader(lines)
    try:
        _check_header(path, reader.fieldnames or ())
        for row in reader:
            yield reader.line_num, parse_record(row, plan, tz)
    except csv.Error as exc:
        reason = _csv_reason(exc)
        raise InputError(f"{path}: line {reader.line_num}: not valid CSV: {reason}") from exc


def _columnar() -> ModuleType | None:
    """streams.fastcsv, imported only to read a CSV (pyarrow's start-up); None without pyarrow
    (a set-up from before it was a dependency): the csv module reads, with the same result."""
    try:
        from streams import fastcsv
    except ImportError:
        return None
    return fastcsv


def _check_header(path: str, names: Sequence[str]) -> None:
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise InputError(
            f"{path}: not CDRs: the CSV header lacks {', '.join(missing)} ({FORMATS};"
            " --format names other layouts)"
        )


def _csv_reason(exc: csv.Error) -> str:
    reason = str(exc)
    if reason.startswith("field larger than field limit"):
        limit = csv.field_size_limit()
        reason = f"a field longer than {limit:,} characters (an unbalanced quote?)"
    return reason


def _jsonl(lines: Iterable[str], plan: NumberingPlan, tz: tzinfo | None) -> Iterator[Located]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, Reject("malformed_json", str(exc)[:120])
            continue
        if isinstance(doc, list):
            for item in doc:
                yield number, parse_record(item, plan, tz)
        else:
            yield number, parse_record(doc, plan, tz)


def open_rejects(path: str, append: bool = False) -> TextIO:
    return Path(path).open("a" if append else "w", encoding="utf-8")


class RejectLog:
    """``--rejects FILE``: one line per rejected record, ``file:line reason: detail``. The
    record itself is not copied (it holds callee numbers): the line number points into the
    file the operator already has."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, path: str, line: int, reject: Reject) -> None:
        self.out.write(f"{path}:{line} {reject.reason}: {reject.detail}\n")
