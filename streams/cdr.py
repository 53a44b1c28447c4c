"""CDR records: decoding, validation and normalisation of one call attempt.

Every record either becomes a :class:`CDR` or a :class:`Reject` with a reason from
:data:`REJECT_REASONS` (a closed set, so it is safe as a metric label). Nothing here raises
on bad input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from config.numbering import NumberingPlan, normalise

MAX_ID_LEN = 128
MAX_TEXT_LEN = 64
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_DURATION_S = 86_400
# Sanity bounds on start_time (epoch ms): 2000-01-01 .. 2100-01-01.
MIN_START_MS = 946_684_800_000
MAX_START_MS = 4_102_444_800_000

REJECT_REASONS = (
    "malformed_json",
    "not_an_object",
    "too_large",
    "missing_field",
    "bad_id",
    "bad_number",
    "bad_time",
    "bad_duration",
    "bad_type",
    "future",
    "too_late",
)

REQUIRED = ("cdr_id", "caller", "callee", "start_time", "duration_s", "answered")


@dataclass(frozen=True, slots=True)
class CDR:
    cdr_id: str
    caller: str  # normalised (config.numbering.normalise)
    callee: str  # normalised; personal data: never logged, never exported in clear
    start_ms: int  # event time, epoch milliseconds
    duration_s: int
    answered: bool
    release_cause: int | None = None
    direction: str | None = None
    ingress_trunk: str | None = None
    attestation: str | None = None
    intercepted: bool = False


class Reject(NamedTuple):
    reason: str  # one of REJECT_REASONS
    detail: str  # short, human-readable; never contains a phone number


_TRUE = frozenset({"true", "1", "yes", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "f", "n", ""})


def parse_record(obj: object, plan: NumberingPlan) -> CDR | Reject:
    """Validate one decoded record (a JSON object or a CSV row dict)."""
    if not isinstance(obj, Mapping):
        return Reject("not_an_object", f"expected an object, got {type(obj).__name__}")
    try:
        return _parse(obj, plan)
    except _Invalid as exc:
        return Reject(exc.reason, exc.detail)


def decode_message(value: bytes | None, plan: NumberingPlan) -> list[CDR | Reject]:
    """Decode one Kafka message value: a JSON object or a JSON array of objects."""
    if value is None:
        return [Reject("malformed_json", "empty message")]
    if len(value) > MAX_MESSAGE_BYTES:
        return [Reject("too_large", f"message of {len(value)} bytes")]
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return [Reject("malformed_json", str(exc)[:120])]
    if isinstance(doc, list):
        return [parse_record(item, plan) for item in doc]
    return [parse_record(doc, plan)]


def parse_records(objs: Iterable[object], plan: NumberingPlan) -> list[CDR | Reject]:
    return [parse_record(o, plan) for o in objs]


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def _parse(obj: Mapping[str, Any], plan: NumberingPlan) -> CDR:
    for name in REQUIRED:
        if obj.get(name) is None:
            raise _Invalid("missing_field", f"missing {name}")
    cdr_id = obj["cdr_id"]
    if isinstance(cdr_id, int) and not isinstance(cdr_id, bool):
        cdr_id = str(cdr_id)
    if not isinstance(cdr_id, str) or not cdr_id or len(cdr_id) > MAX_ID_LEN:
        raise _Invalid("bad_id", "cdr_id must be a non-empty string of at most 128 characters")
    caller = _number(obj["caller"], "caller", plan)
    callee = _number(obj["callee"], "callee", plan)
    start_ms = _start_ms(obj["start_time"])
    duration_s = _duration(obj["duration_s"])
    answered = _bool(obj["answered"], "answered")
    cause = obj.get("release_cause")
    release_cause = None if cause in (None, "") else _int(cause, "release_cause", 0, 127)
    intercepted = obj.get("intercepted")
    return CDR(
        cdr_id=cdr_id,
        caller=caller,
        callee=callee,
        start_ms=start_ms,
        duration_s=duration_s,
        answered=answered,
        release_cause=release_cause,
        direction=_text(obj.get("direction"), "direction"),
        ingress_trunk=_text(obj.get("ingress_trunk"), "ingress_trunk"),
        attestation=_text(obj.get("attestation"), "attestation"),
        intercepted=False if intercepted in (None, "") else _bool(intercepted, "intercepted"),
    )


def parse_start_ms(value: object) -> int | Reject:
    """An event time (ISO-8601 with an offset, or epoch seconds) in epoch ms, or why not."""
    try:
        return _start_ms(value)
    except _Invalid as exc:
        return Reject(exc.reason, exc.detail)


def _number(value: object, name: str, plan: NumberingPlan) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > 40:
        raise _Invalid("bad_number", f"{name} is not a phone number")
    number = normalise(value, plan)
    if number is None:
        raise _Invalid("bad_number", f"{name} is not a phone number")
    return number


def _start_ms(value: object) -> int:
    if isinstance(value, bool):
        raise _Invalid("bad_time", "start_time must be ISO-8601 or epoch seconds")
    if isinstance(value, int | float):
        seconds = float(value) if abs(value) < 1e15 else float("inf")
    elif isinstance(value, str) and len(value) <= 40:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = _iso_ms(text) / 1000
    else:
        raise _Invalid("bad_time", "start_time must be ISO-8601 or epoch seconds")
    ms = seconds * 1000
    if not MIN_START_MS <= ms < MAX_START_MS:  # also false for NaN and infinities
        raise _Invalid("bad_time", "start_time outside 2000..2100")
    return int(ms)


def _iso_ms(text: str) -> int:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise _Invalid("bad_time", "start_time is not ISO-8601") from None
    if dt.tzinfo is None:
        raise _Invalid("bad_time", "start_time has no UTC offset")
    return int(dt.timestamp() * 1000)


def _duration(value: object) -> int:
    try:
        seconds = _int(value, "duration_s", 0, MAX_DURATION_S, reason="bad_duration")
    except _Invalid:
        if isinstance(value, float) and 0 <= value <= MAX_DURATION_S:
            return int(value)
        raise
    return seconds


def _int(value: object, name: str, low: int, high: int, reason: str = "bad_type") -> int:
    if isinstance(value, bool):
        raise _Invalid(reason, f"{name} must be an integer")
    if isinstance(value, str) and len(value) <= 20:
        try:
            value = int(value.strip())
        except ValueError:
            raise _Invalid(reason, f"{name} must be an integer") from None
    if not isinstance(value, int):
        raise _Invalid(reason, f"{name} must be an integer")
    if not low <= value <= high:
        raise _Invalid(reason, f"{name} out of range {low}..{high}")
    return value


def _bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) <= 8:
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _Invalid("bad_type", f"{name} must be true or false")


def _text(value: object, name: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and len(value) <= MAX_TEXT_LEN:
        return value
    raise _Invalid("bad_type", f"{name} must be a short string")
