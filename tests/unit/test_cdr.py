"""CDR decoding and validation: exact field values, exact reject reasons, never an exception."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.numbering import CHINA
from streams.cdr import (
    CDR,
    MAX_DURATION_S,
    MAX_ID_LEN,
    MAX_MESSAGE_BYTES,
    MAX_TEXT_LEN,
    REJECT_REASONS,
    REQUIRED,
    Reject,
    decode_message,
    parse_record,
    parse_records,
)

T0_MS = 1_793_581_200_000  # 2026-11-02T01:00:00Z == 09:00 in Shanghai
MISSING = object()  # drop the field from the record
MEGABYTE = "1" * (1024 * 1024)

GOOD: dict[str, object] = {
    "cdr_id": "c-1",
    "caller": "13800138000",
    "callee": "13900139000",
    "start_time": "2026-11-02T09:00:00+08:00",
    "duration_s": 12,
    "answered": True,
}


def rec(**changes: object) -> dict[str, object]:
    out = {**GOOD, **changes}
    return {k: v for k, v in out.items() if v is not MISSING}


def good_cdr(**changes: object) -> CDR:
    base: dict[str, object] = {
        "cdr_id": "c-1",
        "caller": "13800138000",
        "callee": "13900139000",
        "start_ms": T0_MS,
        "duration_s": 12,
        "answered": True,
    }
    return CDR(**{**base, **changes})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- good records

GOOD_CASES = [
    pytest.param(rec(), good_cdr(), id="iso-with-offset"),
    pytest.param(rec(start_time="2026-11-02T01:00:00Z"), good_cdr(), id="iso-zulu"),
    pytest.param(rec(start_time="2026-11-02T01:00:00+00:00"), good_cdr(), id="iso-utc-offset"),
    pytest.param(rec(start_time="2026-11-01T20:00:00-05:00"), good_cdr(), id="iso-negative-offset"),
    pytest.param(
        rec(start_time="2026-11-02T01:00:00.250Z"),
        good_cdr(start_ms=T0_MS + 250),
        id="iso-milliseconds",
    ),
    pytest.param(rec(start_time=1_793_581_200), good_cdr(), id="epoch-int"),
    pytest.param(
        rec(start_time=1_793_581_200.25), good_cdr(start_ms=T0_MS + 250), id="epoch-float"
    ),
    pytest.param(rec(start_time="1793581200"), good_cdr(), id="epoch-string"),
    pytest.param(rec(start_time=" 1793581200 "), good_cdr(), id="epoch-string-padded"),
    pytest.param(
        rec(start_time="1793581200.5"), good_cdr(start_ms=T0_MS + 500), id="epoch-string-float"
    ),
    pytest.param(
        rec(start_time="2000-01-01T00:00:00Z"),
        good_cdr(start_ms=946_684_800_000),
        id="earliest-allowed-time",
    ),
    pytest.param(
        rec(start_time="2099-12-31T23:59:59.999Z"),
        good_cdr(start_ms=4_102_444_799_999),
        id="latest-allowed-time",
    ),
    pytest.param(
        {
            "cdr_id": "c-1",
            "caller": "13800138000",
            "callee": "13900139000",
            "start_time": "2026-11-02T01:00:00Z",
            "duration_s": "12",
            "answered": "true",
            "release_cause": "16",
            "direction": "out",
            "ingress_trunk": "TRUNK-7",
            "attestation": "A",
            "intercepted": "false",
        },
        good_cdr(release_cause=16, direction="out", ingress_trunk="TRUNK-7", attestation="A"),
        id="csv-style-all-strings",
    ),
    pytest.param(
        rec(duration_s="0", answered="false", intercepted="true"),
        good_cdr(duration_s=0, answered=False, intercepted=True),
        id="csv-style-false-and-intercepted",
    ),
    pytest.param(rec(answered="TRUE"), good_cdr(), id="answered-upper-case"),
    pytest.param(rec(answered=" yes "), good_cdr(), id="answered-yes-padded"),
    pytest.param(rec(answered="0"), good_cdr(answered=False), id="answered-string-zero"),
    pytest.param(rec(answered=1), good_cdr(), id="answered-int-one"),
    pytest.param(rec(answered=0), good_cdr(answered=False), id="answered-int-zero"),
    pytest.param(rec(answered=False), good_cdr(answered=False), id="answered-false"),
    pytest.param(rec(caller=13800138000), good_cdr(), id="numeric-caller"),
    pytest.param(rec(callee=13900139000), good_cdr(), id="numeric-callee"),
    pytest.param(rec(caller="+86 138 0013 8000"), good_cdr(), id="caller-plus86-spaced"),
    pytest.param(rec(caller="138-0013-8000"), good_cdr(), id="caller-hyphens"),
    pytest.param(rec(caller="008613800138000"), good_cdr(), id="caller-0086"),
    pytest.param(rec(caller="1795113800138000"), good_cdr(), id="caller-ip-prefix"),
    pytest.param(
        rec(callee="(010) 1234-5678"), good_cdr(callee="1012345678"), id="callee-fixed-trunk-0"
    ),
    pytest.param(
        rec(callee="+44 7700 900123"), good_cdr(callee="00447700900123"), id="callee-international"
    ),
    pytest.param(rec(cdr_id=42), good_cdr(cdr_id="42"), id="numeric-cdr-id"),
    pytest.param(
        rec(cdr_id="x" * MAX_ID_LEN), good_cdr(cdr_id="x" * MAX_ID_LEN), id="cdr-id-at-max"
    ),
    pytest.param(rec(duration_s=MAX_DURATION_S), good_cdr(duration_s=86_400), id="duration-max"),
    pytest.param(rec(duration_s=0), good_cdr(duration_s=0), id="duration-zero"),
    pytest.param(rec(duration_s=" 7 "), good_cdr(duration_s=7), id="duration-string-padded"),
    pytest.param(rec(duration_s=12.9), good_cdr(duration_s=13), id="duration-float-rounded-up"),
    pytest.param(rec(duration_s="12.5"), good_cdr(duration_s=13), id="duration-decimal-string"),
    pytest.param(rec(duration_s="144.9"), good_cdr(duration_s=145), id="duration-decimal-144.9"),
    pytest.param(rec(duration_s="0:02:05"), good_cdr(duration_s=125), id="duration-hh-mm-ss"),
    pytest.param(rec(duration_s="02:05"), good_cdr(duration_s=125), id="duration-mm-ss"),
    pytest.param(rec(start_time=T0_MS), good_cdr(), id="epoch-milliseconds-by-magnitude"),
    pytest.param(rec(start_time=str(T0_MS)), good_cdr(), id="epoch-milliseconds-string"),
    pytest.param(rec(release_cause=0), good_cdr(release_cause=0), id="release-cause-zero"),
    pytest.param(rec(release_cause=127), good_cdr(release_cause=127), id="release-cause-127"),
    pytest.param(rec(release_cause=""), good_cdr(), id="release-cause-empty"),
    pytest.param(rec(release_cause=None), good_cdr(), id="release-cause-null"),
    pytest.param(
        rec(direction="", ingress_trunk="", attestation="", intercepted=""),
        good_cdr(),
        id="optional-strings-empty",
    ),
    pytest.param(
        rec(direction=None, ingress_trunk=None, attestation=None, intercepted=None),
        good_cdr(),
        id="optional-fields-null",
    ),
    pytest.param(
        rec(ingress_trunk="T" * MAX_TEXT_LEN),
        good_cdr(ingress_trunk="T" * MAX_TEXT_LEN),
        id="text-at-max",
    ),
    pytest.param(
        rec(extra="ignored", nested={"a": [1, 2]}, caller_name="Bob"),
        good_cdr(),
        id="unknown-fields-ignored",
    ),
]


@pytest.mark.parametrize(("record", "expected"), GOOD_CASES)
def test_good_record_parses_to_exact_cdr(record: dict[str, object], expected: CDR) -> None:
    assert parse_record(record, CHINA) == expected


def test_same_instant_in_every_time_format_gives_the_same_start_ms() -> None:
    forms = [
        "2026-11-02T09:00:00+08:00",
        "2026-11-02T01:00:00Z",
        "2026-11-02T01:00:00+00:00",
        1_793_581_200,
        1_793_581_200.0,
        "1793581200",
    ]
    got = {form: parse_record(rec(start_time=form), CHINA) for form in forms}
    assert {f: c.start_ms for f, c in got.items() if isinstance(c, CDR)} == dict.fromkeys(
        forms, T0_MS
    )


# --------------------------------------------------------------------------- bad records


def _missing_cases() -> list[object]:
    cases: list[object] = []
    for name in REQUIRED:
        cases.append(pytest.param(rec(**{name: MISSING}), f"missing {name}", id=f"absent-{name}"))
        cases.append(pytest.param(rec(**{name: None}), f"missing {name}", id=f"null-{name}"))
    return cases


@pytest.mark.parametrize(("record", "detail"), _missing_cases())
def test_missing_required_field_names_the_field(record: dict[str, object], detail: str) -> None:
    assert parse_record(record, CHINA) == Reject("missing_field", detail)


def test_empty_object_reports_the_first_required_field() -> None:
    assert parse_record({}, CHINA) == Reject("missing_field", "missing cdr_id")


BAD_CASES = [
    # identifiers
    pytest.param(rec(cdr_id=""), "bad_id", id="cdr-id-empty"),
    pytest.param(rec(cdr_id="x" * (MAX_ID_LEN + 1)), "bad_id", id="cdr-id-too-long"),
    pytest.param(rec(cdr_id=MEGABYTE), "bad_id", id="cdr-id-megabyte"),
    pytest.param(rec(cdr_id=True), "bad_id", id="cdr-id-bool"),
    pytest.param(rec(cdr_id=1.5), "bad_id", id="cdr-id-float"),
    pytest.param(rec(cdr_id={"id": "c-1"}), "bad_id", id="cdr-id-object"),
    pytest.param(rec(cdr_id=["c-1"]), "bad_id", id="cdr-id-list"),
    # numbers
    pytest.param(rec(caller="1380013800O"), "bad_number", id="caller-with-letter-O"),
    pytest.param(rec(caller="abc"), "bad_number", id="caller-letters"),
    pytest.param(rec(caller="12"), "bad_number", id="caller-too-short"),
    pytest.param(rec(caller="1" * 41), "bad_number", id="caller-over-40-chars"),
    pytest.param(rec(caller=MEGABYTE), "bad_number", id="caller-megabyte"),
    pytest.param(rec(caller=True), "bad_number", id="caller-bool"),
    pytest.param(rec(caller=13800138000.0), "bad_number", id="caller-float"),
    pytest.param(rec(caller={"number": "13800138000"}), "bad_number", id="caller-object"),
    pytest.param(rec(caller=["13800138000"]), "bad_number", id="caller-list"),
    pytest.param(rec(callee=""), "bad_number", id="callee-empty"),
    pytest.param(rec(callee="   "), "bad_number", id="callee-blank"),
    pytest.param(rec(callee="+"), "bad_number", id="callee-plus-only"),
    pytest.param(rec(callee="١٣٨٠٠١٣٨٠٠٠"), "bad_number", id="callee-arabic-digits"),
    # times
    pytest.param(rec(start_time="2026-11-02T09:00:00"), "bad_time", id="naive-datetime"),
    pytest.param(rec(start_time="2026-11-02"), "bad_time", id="date-only"),
    pytest.param(rec(start_time="1990-06-01T00:00:00Z"), "bad_time", id="year-1990"),
    pytest.param(rec(start_time="2200-01-01T00:00:00Z"), "bad_time", id="year-2200"),
    pytest.param(rec(start_time="2100-01-01T00:00:00Z"), "bad_time", id="year-2100-exactly"),
    pytest.param(rec(start_time="1999-12-31T23:59:59.999Z"), "bad_time", id="just-before-2000"),
    pytest.param(rec(start_time=644_198_400), "bad_time", id="epoch-1990"),
    pytest.param(rec(start_time=7_258_118_400), "bad_time", id="epoch-2200"),
    pytest.param(rec(start_time=-1), "bad_time", id="epoch-negative"),
    pytest.param(rec(start_time=10**400), "bad_time", id="epoch-enormous-int"),
    pytest.param(rec(start_time="1e300"), "bad_time", id="epoch-string-1e300"),
    pytest.param(rec(start_time="nan"), "bad_time", id="epoch-string-nan"),
    pytest.param(rec(start_time=True), "bad_time", id="bool-true"),
    pytest.param(rec(start_time=False), "bad_time", id="bool-false"),
    pytest.param(rec(start_time="yesterday"), "bad_time", id="not-a-time"),
    pytest.param(rec(start_time=""), "bad_time", id="empty-string"),
    pytest.param(rec(start_time=MEGABYTE), "bad_time", id="megabyte-string"),
    pytest.param(rec(start_time={"ts": 1_793_581_200}), "bad_time", id="object"),
    pytest.param(rec(start_time=[1_793_581_200]), "bad_time", id="list"),
    # durations
    pytest.param(rec(duration_s=-1), "bad_duration", id="duration-negative"),
    pytest.param(rec(duration_s=-0.5), "bad_duration", id="duration-negative-float"),
    pytest.param(rec(duration_s=MAX_DURATION_S + 1), "bad_duration", id="duration-over-a-day"),
    pytest.param(rec(duration_s=10**30), "bad_duration", id="duration-enormous"),
    pytest.param(rec(duration_s=1e30), "bad_duration", id="duration-enormous-float"),
    pytest.param(rec(duration_s=float("nan")), "bad_duration", id="duration-nan"),
    pytest.param(rec(duration_s=float("inf")), "bad_duration", id="duration-inf"),
    pytest.param(rec(duration_s="ten"), "bad_duration", id="duration-words"),
    pytest.param(rec(duration_s="144,9"), "bad_duration", id="duration-decimal-comma"),
    pytest.param(rec(duration_s="1_449"), "bad_duration", id="duration-underscore"),
    pytest.param(rec(duration_s="0:61:00"), "bad_duration", id="duration-clock-minutes-61"),
    pytest.param(rec(duration_s="1e3"), "bad_duration", id="duration-exponent-string"),
    pytest.param(rec(duration_s="-3"), "bad_duration", id="duration-negative-string"),
    pytest.param(rec(duration_s=MEGABYTE), "bad_duration", id="duration-megabyte"),
    pytest.param(rec(duration_s=True), "bad_duration", id="duration-bool"),
    pytest.param(rec(duration_s={"s": 12}), "bad_duration", id="duration-object"),
    # booleans
    pytest.param(rec(answered="maybe"), "bad_type", id="answered-maybe"),
    pytest.param(rec(answered=2), "bad_type", id="answered-int-two"),
    pytest.param(rec(answered=1.0), "bad_type", id="answered-float"),
    pytest.param(rec(answered="true" * 3), "bad_type", id="answered-long-string"),
    pytest.param(rec(answered={"v": True}), "bad_type", id="answered-object"),
    pytest.param(rec(answered=[True]), "bad_type", id="answered-list"),
    pytest.param(rec(intercepted="maybe"), "bad_type", id="intercepted-maybe"),
    # release cause
    pytest.param(rec(release_cause=128), "bad_type", id="release-cause-128"),
    pytest.param(rec(release_cause=-1), "bad_type", id="release-cause-negative"),
    pytest.param(rec(release_cause="abc"), "bad_type", id="release-cause-words"),
    pytest.param(rec(release_cause=16.0), "bad_type", id="release-cause-float"),
    pytest.param(rec(release_cause=True), "bad_type", id="release-cause-bool"),
    pytest.param(rec(release_cause=[16]), "bad_type", id="release-cause-list"),
    # optional text
    pytest.param(rec(direction="x" * (MAX_TEXT_LEN + 1)), "bad_type", id="direction-too-long"),
    pytest.param(rec(ingress_trunk=MEGABYTE), "bad_type", id="trunk-megabyte"),
    pytest.param(rec(attestation={"level": "A"}), "bad_type", id="attestation-object"),
    pytest.param(rec(direction=["out"]), "bad_type", id="direction-list"),
    pytest.param(rec(direction=7), "bad_type", id="direction-int"),
]


@pytest.mark.parametrize(("record", "reason"), BAD_CASES)
def test_bad_record_is_rejected_with_exact_reason(record: dict[str, object], reason: str) -> None:
    got = parse_record(record, CHINA)
    assert isinstance(got, Reject)
    assert got.reason == reason
    assert got.detail
    assert len(got.detail) <= 200


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (rec(start_time="2026-11-02T09:00:00"), "start_time has no UTC offset"),
        (rec(start_time="1990-06-01T00:00:00Z"), "start_time outside 2000..2100"),
        (rec(start_time="yesterday"), "start_time is not ISO-8601"),
        (rec(duration_s=86_401), "duration_s out of range 0..86400"),
        (rec(release_cause=128), "release_cause out of range 0..127"),
        (rec(caller="abc"), "caller is not a phone number"),
        (rec(callee=""), "callee is not a phone number"),
        (rec(answered="maybe"), "answered must be true or false"),
    ],
    ids=["naive", "1990", "not-iso", "duration", "release-cause", "caller", "callee", "answered"],
)
def test_reject_detail_says_what_is_wrong(value: dict[str, object], detail: str) -> None:
    assert parse_record(value, CHINA).detail == detail  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "value",
    [None, 42, "text", [GOOD], (1, 2), b"{}"],
    ids=["none", "int", "str", "list", "tuple", "bytes"],
)
def test_non_mapping_is_not_an_object(value: object) -> None:
    got = parse_record(value, CHINA)
    assert isinstance(got, Reject)
    assert got.reason == "not_an_object"
    assert type(value).__name__ in got.detail


NON_FINITE_START = [
    pytest.param(float("nan"), id="float-nan"),
    pytest.param(float("inf"), id="float-inf"),
    pytest.param(float("-inf"), id="float-minus-inf"),
    pytest.param(1e308, id="float-1e308-overflows-when-scaled"),
    pytest.param("inf", id="string-inf"),
    pytest.param("-Infinity", id="string-minus-infinity"),
    pytest.param("1e309", id="string-1e309"),
]


@pytest.mark.parametrize("start_time", NON_FINITE_START)
def test_non_finite_start_time_is_rejected_not_raised(start_time: object) -> None:
    assert parse_record(rec(start_time=start_time), CHINA) == Reject(
        "bad_time", "start_time outside 2000..2100"
    )


def test_decode_message_with_string_inf_start_time_is_rejected_not_raised() -> None:
    got = decode_message(orjson.dumps(rec(start_time="inf")), CHINA)
    assert [r.reason for r in got] == ["bad_time"]  # type: ignore[union-attr]


def test_parse_records_keeps_order_and_length() -> None:
    got = parse_records([rec(cdr_id="a"), 5, rec(cdr_id="b", caller="x")], CHINA)
    assert got == [
        good_cdr(cdr_id="a"),
        Reject("not_an_object", "expected an object, got int"),
        Reject("bad_number", "caller is not a phone number"),
    ]


# --------------------------------------------------------------------------- decode_message


def test_decode_single_object() -> None:
    assert decode_message(orjson.dumps(GOOD), CHINA) == [good_cdr()]


def test_decode_array_checks_each_position() -> None:
    doc = [
        rec(cdr_id="a"),
        42,
        rec(cdr_id="b", callee=MISSING),
        rec(cdr_id="c", start_time="1990-01-01T00:00:00Z"),
        rec(cdr_id="d", caller="+86 138 0013 8000", answered="false"),
        "text",
        [rec(cdr_id="e")],
        None,
        {},
    ]
    got = decode_message(orjson.dumps(doc), CHINA)
    assert len(got) == len(doc)
    assert got[0] == good_cdr(cdr_id="a")
    assert got[1] == Reject("not_an_object", "expected an object, got int")
    assert got[2] == Reject("missing_field", "missing callee")
    assert isinstance(got[3], Reject) and got[3].reason == "bad_time"
    assert got[4] == good_cdr(cdr_id="d", answered=False)
    assert got[5] == Reject("not_an_object", "expected an object, got str")
    assert got[6] == Reject("not_an_object", "expected an object, got list")
    assert got[7] == Reject("not_an_object", "expected an object, got NoneType")
    assert got[8] == Reject("missing_field", "missing cdr_id")


def test_decode_empty_array_yields_nothing() -> None:
    assert decode_message(b"[]", CHINA) == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(None, "malformed_json", id="none"),
        pytest.param(b"", "malformed_json", id="empty-bytes"),
        pytest.param(b"   ", "malformed_json", id="whitespace"),
        pytest.param(b"{", "malformed_json", id="truncated-object"),
        pytest.param(b'{"cdr_id": "a",}', "malformed_json", id="trailing-comma"),
        pytest.param(b"{'cdr_id': 'a'}", "malformed_json", id="single-quotes"),
        pytest.param(b'{"a": NaN}', "malformed_json", id="nan-literal"),
        pytest.param(b'{"a": 1e400}', "malformed_json", id="infinite-number"),
        pytest.param(b"\xff\xfe\xfd", "malformed_json", id="invalid-utf8"),
        pytest.param(b'{"cdr_id": "\xc3\x28"}', "malformed_json", id="invalid-utf8-in-string"),
        pytest.param(b"{}{}", "malformed_json", id="two-documents"),
        pytest.param(b"42", "not_an_object", id="json-int"),
        pytest.param(b'"hello"', "not_an_object", id="json-string"),
        pytest.param(b"null", "not_an_object", id="json-null"),
        pytest.param(b"true", "not_an_object", id="json-bool"),
        pytest.param(b"[" * 100_000, "malformed_json", id="100k-nested-arrays-unclosed"),
        pytest.param(
            b"[" * 100_000 + b"]" * 100_000, "malformed_json", id="100k-nested-arrays-closed"
        ),
        pytest.param(b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "malformed_json", id="deep-objects"),
    ],
)
def test_decode_bad_message_is_one_reject(value: bytes | None, reason: str) -> None:
    got = decode_message(value, CHINA)
    assert len(got) == 1
    assert isinstance(got[0], Reject)
    assert got[0].reason == reason
    assert 0 < len(got[0].detail) <= 120


def test_decode_message_at_size_limit_is_parsed_and_one_byte_over_is_too_large() -> None:
    body = orjson.dumps(GOOD)
    at_limit = body + b" " * (MAX_MESSAGE_BYTES - len(body))
    assert len(at_limit) == MAX_MESSAGE_BYTES
    assert decode_message(at_limit, CHINA) == [good_cdr()]
    over = at_limit + b" "
    assert decode_message(over, CHINA) == [Reject("too_large", f"message of {len(over)} bytes")]


# --------------------------------------------------------------------------- properties

FIELDS = [*REQUIRED, "release_cause", "direction", "ingress_trunk", "attestation", "intercepted"]
JUNK_KEYS = ["", "Caller", "cdr-id", "x", "\u0000", "start_time "]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.lists(st.integers()),
)


RECORDS = st.dictionaries(st.sampled_from(FIELDS + JUNK_KEYS), VALUES, max_size=14)


@settings(max_examples=300, deadline=None)
@given(RECORDS)
def test_parse_record_never_raises_and_reasons_are_closed(record: dict[str, object]) -> None:
    got = parse_record(record, CHINA)
    if isinstance(got, Reject):
        assert got.reason in REJECT_REASONS
        assert isinstance(got.detail, str) and got.detail
    else:
        assert isinstance(got, CDR)
        assert got.caller.isascii() and got.caller.isdigit()
        assert 946_684_800_000 <= got.start_ms < 4_102_444_800_000
        assert 0 <= got.duration_s <= MAX_DURATION_S


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=11))
def test_parse_record_on_mostly_valid_records_never_raises(changes: dict[str, object]) -> None:
    # Start from a valid record so the later validation steps are reached too.
    record = {**GOOD, **changes}
    got = parse_record(record, CHINA)
    assert isinstance(got, CDR) or got.reason in REJECT_REASONS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_decode_message_never_raises_on_arbitrary_bytes(value: bytes) -> None:
    got = decode_message(value, CHINA)
    assert isinstance(got, list)
    for item in got:
        assert isinstance(item, CDR) or item.reason in REJECT_REASONS


SECRET = "13812345678"
SECRET_FORMS = st.sampled_from(
    [SECRET, "+86 138 1234 5678", "138-1234-5678", "008613812345678", int(SECRET), SECRET + "x"]
)


@settings(max_examples=300, deadline=None)
@given(
    caller=SECRET_FORMS,
    callee=SECRET_FORMS,
    changes=st.dictionaries(
        st.sampled_from(["cdr_id", "start_time", "duration_s", "answered", "release_cause"]),
        VALUES,
        max_size=5,
    ),
)
def test_reject_detail_never_contains_the_phone_number(
    caller: object, callee: object, changes: dict[str, object]
) -> None:
    got = parse_record(rec(caller=caller, callee=callee, **changes), CHINA)
    if isinstance(got, Reject):
        assert got.reason in REJECT_REASONS
        assert "12345678" not in got.detail
        assert "1234 5678" not in got.detail


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(min_value=0, max_value=200), junk=st.binary(min_size=0, max_size=3))
def test_malformed_json_detail_never_contains_the_phone_number(cut: int, junk: bytes) -> None:
    body = orjson.dumps(rec(caller=SECRET, callee="+86 138 1234 5678"))
    value = body[:cut] + junk + body[cut + 1 :]
    for item in decode_message(value, CHINA):
        if isinstance(item, Reject):
            assert item.reason in REJECT_REASONS
            assert "12345678" not in item.detail


def test_privacy_check_is_not_vacuous() -> None:
    # The secret really reaches the parser: a clean record carries it into the CDR.
    assert parse_record(rec(caller="+86 138 1234 5678"), CHINA).caller == SECRET  # type: ignore[union-attr]
    rejected = parse_record(rec(caller=SECRET + "x"), CHINA)
    assert rejected == Reject("bad_number", "caller is not a phone number")
