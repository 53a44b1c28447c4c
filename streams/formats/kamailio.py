"""Kamailio accounting lines, as ``deploy/kamailio/kamailio.cfg`` writes them into Kamailio's
log (``kamailio -E`` with standard error redirected to a file, or syslog's file).

One line per call attempt, marked ``DWCDR`` and followed by one JSON object; whatever Kamailio
logs before the marker (its ``-E`` prefix ``12(3456) NOTICE: <script>: ``, a syslog stamp) is
ignored, and every line without the marker (Kamailio's other log output) is skipped:

    DWCDR {"v":1,"id":"<md5 of Call-ID and From tag>","caller":"<From user>",
           "callee":"<Request-URI user>","invite":"<epoch s.us>","answer":"<epoch s.us>",
           "end":"<epoch s.us>","status":<final SIP status>,"trunk":"<source>"[,"q850":<cause>]}

``answer`` and ``end`` are empty (or absent) for a call never answered. The final SIP status
gives answered (2xx) and the Q.850 release cause: README "Formats" (RFC 3398 section 8.2.6 for
the statuses not named there); 608 (RFC 8688, the interception's own rejection) is cause 21 with
``intercepted`` true. ``q850``, when present (the cause of an RFC 3326 ``Reason: Q.850;cause=N``
header on the BYE), overrides the status's cause. A line is written when the attempt ends (a
rejection at once, an answered call at its BYE), so the records come in call-end order. A
marked line that does not read is rejected with its reason and counted like any bad record.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo
from decimal import Decimal, InvalidOperation
from typing import IO, ClassVar

import orjson

from streams.cdr import Reject
from streams.formats.base import Format, Row, local_time, ring_s, stable_id

MARK = "DWCDR "
VERSION = 1
# Final SIP status -> Q.850 cause (the table, then RFC 3398 section 8.2.6.1).
CAUSE_BY_STATUS: dict[int, int] = {
    200: 16,
    486: 17,
    480: 19,
    408: 19,
    487: 31,
    404: 1,
    603: 21,
    608: 21,
    400: 41,
    401: 21,
    402: 21,
    403: 21,
    405: 63,
    406: 79,
    407: 21,
    410: 22,
    413: 127,
    414: 127,
    415: 79,
    416: 127,
    420: 127,
    421: 127,
    423: 127,
    481: 41,
    482: 25,
    483: 25,
    484: 28,
    485: 1,
    488: 127,
    500: 41,
    501: 79,
    502: 38,
    503: 41,
    504: 102,
    505: 127,
    513: 127,
    600: 17,
    604: 1,
    606: 58,
}
INTERCEPTED_STATUS = 608
# Written records: a cause back to the status that gives it.
STATUS_BY_CAUSE: dict[int, int] = {16: 200, 17: 486, 18: 480, 19: 480, 31: 487, 1: 404, 21: 603}


def cause_of(status: int) -> int | None:
    """Q.850 cause of a final SIP status (2xx: normal clearing); None when none fits."""
    if 200 <= status < 300:
        return 16
    return CAUSE_BY_STATUS.get(status)


def _epoch(value: object) -> Decimal | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() and number > 0 else None


def _text(doc: dict[str, object], name: str) -> str | None:
    value = doc.get(name)
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return text or None


class Kamailio(Format):
    name: ClassVar[str] = "kamailio"
    kind: ClassVar[str] = "json"
    call_end_order: ClassVar[bool] = True

    def decode_line(self, text: str, header: list[str] | None) -> list[Row | Reject]:
        at = text.find(MARK)
        if at < 0:
            return []  # Kamailio's own log output
        return self.json_line(text[at + len(MARK) :])

    def from_doc(self, doc: object) -> list[Row | Reject]:
        return [self._one(doc)]

    def _one(self, doc: object) -> Row | Reject:
        if not isinstance(doc, dict):
            return Reject("not_an_object", f"expected an object, got {type(doc).__name__}")
        version = doc.get("v", VERSION)
        if version != VERSION:
            return Reject("bad_type", f"accounting line version {version!r}, this reads 1")
        ident = _text(doc, "id")
        if ident is None:
            return Reject("missing_field", "missing id")
        status = doc.get("status")
        if isinstance(status, str) and status.strip().isdigit():
            status = int(status)
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status < 700:
            return Reject("bad_type", "status must be a final SIP status (200..699)")
        answered = status < 300
        duration: object = 0
        if answered:
            answer, end = _epoch(doc.get("answer")), _epoch(doc.get("end"))
            if answer is None or end is None:
                return Reject("missing_field", "an answered call needs answer and end times")
            if end < answer:
                return Reject("bad_duration", "end is before answer")
            duration = str(end - answer)
        cause: object = cause_of(status)
        q850 = doc.get("q850")
        if q850 not in (None, ""):
            cause = q850
        return {
            "cdr_id": stable_id("kam", ident),
            "caller": _text(doc, "caller"),
            "callee": _text(doc, "callee"),
            "start_time": _text(doc, "invite"),
            "duration_s": duration,
            "answered": answered,
            "release_cause": cause,
            "ingress_trunk": _text(doc, "trunk"),
            "intercepted": status == INTERCEPTED_STATUS,
        }

    def write(self, out: IO[str], records: Iterable[Row], tz: tzinfo) -> int:
        """Lines as the shipped kamailio.cfg writes them, among a line of Kamailio's own."""
        count = 0
        out.write(" 0(100) INFO: <core> [main.c:2861]: main(): processes (at least): 9\n")
        for seq, record in enumerate(records):
            start = Decimal(str(local_time(record["start_time"], tz).timestamp()))
            answered = bool(record.get("answered"))
            cause = record.get("release_cause")
            if record.get("intercepted"):
                status = INTERCEPTED_STATUS
            elif answered:
                status = 200
            else:
                known = STATUS_BY_CAUSE.get(cause) if isinstance(cause, int) else None
                status = known if known and known != 200 else 480
            doc: dict[str, object] = {
                "v": VERSION,
                "id": f"sim-{seq}-{record.get('cdr_id', '')}",
                "caller": str(record["caller"]),
                "callee": str(record["callee"]),
                "invite": str(start),
                "status": status,
            }
            if answered:
                answer = start + ring_s(seq)
                doc["answer"] = str(answer)
                doc["end"] = str(answer + int(str(record.get("duration_s") or 0)))
            if isinstance(cause, int) and cause != cause_of(status):
                doc["q850"] = cause
            if record.get("ingress_trunk"):
                doc["trunk"] = str(record["ingress_trunk"])
            out.write(f" {seq % 8}(200) NOTICE: <script>: {MARK}{orjson.dumps(doc).decode()}\n")
            count += 1
        return count
