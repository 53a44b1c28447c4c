"""CDR records: decoding, validation and normalisation of one call attempt.

Every record either becomes a :class:`CDR` or a :class:`Reject` with a reason from
:data:`REJECT_REASONS` (a closed set, so it is safe as a metric label). Nothing here raises
on bad input. This is the one reading of a record: files, standard input, Kafka messages and
every format adapter (streams.formats) end here, so one call attempt gives one CDR whatever
carried it (README "CDR (input)": accepted forms and rounding).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
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
# An epoch number at least this large is milliseconds, below it seconds. Within 2000..2100 the
# two never meet: seconds stay under 4.2e9, milliseconds start at 9.4e11.
EPOCH_MS_FROM = 100_000_000_000

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
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Plain decimal numbers only: no "1_000", no "144,9", no "inf"/"nan" (float() takes them all).
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")
_SECONDS = re.compile(r"\d{1,6}(?:\.\d{1,9})?")
_CLOCK = re.compile(r"(?:(\d{1,2}):)?(\d{1,2}):(\d{2}(?:\.\d{1,9})?)")


def parse_record(obj: object, plan: NumberingPlan, tz: tzinfo | None = None) -> CDR | Reject:
    """Validate one decoded record (a JSON object or a CSV row dict). ``tz`` reads a
    start_time without a UTC offset (settings.timezone); without it such a time is rejected."""
    if not isinstance(obj, Mapping):
        return Reject("not_an_object", f"expected an object, got {type(obj).__name__}")
    try:
        return _parse(obj, plan, tz)
    except _Invalid as exc:
        return Reject(exc.reason, exc.detail)


def decode_message(
    value: bytes | None, plan: NumberingPlan, tz: tzinfo | None = None
) -> list[CDR | Reject]:
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
        return [parse_record(item, plan, tz) for item in doc]
    return [parse_record(doc, plan, tz)]


def parse_records(
    objs: Iterable[object], plan: NumberingPlan, tz: tzinfo | None = None
) -> list[CDR | Reject]:
    return [parse_record(o, plan, tz) for o in objs]


def to_contract(cdr: CDR) -> dict[str, object]:
    """The contract record of a CDR (start_time in epoch ms): what ``dialwatch ingest``
    publishes; parse_record gives the same CDR back."""
    doc: dict[str, object] = {
        "cdr_id": cdr.cdr_id,
        "caller": cdr.caller,
        "callee": cdr.callee,
        "start_time": cdr.start_ms,
        "duration_s": cdr.duration_s,
        "answered": cdr.answered,
    }
    optional = {
        "release_cause": cdr.release_cause,
        "direction": cdr.direction,
        "ingress_trunk": cdr.ingress_trunk,
        "attestation": cdr.attestation,
    }
    doc.update((k, v) for k, v in optional.items() if v is not None)
    if cdr.intercepted:
        doc["intercepted"] = True
    return doc


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def _parse(obj: Mapping[str, Any], plan: NumberingPlan, tz: tzinfo | None) -> CDR:
    for name in REQUIRED:
        if obj.get(name) is None:
            raise _Invalid("missing_field", f"missing {name}")
    # The order of _READERS (streams.fastcsv reads by it), written out: this is the worker's
    # hot path. tests/unit/test_fastcsv.py holds the two readings equal.
    get = obj.get
    return CDR(
        _cdr_id(obj["cdr_id"], plan, tz),
        _number(obj["caller"], "caller", plan),
        _number(obj["callee"], "callee", plan),
        _start_ms(obj["start_time"], tz),
        _duration(obj["duration_s"]),
        _bool(obj["answered"], "answered"),
        _release_cause(get("release_cause"), plan, tz),
        _text(get("direction"), "direction"),
        _text(get("ingress_trunk"), "ingress_trunk"),
        _text(get("attestation"), "attestation"),
        _intercepted(get("intercepted"), plan, tz),
    )


def _cdr_id(value: object, plan: NumberingPlan, tz: tzinfo | None) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LEN:
        raise _Invalid("bad_id", "cdr_id must be a non-empty string of at most 128 characters")
    return value


def _release_cause(value: object, plan: NumberingPlan, tz: tzinfo | None) -> int | None:
    return None if value in (None, "") else _int(value, "release_cause", 0, 127)


def _intercepted(value: object, plan: NumberingPlan, tz: tzinfo | None) -> bool:
    return False if value in (None, "") else _bool(value, "intercepted")


def _text_field(name: str) -> Callable[[object, NumberingPlan, tzinfo | None], str | None]:
    return lambda value, plan, tz: _text(value, name)


# Input field -> its reading, in the order of CDR's fields (one per field).
_READERS: tuple[tuple[str, Callable[[object, NumberingPlan, tzinfo | None], Any]], ...] = (
    ("cdr_id", _cdr_id),
    ("caller", lambda value, plan, tz: _number(value, "caller", plan)),
    ("callee", lambda value, plan, tz: _number(value, "callee", plan)),
    ("start_time", lambda value, plan, tz: _start_ms(value, tz)),
    ("duration_s", lambda value, plan, tz: _duration(value)),
    ("answered", lambda value, plan, tz: _bool(value, "answered")),
    ("release_cause", _release_cause),
    ("direction", _text_field("direction")),
    ("ingress_trunk", _text_field("ingress_trunk")),
    ("attestation", _text_field("attestation")),
    ("intercepted", _intercepted),
)
FIELDS = tuple(name for name, _ in _READERS)


def read_field(
    name: str, values: Iterable[object], plan: NumberingPlan, tz: tzinfo | None = None
) -> list[Any]:
    """Each of ``values`` of input field ``name`` read as ``parse_record`` reads it: the CDR's
    value, or the Reject it gives (columnar readers, streams.fastcsv, check each distinct value
    once). A None of a required field is not read here (``missing_field``)."""
    read = dict(_READERS)[name]
    out: list[Any] = []
    for value in values:
        try:
            out.append(read(value, plan, tz))
        except _Invalid as exc:
            out.append(Reject(exc.reason, exc.detail))
    return out


def parse_start_ms(value: object, tz: tzinfo | None = None) -> int | Reject:
    """An event time (ISO-8601, epoch seconds or milliseconds) in epoch ms, or why not."""
    try:
        return _start_ms(value, tz)
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


_NON_FINITE = frozenset({"inf", "infinity", "nan"})
_BAD_TIME = "start_time must be ISO-8601 or epoch seconds or milliseconds"


def _start_ms(value: object, tz: tzinfo | None) -> int:
    """Epoch milliseconds, rounded down (floor) from the exact written value."""
    if isinstance(value, bool):
        raise _Invalid("bad_time", _BAD_TIME)
    if isinstance(value, int):
        ms = value if abs(value) >= EPOCH_MS_FROM else value * 1000
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Invalid("bad_time", "start_time outside 2000..2100")
        # repr is the shortest text giving this float: the number as the producer wrote it.
        ms = _epoch_ms(Decimal(repr(value)))
    elif isinstance(value, str) and len(value) <= 40:
        text = value.strip()
        if _DECIMAL.fullmatch(text):
            ms = _epoch_ms(Decimal(text))
        elif text.lower().lstrip("+-") in _NON_FINITE:
            raise _Invalid("bad_time", "start_time outside 2000..2100")
        else:
            ms = _iso_ms(text, tz)
    else:
        raise _Invalid("bad_time", _BAD_TIME)
    if not MIN_START_MS <= ms < MAX_START_MS:
        raise _Invalid("bad_time", "start_time outside 2000..2100")
    return ms


def _epoch_ms(number: Decimal) -> int:
    if abs(number) >= 10**15:  # far outside either range; spares quantize a huge exponent
        raise _Invalid("bad_time", "start_time outside 2000..2100")
    scaled = number if abs(number) >= EPOCH_MS_FROM else number * 1000
    return int(scaled.to_integral_value(ROUND_FLOOR))


def _iso_ms(text: str, tz: tzinfo | None) -> int:
    try:
        dt = datetime.fromisoformat(text)  # also "Z", a space for "T", fractions
    except ValueError:
        raise _Invalid("bad_time", "start_time is not ISO-8601") from None
    if dt.tzinfo is None:
        if tz is None:
            raise _Invalid("bad_time", "start_time has no UTC offset")
        dt = dt.replace(tzinfo=tz)  # an ambiguous wall time (DST end) is its first instant
    return (dt - _EPOCH) // _MS


def _duration(value: object) -> int:
    """Whole seconds, rounded up: with the integer short-call threshold (policy short_call_s),
    ``ceil(d) <= N`` exactly when ``d <= N``, so no detector loses a fraction it could use."""
    if isinstance(value, bool):
        raise _Invalid("bad_duration", "duration_s must be a number of seconds")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Invalid("bad_duration", "duration_s must be a number of seconds")
        seconds = math.ceil(value) if value >= 0 else -1
    elif isinstance(value, str) and len(value) <= 20:
        seconds = _duration_text(value.strip())
    else:
        raise _Invalid("bad_duration", "duration_s must be a number of seconds")
    if not 0 <= seconds <= MAX_DURATION_S:
        raise _Invalid("bad_duration", f"duration_s out of range 0..{MAX_DURATION_S}")
    return seconds


def _duration_text(text: str) -> int:
    if text.isdigit():
        return int(text)
    if _SECONDS.fullmatch(text):
        return int(Decimal(text).to_integral_value(ROUND_CEILING))
    clock = _CLOCK.fullmatch(text)
    if clock:
        hours, minutes, seconds = clock.groups()
        if int(minutes) >= 60 or Decimal(seconds) >= 60:
            raise _Invalid("bad_duration", "duration_s as hh:mm:ss has minutes or seconds over 59")
        total = Decimal(seconds) + 60 * int(minutes) + 3600 * int(hours or 0)
        return int(total.to_integral_value(ROUND_CEILING))
    if text.startswith("-") or _DECIMAL.fullmatch(text):
        raise _Invalid("bad_duration", f"duration_s out of range 0..{MAX_DURATION_S}")
    raise _Invalid(
        "bad_duration", "duration_s must be seconds (a decimal point, not a comma) or hh:mm:ss"
    )


def _int(value: object, name: str, low: int, high: int, reason: str = "bad_type") -> int:
    if isinstance(value, bool):
        raise _Invalid(reason, f"{name} must be an integer")
    if isinstance(value, str) and len(value) <= 20:
        text = value.strip()
        if not text.lstrip("+-").isdigit():
            raise _Invalid(reason, f"{name} must be an integer")
        value = int(text)
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


def decimal_text(value: Decimal) -> str:
    """A Decimal as plain text (no exponent) for the contract's decimal fields."""
    return format(value, "f")
