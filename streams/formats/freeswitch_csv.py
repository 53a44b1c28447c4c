"""FreeSWITCH ``mod_cdr_csv`` with its default template (``log/cdr-csv/Master.csv``, no header).

The module's built-in default template (src/mod/event_handlers/mod_cdr_csv/mod_cdr_csv.c;
the vanilla cdr_csv.conf.xml "example" template adds read_codec and write_codec):

    caller_id_name, caller_id_number, destination_number, context, start_stamp,
    answer_stamp, end_stamp, duration, billsec, hangup_cause, uuid, bleg_uuid, accountcode

Stamps are local time; hangup_cause is a cause name (base.Q850_BY_NAME); uuid names the call
leg. No trunk and no attestation in this template. Written when a call ends.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterable
from datetime import timedelta, tzinfo
from typing import IO, ClassVar

from streams.cdr import Reject
from streams.formats.base import (
    NAME_BY_Q850,
    Q850_BY_NAME,
    Format,
    Row,
    local_time,
    ring_s,
    stable_id,
)

COLUMNS = (
    "caller_id_name",
    "caller_id_number",
    "destination_number",
    "context",
    "start_stamp",
    "answer_stamp",
    "end_stamp",
    "duration",
    "billsec",
    "hangup_cause",
    "uuid",
    "bleg_uuid",
    "accountcode",
)
_NAMESPACE = uuid.UUID("0d1a1c0e-5ca1-4e11-9f00-000000000000")


def cause_of(name: str) -> int | None:
    return Q850_BY_NAME.get(name.strip().upper())


def cause_name(answered: bool, cause: object) -> str:
    if isinstance(cause, int) and cause in NAME_BY_Q850:
        return NAME_BY_Q850[cause]
    return "NORMAL_CLEARING" if answered else "NO_ANSWER"


def leg_uuid(record: Row) -> str:
    return str(uuid.uuid5(_NAMESPACE, str(record["cdr_id"])))


class FreeswitchCsv(Format):
    name: ClassVar[str] = "freeswitch-csv"
    kind: ClassVar[str] = "csv"
    call_end_order: ClassVar[bool] = True

    def from_row(self, row: list[str], header: list[str] | None) -> Row | Reject:
        if len(row) < len(COLUMNS):
            return Reject("missing_field", f"{len(row)} columns, the template has 13")
        cells = {k: v.strip() for k, v in zip(COLUMNS, row, strict=False)}
        ident = cells["uuid"]
        cdr_id = f"fs-{ident}" if ident else stable_id("fs", *row)
        return {
            "cdr_id": cdr_id,
            "caller": cells["caller_id_number"] or None,
            "callee": cells["destination_number"] or None,
            "start_time": cells["start_stamp"] or None,
            "duration_s": cells["billsec"] or None,
            "answered": bool(cells["answer_stamp"]),
            "release_cause": cause_of(cells["hangup_cause"]),
        }

    def write(self, out: IO[str], records: Iterable[Row], tz: tzinfo) -> int:
        rows: list[tuple[float, int, list[str]]] = []
        for seq, record in enumerate(records):
            start = local_time(record["start_time"], tz)
            answered = bool(record.get("answered"))
            billsec = int(str(record.get("duration_s") or 0)) if answered else 0
            ring = ring_s(seq)
            end = start + timedelta(seconds=ring + billsec)
            answer = (start + timedelta(seconds=ring)).strftime(_STAMP) if answered else ""
            row = [
                "",
                str(record["caller"]),
                str(record["callee"]),
                "default",
                start.strftime(_STAMP),
                answer,
                end.strftime(_STAMP),
                str(ring + billsec),
                str(billsec),
                cause_name(answered, record.get("release_cause")),
                leg_uuid(record),
                "",
                "",
            ]
            rows.append((end.timestamp(), seq, row))
        rows.sort(key=lambda r: (r[0], r[1]))
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for _, _, row in rows:
            writer.writerow(row)
        return len(rows)


_STAMP = "%Y-%m-%d %H:%M:%S"
