"""The published contract (README "CDR (input)"): CSV with a header row, or JSON Lines whose
lines are objects or arrays of objects. The fast path: rows go to streams.cdr unchanged."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo
from typing import IO, ClassVar

from streams.cdr import Reject
from streams.formats.base import Format, Row


class Contract(Format):
    name: ClassVar[str] = "contract"
    kind: ClassVar[str] = "csv"  # or JSON, sniffed per file from its first character
    may_have_header: ClassVar[bool] = True

    def has_header(self, first_line: str) -> bool:
        return not first_line.lstrip().startswith(("{", "["))

    def from_row(self, row: list[str], header: list[str] | None) -> Row | Reject:
        if header is None:
            return Reject("missing_field", "CSV without a header row")
        return dict(zip(header, row, strict=False))

    def from_doc(self, doc: object) -> list[Row | Reject]:
        items = doc if isinstance(doc, list) else [doc]
        return [i if isinstance(i, dict) else Reject("not_an_object", _what(i)) for i in items]

    def decode_line(self, text: str, header: list[str] | None) -> list[Row | Reject]:
        if header is None and text.lstrip().startswith(("{", "[")):
            return self.json_line(text)
        return self.csv_line(text, header)

    def write(self, out: IO[str], records: Iterable[Row], tz: tzinfo) -> int:
        raise NotImplementedError("the contract is written by streams.tools.simulate")


def _what(item: object) -> str:
    return f"expected an object, got {type(item).__name__}"
