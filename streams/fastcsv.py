"""The contract CSV read column-wise: pyarrow tokenises blocks of lines, each column's distinct
values are read once by streams.cdr's own field readings (``read_field``), and every row gets
the CDR or the Reject ``parse_record`` gives it, with the line number the csv module gives.

Exact by construction where it applies, and the csv module everywhere else:

- A block goes to pyarrow only when it cannot be read differently: no quote (a quoted field
  may hold a comma or span lines), no carriage return, no blank line (the csv module skips it,
  which would shift line numbers), every row with the header's number of fields (pyarrow
  refuses the block otherwise). Any other block is read by ``csv.DictReader`` with the
  header's names, its line numbers counted on; from the first quote on, the rest of the file.
- The header itself is read by the csv module (``streams.files``); a header with a repeated or
  empty name, or one not on the first line, leaves the whole file to the csv module.
- Per row, the first field in CDR order whose value is refused gives the Reject, as in
  ``streams.cdr._parse``; a row with none refused becomes the CDR of the read values.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import tzinfo
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from config.numbering import NumberingPlan
from streams.cdr import CDR, FIELDS, Reject, parse_record, read_field

Located = tuple[int, CDR | Reject]


def usable_header(names: Sequence[str]) -> bool:
    return len(set(names)) == len(names) and all(names)


def read_blocks(
    header: Sequence[str],
    blocks: Iterable[str],
    plan: NumberingPlan,
    tz: tzinfo | None,
    first_line: int = 2,
) -> Iterator[Located]:
    """The records of ``blocks`` (whole lines after the header line, in order; the file's
    first data line is ``first_line``)."""
    names = list(header)
    line = first_line
    blocks = iter(blocks)
    for block in blocks:
        if '"' in block:  # a quoted field may span lines: the csv module from here on
            yield from _python(names, _chain_lines(block, blocks), plan, tz, line)
            return
        rows = (
            None
            if "\r" in block or "\n\n" in block or block.startswith("\n")
            else _arrow(names, block)
        )
        if rows is None:
            yield from _python(names, _split(block), plan, tz, line)
        else:
            yield from _records(names, rows, plan, tz, line)
        line += block.count("\n")


def _chain_lines(block: str, blocks: Iterator[str]) -> Iterator[str]:
    yield from _split(block)
    for more in blocks:
        yield from _split(more)


def _split(block: str) -> list[str]:
    """The lines of a block with their endings: only "\\n" ends one (not U+2028)."""
    lines = [line + "\n" for line in block.split("\n")]
    last = lines.pop()[:-1]
    return [*lines, last] if last else lines


def _arrow(names: list[str], block: str) -> pa.Table | None:
    try:
        return pacsv.read_csv(
            io.BytesIO(block.encode()),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:  # a row with another number of fields: the csv module reads it
        return None


def _python(
    names: list[str], lines: Iterable[str], plan: NumberingPlan, tz: tzinfo | None, line: int
) -> Iterator[Located]:
    reader = csv.DictReader(lines, fieldnames=names)
    try:
        for row in reader:
            yield line - 1 + reader.line_num, parse_record(row, plan, tz)
    except csv.Error as exc:
        raise CsvError(line - 1 + reader.line_num, exc) from exc


class CsvError(Exception):
    """csv.Error at a line of the file."""

    def __init__(self, line: int, exc: csv.Error) -> None:
        super().__init__(str(exc))
        self.line, self.error = line, exc


def _records(
    names: list[str], table: pa.Table, plan: NumberingPlan, tz: tzinfo | None, line: int
) -> Iterator[Located]:
    n = table.num_rows
    if not n:
        return
    columns: list[list[Any]] = []
    bad = np.zeros(n, dtype=np.int64)  # 1 + the index of the first refused field, 0 if none
    for k, name in enumerate(FIELDS):
        if name not in names:
            value = read_field(name, [None], plan, tz)[0]
            if isinstance(value, Reject):  # never for an optional field: a guard
                raise ValueError(f"{name} absent but required")
            columns.append([value] * n)
            continue
        encoded = pc.dictionary_encode(table.column(names.index(name))).combine_chunks()
        read = read_field(name, encoded.dictionary.to_pylist(), plan, tz)
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        rejected = np.fromiter((isinstance(v, Reject) for v in read), bool, len(read))
        values = np.empty(len(read), dtype=object)
        values[:] = read
        row_values = values[indices]
        row_bad = rejected[indices]
        bad[(bad == 0) & row_bad] = k + 1
        columns.append(row_values.tolist())
    if not bad.any():
        for offset, cdr in enumerate(map(CDR, *columns)):
            yield line + offset, cdr
        return
    for offset in range(n):
        k = int(bad[offset])
        if k:
            reason = columns[k - 1][offset]
            yield line + offset, reason
        else:
            yield line + offset, CDR(*(column[offset] for column in columns))
