"""Asterisk ``cdr_csv``: ``/var/log/asterisk/cdr-csv/Master.csv``, no header.

Column order as cdr_csv writes it (Asterisk docs, "CDR Variables"; cdr/cdr_csv.c):

    accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata,
    start, answer, end, duration, billsec, disposition, amaflags[, uniqueid[, userfield]]

Times are local (``usegmtime=no``, the default): read in DIALWATCH_TIMEZONE (set it to UTC for
``usegmtime=yes``). Talk time is billsec. The disposition is the only trace of why a call
ended, so the release cause is at best a guess from it, and never "unallocated"; there is no
attestation. Records are written when a call ends.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo
from typing import IO, ClassVar

from streams.cdr import Reject
from streams.formats.base import Format, Row, local_time, ring_s, stable_id

COLUMNS = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
)
REQUIRED_COLUMNS = 16
# disposition -> (answered, Q.850 cause); FAILED and CONGESTION tell no cause reliably.
DISPOSITIONS: dict[str, tuple[bool, int | None]] = {
    "ANSWERED": (True, 16),
    "BUSY": (False, 17),
    "NO ANSWER": (False, 19),
    "FAILED": (False, None),
    "CONGESTION": (False, None),
}
_CLID_NUMBER = re.compile(r"<([^<>]*)>\s*$")
_CHANNEL_SUFFIX = re.compile(r"-[0-9a-fA-F]+(?:;\d+)?$")


def trunk_of(channel: str) -> str | None:
    """``SIP/trunk-00000a1b`` -> ``trunk``: the channel technology and the per-call suffix go."""
    name = channel.split("/", 1)[1] if "/" in channel else channel
    name = _CHANNEL_SUFFIX.sub("", name)
    return name or None


class Asterisk(Format):
    name: ClassVar[str] = "asterisk"
    kind: ClassVar[str] = "csv"
    call_end_order: ClassVar[bool] = True

    def from_row(self, row: list[str], header: list[str] | None) -> Row | Reject:
        if len(row) < REQUIRED_COLUMNS:
            return Reject("missing_field", f"{len(row)} columns, Master.csv has at least 16")
        cells = dict(zip(COLUMNS, row, strict=False))
        disposition = cells["disposition"].strip().upper()
        known = DISPOSITIONS.get(disposition)
        if known is None:
            return Reject("bad_type", "disposition is not ANSWERED, NO ANSWER, BUSY, FAILED")
        answered, cause = known
        caller = cells["src"].strip()
        if not caller:
            found = _CLID_NUMBER.search(cells["clid"])
            caller = found.group(1) if found else ""
        ident = stable_id(
            "ast",
            cells["src"],
            cells["dst"],
            cells["start"],
            cells["channel"],
            cells["dstchannel"],
            cells.get("uniqueid", ""),
        )
        return {
            "cdr_id": ident,
            "caller": caller or None,
            "callee": cells["dst"].strip() or None,
            "start_time": cells["start"].strip() or None,
            "duration_s": cells["billsec"].strip() or None,
            "answered": answered,
            "release_cause": cause,
            "ingress_trunk": trunk_of(cells["channel"].strip()),
        }

    def write(self, out: IO[str], records: Iterable[Row], tz: tzinfo) -> int:
        """In call-end order, as Asterisk writes them; ringing time from ``ring_s``."""
        rows: list[tuple[float, int, list[str]]] = []
        for seq, record in enumerate(records):
            start = local_time(record["start_time"], tz)
            answered = bool(record.get("answered"))
            billsec = int(str(record.get("duration_s") or 0)) if answered else 0
            ring = ring_s(seq)
            answer = start + timedelta(seconds=ring) if answered else None
            end = start + timedelta(seconds=ring + billsec)
            trunk = record.get("ingress_trunk") or "pstn"
            row = [
                "",
                str(record["caller"]),
                str(record["callee"]),
                "from-trunk",
                f'"" <{record["caller"]}>',
                f"SIP/{trunk}-{seq:08x}",
                f"SIP/core-{seq:08x}",
                "Dial",
                f"SIP/core/{record['callee']},60",
                _stamp(start),
                _stamp(answer) if answer else "",
                _stamp(end),
                str(ring + billsec),
                str(billsec),
                _disposition(answered, record.get("release_cause")),
                "DOCUMENTATION",
                f"{int(start.timestamp())}.{seq}",
                "",
            ]
            rows.append((end.timestamp(), seq, row))
        rows.sort(key=lambda r: (r[0], r[1]))
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for _, _, row in rows:
            writer.writerow(row)
        return len(rows)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _disposition(answered: bool, cause: object) -> str:
    if answered:
        return "ANSWERED"
    if cause == 17:
        return "BUSY"
    if cause in (18, 19, None):
        return "NO ANSWER"
    if cause == 34:
        return "CONGESTION"
    return "FAILED"
