"""One reading of a record: every legal form of every field, through every carrier (the parser
directly, a Kafka message alone or in an array, JSON Lines, CSV, gzip, standard input) and the
ingest shipper's line decoder, gives the same CDR."""

from __future__ import annotations

import csv
import gzip
import io
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.numbering import CHINA
from streams.cdr import CDR, Reject, decode_message, parse_record
from streams.files import read_records
from streams.formats import get

TZ = ZoneInfo("Asia/Shanghai")
FIELDS = ("cdr_id", "caller", "callee", "start_time", "duration_s", "answered", "release_cause")
LOW_MS = 1_700_000_000_000
HIGH_MS = 1_900_000_000_000


@dataclass(frozen=True)
class Call:
    """One call attempt, exactly: what every form must read back to."""

    ident: str
    caller: str
    callee: str
    start_us: int  # microseconds since the epoch
    duration_ms: int
    answered: bool
    cause: int | None


CALLS = st.builds(
    Call,
    ident=st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True),
    caller=st.from_regex(r"13[0-9]{9}", fullmatch=True),
    callee=st.from_regex(r"1[5-9][0-9]{9}", fullmatch=True),
    start_us=st.integers(LOW_MS * 1000, HIGH_MS * 1000),
    duration_ms=st.integers(0, 86_400_000),
    answered=st.booleans(),
    cause=st.none() | st.integers(0, 127),
)


def expected(call: Call) -> CDR:
    """Start times are floored to the millisecond, durations rounded up to the second."""
    return CDR(
        cdr_id=call.ident,
        caller=call.caller,
        callee=call.callee,
        start_ms=call.start_us // 1000,
        duration_s=-(-call.duration_ms // 1000),
        answered=call.answered,
        release_cause=call.cause,
    )


@st.composite
def start_forms(draw: st.DrawFn, us: int) -> object:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    ms = us // 1000
    whole_ms = us - us % 1000  # forms that cannot carry microseconds carry milliseconds
    form = draw(st.sampled_from(["iso-z", "iso-offset", "space", "local", "s", "ms", "float"]))
    if form == "iso-z":
        return moment.isoformat().replace("+00:00", "Z")
    if form == "iso-offset":
        offset = timedelta(hours=draw(st.integers(-11, 13)))
        return moment.astimezone(timezone(offset)).isoformat()
    if form == "space":
        return moment.astimezone(TZ).isoformat(sep=" ")
    if form == "local":
        return moment.astimezone(TZ).replace(tzinfo=None).isoformat(sep=draw(st.sampled_from("T ")))
    if form == "s":
        text = str(Decimal(us) / 1_000_000)
        return text if draw(st.booleans()) else f" {text} "
    if form == "ms":
        return ms if draw(st.booleans()) else str(ms)
    # A JSON float of epoch seconds with at most three decimals (what a double keeps exactly
    # enough of, near 2030, for the millisecond to survive).
    return float(Decimal(whole_ms) / 1_000_000)


def duration_forms(draw: st.DrawFn, ms: int) -> object:
    if ms % 1000 == 0 and draw(st.booleans()):
        seconds = ms // 1000
        choice = draw(st.sampled_from(["int", "str", "clock"]))
        if choice == "int":
            return seconds
        if choice == "str":
            return str(seconds)
        h, rest = divmod(seconds, 3600)
        return f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}" if h < 24 else str(seconds)
    text = str(Decimal(ms) / 1000)
    return text if draw(st.booleans()) else float(text)


def answered_forms(draw: st.DrawFn, value: bool) -> object:
    forms = ["true", "1", "yes", "y", "t"] if value else ["false", "0", "no", "n", "f"]
    text = draw(st.sampled_from(forms))
    text = "".join(c.upper() if draw(st.booleans()) else c for c in text)
    return draw(st.sampled_from([value, int(value), text]))


@st.composite
def records(draw: st.DrawFn) -> tuple[Call, dict[str, object]]:
    call = draw(CALLS)
    rec: dict[str, object] = {
        "cdr_id": call.ident,
        "caller": call.caller,
        "callee": call.callee,
        "start_time": draw(start_forms(call.start_us)),
        "duration_s": duration_forms(draw, call.duration_ms),
        "answered": answered_forms(draw, call.answered),
        "release_cause": call.cause
        if call.cause is None or draw(st.booleans())
        else str(call.cause),
    }
    return call, rec


def cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def csv_text(recs: list[dict[str, object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for rec in recs:
        writer.writerow([cell(rec.get(f)) for f in FIELDS])
    return out.getvalue()


def jsonl_text(recs: list[dict[str, object]]) -> str:
    return "".join(orjson.dumps(r).decode() + "\n" for r in recs)


def via_files(tmp: Path, recs: list[dict[str, object]]) -> dict[str, list[CDR | Reject]]:
    got: dict[str, list[CDR | Reject]] = {}
    texts = {"jsonl": jsonl_text(recs), "csv": csv_text(recs)}
    for kind, text in texts.items():
        plain = tmp / f"cdrs.{kind}"
        plain.write_text(text, encoding="utf-8", newline="")
        got[kind] = list(read_records(str(plain), CHINA, tz=TZ))
        packed = tmp / f"cdrs.{kind}.gz"
        with gzip.open(packed, "wt", encoding="utf-8", newline="") as fh:
            fh.write(text)
        got[f"{kind}.gz"] = list(read_records(str(packed), CHINA, tz=TZ))
        saved = sys.stdin
        sys.stdin = io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8")
        try:
            got[f"{kind}-stdin"] = list(read_records("-", CHINA, tz=TZ))
        finally:
            sys.stdin = saved
        # The shipper's reading: line by line, the header decided by the first line.
        contract = get("contract")
        lines = text.splitlines()
        header = None
        if contract.has_header(lines[0]):
            header = [c.strip() for c in next(csv.reader([lines[0]]))]
            lines = lines[1:]
        rows = [row for line in lines for row in contract.decode_line(line, header)]
        got[f"{kind}-lines"] = [
            r if isinstance(r, Reject) else parse_record(r, CHINA, tz=TZ) for r in rows
        ]
    arrays = tmp / "arrays.jsonl"
    arrays.write_bytes(orjson.dumps(recs) + b"\n")
    got["json-array-file"] = list(read_records(str(arrays), CHINA, tz=TZ))
    return got


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(records(), min_size=1, max_size=8))
def test_every_form_through_every_carrier_gives_the_same_cdr(
    tmp_path: Path, drawn: list[tuple[Call, dict[str, object]]]
) -> None:
    calls = [c for c, _ in drawn]
    recs = [r for _, r in drawn]
    want = [expected(c) for c in calls]
    assert [parse_record(r, CHINA, tz=TZ) for r in recs] == want
    assert [x for r in recs for x in decode_message(orjson.dumps(r), CHINA, tz=TZ)] == want
    assert decode_message(orjson.dumps(recs), CHINA, tz=TZ) == want
    for carrier, got in via_files(tmp_path, recs).items():
        assert got == want, carrier


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("2026-11-02T01:00:00Z", 1_793_581_200_000),
        ("2026-11-02 09:00:00+08:00", 1_793_581_200_000),
        ("2026-11-02T09:00:00", 1_793_581_200_000),  # local, Asia/Shanghai
        ("2026-11-02 09:00:00.9999", 1_793_581_200_999),  # floored, never rounded up
        ("2026-11-02T01:00:00.123456+00:00", 1_793_581_200_123),
        (1_793_581_200, 1_793_581_200_000),
        (1_793_581_200_123, 1_793_581_200_123),  # milliseconds, by magnitude
        ("1793581200.123", 1_793_581_200_123),
        (1793581200.123, 1_793_581_200_123),
        ("1793581200123", 1_793_581_200_123),
    ],
)
def test_start_time_forms(value: object, ms: int) -> None:
    got = parse_record({**BASE, "start_time": value}, CHINA, tz=TZ)
    assert isinstance(got, CDR) and got.start_ms == ms


BASE: dict[str, object] = {
    "cdr_id": "x",
    "caller": "13800138000",
    "callee": "13900139000",
    "start_time": 1_793_581_200,
    "duration_s": 0,
    "answered": False,
}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(144.9, 145), ("144.9", 145), (" 144.0 ", 144), ("0:02:24.9", 145), (144, 144), ("0", 0)],
)
def test_decimal_durations_round_up(value: object, seconds: int) -> None:
    got = parse_record({**BASE, "duration_s": value}, CHINA)
    assert isinstance(got, CDR) and got.duration_s == seconds


@pytest.mark.parametrize("value", ["144,9", "1_449", "1e2", "-1", "12:60", "inf", "0x10", ""])
def test_bad_durations_are_rejected_never_guessed(value: str) -> None:
    got = parse_record({**BASE, "duration_s": value}, CHINA)
    assert isinstance(got, Reject) and got.reason in ("bad_duration", "missing_field")


def test_a_local_time_without_a_zone_to_read_it_in_is_rejected() -> None:
    got = parse_record({**BASE, "start_time": "2026-11-02 09:00:00"}, CHINA)
    assert got == Reject("bad_time", "start_time has no UTC offset")
