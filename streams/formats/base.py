"""What every format adapter shares: the row it hands to streams.cdr, stable ids, Q.850 names.

An adapter turns one line (or CSV row, or JSON document) of its format into a contract-shaped
mapping (the fields of README "CDR (input)"), which streams.cdr.parse_record validates like any
other record: the one reading of a record. An adapter never validates numbers or times itself.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, tzinfo
from typing import IO, ClassVar

import orjson

from streams.cdr import Reject

Row = Mapping[str, object]


class Format:
    """One CDR format. ``kind`` is "csv" (rows of cells) or "json" (documents)."""

    name: ClassVar[str]
    kind: ClassVar[str]
    # The switch writes a record when the call ends (long calls after later-starting short ones).
    call_end_order: ClassVar[bool] = False
    writable: ClassVar[bool] = True
    may_have_header: ClassVar[bool] = False  # so a resumed reader re-reads the first line

    def has_header(self, first_line: str) -> bool:
        """Whether the file's first line names the columns."""
        return False

    def from_row(self, row: list[str], header: list[str] | None) -> Row | Reject:
        raise NotImplementedError

    def from_doc(self, doc: object) -> list[Row | Reject]:
        raise NotImplementedError

    def decode_line(self, text: str, header: list[str] | None) -> list[Row | Reject]:
        """One complete line (a followed file is read line by line)."""
        if self.kind == "json":
            return self.json_line(text)
        return self.csv_line(text, header)

    def json_line(self, text: str) -> list[Row | Reject]:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return [Reject("malformed_json", str(exc)[:120])]
        return self.from_doc(doc)

    def csv_line(self, text: str, header: list[str] | None) -> list[Row | Reject]:
        row = next(csv.reader([text]), None)
        return [] if row is None else [self.from_row(row, header)]

    def read_text(self, text: str) -> Iterator[tuple[int, Row | Reject]]:
        """Every record of a whole file with its line number (1-based; a CSV record spanning
        lines reports its last)."""
        if self.kind == "json":
            yield from self._json_text(text)
            return
        reader = csv.reader(text.splitlines(keepends=True))
        header: list[str] | None = None
        first = True
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if first:
                first = False
                if self.has_header(",".join(row)):
                    header = [cell.strip() for cell in row]
                    continue
            yield reader.line_num, self.from_row(row, header)

    def _json_text(self, text: str) -> Iterator[tuple[int, Row | Reject]]:
        for number, line in enumerate(text.split("\n"), 1):
            if line.strip():
                for item in self.decode_line(line, None):
                    yield number, item

    def write(self, out: IO[str], records: Iterable[Row], tz: tzinfo) -> int:
        """Write contract records (as the simulator makes them) in this format."""
        raise NotImplementedError


def stable_id(prefix: str, *fields: str) -> str:
    """An id for a format without one: the same fields give the same id, so a file read twice
    counts once; the fields chosen tell two attempts apart (channel names, uuids)."""
    digest = hashlib.blake2b("\x1f".join(fields).encode(), digest_size=10).hexdigest()
    return f"{prefix}-{digest}"


def local_stamp(value: object, tz: tzinfo) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in ``tz`` of a contract start_time (ISO-8601 or epoch)."""
    return local_time(value, tz).strftime("%Y-%m-%d %H:%M:%S")


def local_time(value: object, tz: tzinfo) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), tz)
    return datetime.fromisoformat(str(value)).astimezone(tz)


# Q.850 cause values by the names FreeSWITCH uses (switch_types.h, switch_channel_cause_t);
# FreeSWITCH's own causes above 127 (ORIGINATOR_CANCEL, LOSE_RACE, ...) have no Q.850 value.
Q850_BY_NAME: dict[str, int] = {
    "UNSPECIFIED": 0,
    "UNALLOCATED_NUMBER": 1,
    "NO_ROUTE_TRANSIT_NET": 2,
    "NO_ROUTE_DESTINATION": 3,
    "CHANNEL_UNACCEPTABLE": 6,
    "CALL_AWARDED_DELIVERED": 7,
    "NORMAL_CLEARING": 16,
    "USER_BUSY": 17,
    "NO_USER_RESPONSE": 18,
    "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20,
    "CALL_REJECTED": 21,
    "NUMBER_CHANGED": 22,
    "REDIRECTION_TO_NEW_DESTINATION": 23,
    "EXCHANGE_ROUTING_ERROR": 25,
    "DESTINATION_OUT_OF_ORDER": 27,
    "INVALID_NUMBER_FORMAT": 28,
    "FACILITY_REJECTED": 29,
    "RESPONSE_TO_STATUS_ENQUIRY": 30,
    "NORMAL_UNSPECIFIED": 31,
    "NORMAL_CIRCUIT_CONGESTION": 34,
    "NETWORK_OUT_OF_ORDER": 38,
    "NORMAL_TEMPORARY_FAILURE": 41,
    "SWITCH_CONGESTION": 42,
    "ACCESS_INFO_DISCARDED": 43,
    "REQUESTED_CHAN_UNAVAIL": 44,
    "PRE_EMPTED": 45,
    "FACILITY_NOT_SUBSCRIBED": 50,
    "OUTGOING_CALL_BARRED": 52,
    "INCOMING_CALL_BARRED": 54,
    "BEARERCAPABILITY_NOTAUTH": 57,
    "BEARERCAPABILITY_NOTAVAIL": 58,
    "SERVICE_UNAVAILABLE": 63,
    "BEARERCAPABILITY_NOTIMPL": 65,
    "CHAN_NOT_IMPLEMENTED": 66,
    "FACILITY_NOT_IMPLEMENTED": 69,
    "SERVICE_NOT_IMPLEMENTED": 79,
    "INVALID_CALL_REFERENCE": 81,
    "INCOMPATIBLE_DESTINATION": 88,
    "INVALID_MSG_UNSPECIFIED": 95,
    "MANDATORY_IE_MISSING": 96,
    "MESSAGE_TYPE_NONEXIST": 97,
    "WRONG_MESSAGE": 98,
    "IE_NONEXIST": 99,
    "INVALID_IE_CONTENTS": 100,
    "WRONG_CALL_STATE": 101,
    "RECOVERY_ON_TIMER_EXPIRE": 102,
    "MANDATORY_IE_LENGTH_ERROR": 103,
    "PROTOCOL_ERROR": 111,
    "INTERWORKING": 127,
}
NAME_BY_Q850 = {code: name for name, code in Q850_BY_NAME.items()}


def ring_s(seq: int) -> int:
    """A deterministic ringing time for written records (1..7 s)."""
    return 1 + seq % 7
