"""``csv-map``: any CSV with a header row, its columns named for the contract fields by a map
such as ``caller=src,callee=dst,start_time=start,duration_s=billsec,answered=ok``.

Targets are the contract fields (README "CDR (input)") and ``duration_ms`` (milliseconds, for
duration_s). Without a mapped cdr_id the id is derived from the whole row, so a file read twice
counts once (two attempts written identically, to the second, are then one: map an id column
when the export has one).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import ClassVar

from streams.cdr import REQUIRED, Reject, decimal_text
from streams.formats.base import Format, Row, stable_id

CONTRACT_FIELDS = (
    *REQUIRED,
    "release_cause",
    "direction",
    "ingress_trunk",
    "attestation",
    "intercepted",
)
TARGETS = (*CONTRACT_FIELDS, "duration_ms")


def parse_map(text: str) -> dict[str, str]:
    """``field=column,...`` -> {field: column}; ValueError with a one-line reason."""
    mapping: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        field, sep, column = part.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not field or not column:
            raise ValueError(f"--map entry {part.strip()!r} is not field=column")
        if field not in TARGETS:
            raise ValueError(f"--map: {field!r} is not a field ({', '.join(TARGETS)})")
        mapping[field] = column
    return mapping


class CsvMap(Format):
    name: ClassVar[str] = "csv-map"
    kind: ClassVar[str] = "csv"
    writable: ClassVar[bool] = False
    may_have_header: ClassVar[bool] = True

    def __init__(self, mapping: Mapping[str, str] | None = None) -> None:
        self.mapping = dict(mapping or {})
        self._index: tuple[tuple[str, ...], dict[str, int]] | None = None

    def has_header(self, first_line: str) -> bool:
        return True

    def _columns(self, header: list[str]) -> dict[str, int]:
        key = tuple(header)
        if self._index is None or self._index[0] != key:
            position = {name: i for i, name in enumerate(header)}
            self._index = (key, {f: position[c] for f, c in self.mapping.items() if c in position})
        return self._index[1]

    def missing(self, header: list[str]) -> list[str]:
        """Mapped columns the header lacks (a map that cannot work for this file)."""
        return [c for c in self.mapping.values() if c not in header]

    def from_row(self, row: list[str], header: list[str] | None) -> Row | Reject:
        if header is None:
            return Reject("missing_field", "csv-map needs a header row")
        columns = self._columns(header)
        if len(columns) < len(self.mapping):
            absent = ", ".join(self.missing(header))
            return Reject("missing_field", f"--map names columns the header lacks: {absent}")
        out: dict[str, object] = {}
        for field, index in columns.items():
            if index < len(row):
                out[field] = row[index]
        millis = out.pop("duration_ms", None)
        if "duration_s" not in out and isinstance(millis, str):
            text = millis.strip()
            out["duration_s"] = decimal_text(Decimal(text) / 1000) if text.isdigit() else text
        if "cdr_id" not in self.mapping:
            out["cdr_id"] = stable_id("map", *row)
        return out
