"""Observations: spoofed identities, trunk ids, caller and derived observations, the wire form."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.numbering import CHINA
from streams.cdr import CDR, Reject
from streams.observe import UNASSERTED, Obs, caller_obs, derived_obs, is_spoofed, trunk_id
from tests.factories import T0, cdr

INTL = ("intl-",)
MOBILE = "13812345678"
MVNO = "17012345678"
FIXED = "1012345678"  # Beijing, trunk 0 removed
SERVICE = "95588"
LOCAL = "87654321"
FOREIGN = "00447700900123"
VICTIM = "13911112222"
SAFE_KEY_PART = re.compile(r"^[A-Za-z0-9._-]{1,40}$")


def call(
    caller: str = MOBILE,
    *,
    callee: str = VICTIM,
    trunk: str | None = None,
    attestation: str | None = None,
    release_cause: int | None = None,
    n: int = 1,
    at_s: float = T0,
    answered: bool = False,
) -> CDR:
    base = cdr(caller, at_s, n, callee=callee, answered=answered)
    return replace(base, ingress_trunk=trunk, attestation=attestation, release_cause=release_cause)


# --------------------------------------------------------------------------- is_spoofed


@pytest.mark.parametrize(
    ("caller", "trunk", "attestation", "prefixes", "spoofed"),
    [
        pytest.param(MOBILE, "core-1", "C", INTL, True, id="attestation-C"),
        pytest.param(MOBILE, "core-1", "c", INTL, True, id="attestation-lower-c"),
        pytest.param(MOBILE, "core-1", " C ", INTL, True, id="attestation-padded-C"),
        pytest.param(MOBILE, None, "C", INTL, True, id="attestation-C-no-trunk"),
        pytest.param(FOREIGN, "core-1", "C", INTL, True, id="attestation-C-foreign-caller"),
        pytest.param(MOBILE, "core-1", "A", INTL, False, id="attestation-A"),
        pytest.param(MOBILE, "core-1", "B", INTL, False, id="attestation-B"),
        pytest.param(MOBILE, "core-1", None, INTL, False, id="no-attestation"),
        pytest.param(MOBILE, None, None, INTL, False, id="no-attestation-no-trunk"),
        pytest.param(MOBILE, "core-1", "CC", INTL, False, id="attestation-CC-is-not-C"),
        pytest.param(MOBILE, "intl-gw1", None, INTL, True, id="mobile-on-intl"),
        pytest.param(MVNO, "intl-gw1", None, INTL, True, id="mvno-on-intl"),
        pytest.param(FIXED, "intl-gw1", None, INTL, True, id="fixed-on-intl"),
        pytest.param(SERVICE, "intl-gw1", None, INTL, True, id="service-on-intl"),
        pytest.param(LOCAL, "intl-gw1", None, INTL, True, id="local-on-intl"),
        pytest.param(MOBILE, "intl-gw1", "A", INTL, True, id="mobile-on-intl-even-if-A"),
        pytest.param(FOREIGN, "intl-gw1", None, INTL, False, id="foreign-on-intl"),
        pytest.param(FOREIGN, "intl-gw1", "A", INTL, False, id="foreign-on-intl-A"),
        pytest.param(MOBILE, "core-1", None, INTL, False, id="mobile-on-core"),
        pytest.param(FIXED, "core-1", None, INTL, False, id="fixed-on-core"),
        pytest.param(MOBILE, "gw-intl-1", None, INTL, False, id="prefix-not-substring"),
        pytest.param(MOBILE, "ext-9", None, ("ext-", "gw-int"), True, id="custom-first"),
        pytest.param(MOBILE, "gw-int3", None, ("ext-", "gw-int"), True, id="custom-second"),
        pytest.param(MOBILE, "intl-1", None, ("ext-", "gw-int"), False, id="custom-not-intl"),
        pytest.param(FOREIGN, "ext-9", None, ("ext-",), False, id="custom-foreign"),
        pytest.param(MOBILE, "intl-1", None, (), False, id="no-prefixes"),
    ],
)
def test_is_spoofed(
    caller: str,
    trunk: str | None,
    attestation: str | None,
    prefixes: tuple[str, ...],
    spoofed: bool,
) -> None:
    assert (
        is_spoofed(call(caller, trunk=trunk, attestation=attestation), prefixes, CHINA) is spoofed
    )


# --------------------------------------------------------------------------- trunk_id


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("core-1", id="plain"),
        pytest.param("intl-gw.01", id="dots"),
        pytest.param("A_b-9", id="underscore"),
        pytest.param("x", id="one-char"),
        pytest.param("t" * 40, id="forty-chars"),
    ],
)
def test_trunk_id_keeps_plain_ids(raw: str) -> None:
    assert trunk_id(raw) == raw


@pytest.mark.parametrize("raw", [None, ""])
def test_trunk_id_of_missing_trunk_is_unknown(raw: str | None) -> None:
    assert trunk_id(raw) == "unknown"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("intl gw 1", id="spaces"),
        pytest.param("intl/gw/1", id="slashes"),
        pytest.param("sip:gw1", id="colon"),
        pytest.param("dw:{p0}:n:x", id="key-like"),
        pytest.param("{p3}", id="braces"),
        pytest.param("t" * 41, id="forty-one-chars"),
        pytest.param("国际-1", id="non-ascii"),
        pytest.param("ｉｎｔｌ-1", id="fullwidth"),
        pytest.param("gw1\n", id="trailing-newline"),
        pytest.param(" ", id="blank"),
    ],
)
def test_trunk_id_hashes_unsafe_ids(raw: str) -> None:
    got = trunk_id(raw)
    assert re.fullmatch(r"h-[0-9a-f]{16}", got)
    assert trunk_id(raw) == got  # stable
    assert SAFE_KEY_PART.match(got)
    assert not set(got) & set("{}: ")


def test_trunk_id_hashes_distinct_raw_ids_apart() -> None:
    raws = ["intl gw 1", "intl gw 2", "sip:gw1", "sip:gw2", "t" * 41, "t" * 42]
    assert len({trunk_id(r) for r in raws}) == len(raws)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=80)))
def test_trunk_id_is_always_safe_in_a_key(raw: str | None) -> None:
    got = trunk_id(raw)
    assert SAFE_KEY_PART.match(got), repr(got)
    assert trunk_id(raw) == got


# --------------------------------------------------------------------------- caller_obs


@pytest.mark.parametrize(
    ("trunk", "attestation"),
    [
        pytest.param("core-1", "C", id="attestation-C"),
        pytest.param("intl-3", None, id="domestic-on-intl"),
    ],
)
def test_caller_obs_is_none_for_a_spoofed_call(trunk: str, attestation: str | None) -> None:
    assert caller_obs(call(trunk=trunk, attestation=attestation), INTL, CHINA) is None


@pytest.mark.parametrize(
    ("release_cause", "cause"),
    [
        pytest.param(None, -1, id="no-cause"),
        pytest.param(0, 0, id="cause-0-kept"),
        pytest.param(1, 1, id="unallocated"),
        pytest.param(127, 127, id="max-cause"),
    ],
)
def test_caller_obs_of_an_asserted_call(release_cause: int | None, cause: int) -> None:
    c = call(MOBILE, trunk="core-1", attestation="A", release_cause=release_cause, answered=True)
    assert caller_obs(c, INTL, CHINA) == Obs(
        "number", MOBILE, c.cdr_id, c.start_ms, True, 12, cause, VICTIM, -1
    )


def test_caller_obs_of_a_foreign_caller_on_an_intl_trunk() -> None:
    c = call(FOREIGN, trunk="intl-3")
    obs = caller_obs(c, INTL, CHINA)
    assert obs is not None
    assert (obs.kind, obs.subject, obs.other) == ("number", FOREIGN, VICTIM)


# --------------------------------------------------------------------------- derived_obs


def _fields(o: Obs) -> tuple[str, str, str, int]:
    return (o.kind, o.subject, o.other, o.source)


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        pytest.param(
            MOBILE,
            [("callee", VICTIM, MOBILE, 5), ("block", MOBILE[:-2], MOBILE, 5)],
            id="mobile",
        ),
        pytest.param(
            MVNO, [("callee", VICTIM, MVNO, 5), ("block", "170123456", MVNO, 5)], id="mvno"
        ),
        pytest.param(FIXED, [("callee", VICTIM, FIXED, 5)], id="fixed"),
        pytest.param(SERVICE, [("callee", VICTIM, SERVICE, 5)], id="service"),
        pytest.param(LOCAL, [("callee", VICTIM, LOCAL, 5)], id="local"),
        pytest.param(FOREIGN, [("callee", VICTIM, FOREIGN, 5)], id="international"),
    ],
)
def test_derived_obs_of_an_asserted_call(
    caller: str, expected: list[tuple[str, str, str, int]]
) -> None:
    c = call(caller, trunk="intl-1" if caller == FOREIGN else "core-1", release_cause=16)
    got = derived_obs([c], INTL, 5, CHINA)
    assert [_fields(o) for o in got] == expected
    for o in got:
        assert (o.cdr_id, o.start_ms, o.answered, o.duration_s, o.cause) == (
            c.cdr_id,
            c.start_ms,
            False,
            0,
            16,
        )


def test_block_subject_drops_the_last_two_digits() -> None:
    (_, block) = derived_obs([call("13812345699")], INTL, 0, CHINA)
    assert block.subject == "138123456"
    assert len(block.subject) == len("13812345699") - 2


@pytest.mark.parametrize(
    ("trunk", "attestation", "trunk_subject"),
    [
        pytest.param("core-1", "C", "core-1", id="attestation-C"),
        pytest.param(None, "C", "unknown", id="attestation-C-no-trunk"),
        pytest.param("intl-gw1", None, "intl-gw1", id="domestic-on-intl"),
        pytest.param("intl-gw/1 x", None, trunk_id("intl-gw/1 x"), id="unsafe-trunk-hashed"),
    ],
)
def test_derived_obs_of_a_spoofed_call(
    trunk: str | None, attestation: str | None, trunk_subject: str
) -> None:
    c = call(MOBILE, trunk=trunk, attestation=attestation)
    got = derived_obs([c], INTL, 2, CHINA)
    # The trunk is observed instead of the caller's block, and the callee sees the presented
    # number marked as unasserted ("~"): it tells repeats apart but is never a member.
    assert [_fields(o) for o in got] == [
        ("trunk", trunk_subject, MOBILE, 2),
        ("callee", VICTIM, UNASSERTED + MOBILE, 2),
    ]
    assert all(o.cdr_id == c.cdr_id for o in got)


def test_derived_obs_never_names_a_spoofed_caller_as_a_counterpart_of_its_callee() -> None:
    spoofed = [call(f"1380000{i:04d}", trunk="intl-9", n=i) for i in range(20)]
    got = derived_obs(spoofed, INTL, 0, CHINA)
    assert {o.kind for o in got} == {"trunk", "callee"}
    assert all(o.other.startswith(UNASSERTED) for o in got if o.kind == "callee")
    assert all(o.kind != "block" for o in got)


def test_derived_obs_keeps_order_and_source() -> None:
    cdrs = [
        call(MOBILE, callee="13900000001", n=1, at_s=T0 + 30),
        call(FIXED, callee="13900000002", n=2, at_s=T0 + 10),  # order kept, not sorted
        call(MOBILE, callee="13900000003", attestation="C", trunk="core-2", n=3, at_s=T0 + 20),
        call(MVNO, callee="13900000004", n=4, at_s=T0 + 40),
    ]
    got = derived_obs(cdrs, INTL, 7, CHINA)
    assert [(o.kind, o.cdr_id) for o in got] == [
        ("callee", cdrs[0].cdr_id),
        ("block", cdrs[0].cdr_id),
        ("callee", cdrs[1].cdr_id),
        ("trunk", cdrs[2].cdr_id),
        ("callee", cdrs[2].cdr_id),
        ("callee", cdrs[3].cdr_id),
        ("block", cdrs[3].cdr_id),
    ]
    assert {o.source for o in got} == {7}


def test_derived_obs_default_source_and_empty_input() -> None:
    assert derived_obs([], INTL, 0, CHINA) == []
    assert {o.source for o in derived_obs([call()], INTL, 0, CHINA)} == {0}


# --------------------------------------------------------------------------- wire form

GOOD = Obs("callee", VICTIM, "cdr-1", T0 * 1000, True, 42, 16, MOBILE)


@pytest.mark.parametrize(
    "obs",
    [
        pytest.param(GOOD, id="callee"),
        pytest.param(GOOD._replace(kind="block", subject="138123456"), id="block"),
        pytest.param(GOOD._replace(kind="trunk", subject="h-0123456789abcdef"), id="trunk"),
        pytest.param(GOOD._replace(other="", cause=-1, answered=False), id="no-other"),
        pytest.param(GOOD._replace(other="x" * 24, cdr_id="i" * 128), id="max-lengths"),
        pytest.param(GOOD._replace(subject="s" * 40), id="max-subject"),
        pytest.param(GOOD._replace(source=3), id="source-replaced"),
    ],
)
@pytest.mark.parametrize("source", [0, 6])
def test_wire_round_trip(obs: Obs, source: int) -> None:
    wire = obs.to_wire()
    assert len(wire) == 8
    assert Obs.from_wire(wire, source) == obs._replace(source=source)


def test_derived_observations_survive_the_wire() -> None:
    cdrs = [
        call(MOBILE, n=1),
        call(FOREIGN, trunk="intl-1", n=2),
        call(MVNO, trunk="intl-1", n=3),
        call(MOBILE, attestation="C", trunk="sip:x{1}", n=4),
    ]
    for o in derived_obs(cdrs, INTL, 4, CHINA):
        assert Obs.from_wire(o.to_wire(), 4) == o


_WIRE = GOOD.to_wire()


def _with(index: int, value: object) -> list[object]:
    item = list(_WIRE)
    item[index] = value
    return item


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(_WIRE[:7], id="seven-fields"),
        pytest.param([*_WIRE, -1], id="nine-fields"),
        pytest.param([], id="empty"),
        pytest.param(tuple(_WIRE), id="tuple-not-list"),
        pytest.param({"kind": "callee"}, id="object"),
        pytest.param("callee", id="string"),
        pytest.param(None, id="null"),
        pytest.param(_with(0, "number"), id="kind-number-not-on-wire"),
        pytest.param(_with(0, "caller"), id="kind-unknown"),
        pytest.param(_with(0, ""), id="kind-empty"),
        pytest.param(_with(0, None), id="kind-null"),
        pytest.param(_with(0, ["callee"]), id="kind-list"),
        pytest.param(_with(1, "dw:{p0}:x"), id="subject-key-like"),
        pytest.param(_with(1, "a:b"), id="subject-colon"),
        pytest.param(_with(1, "a{b"), id="subject-open-brace"),
        pytest.param(_with(1, "a}b"), id="subject-close-brace"),
        pytest.param(_with(1, "a b"), id="subject-space"),
        pytest.param(_with(1, ""), id="subject-empty"),
        pytest.param(_with(1, "s" * 41), id="subject-too-long"),
        pytest.param(_with(1, "１３８"), id="subject-non-ascii-digits"),
        pytest.param(_with(1, 13812345678), id="subject-int"),
        pytest.param(_with(2, ""), id="cdr-id-empty"),
        pytest.param(_with(2, "i" * 129), id="cdr-id-too-long"),
        pytest.param(_with(2, 7), id="cdr-id-int"),
        pytest.param(_with(3, "1793581200000"), id="start-string"),
        pytest.param(_with(3, 1.7e12), id="start-float"),
        pytest.param(_with(3, None), id="start-null"),
        pytest.param(_with(3, True), id="start-bool"),
        pytest.param(_with(4, 1), id="answered-int"),
        pytest.param(_with(4, "true"), id="answered-string"),
        pytest.param(_with(4, None), id="answered-null"),
        pytest.param(_with(5, True), id="duration-bool"),
        pytest.param(_with(5, 4.0), id="duration-float"),
        pytest.param(_with(6, False), id="cause-bool"),
        pytest.param(_with(6, "16"), id="cause-string"),
        pytest.param(_with(7, "x" * 25), id="other-too-long"),
        pytest.param(_with(7, None), id="other-null"),
        pytest.param(_with(7, 13812345678), id="other-int"),
    ],
)
def test_from_wire_rejects_bad_items(item: object) -> None:
    got = Obs.from_wire(item, 0)
    assert isinstance(got, Reject)
    assert got.reason == "bad_type"


_SUBJECT = st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True)
_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["callee", "block", "trunk"]),
    subject=_SUBJECT,
    cdr_id=st.text(min_size=1, max_size=128),
    start=_INT64,
    answered=st.booleans(),
    duration=_INT64,
    cause=_INT64,
    other=st.text(max_size=24),
    source=st.integers(min_value=0, max_value=10_000),
)
def test_wire_round_trip_property(
    kind: str,
    subject: str,
    cdr_id: str,
    start: int,
    answered: bool,
    duration: int,
    cause: int,
    other: str,
    source: int,
) -> None:
    obs = Obs(kind, subject, cdr_id, start, answered, duration, cause, other, source)
    assert Obs.from_wire(obs.to_wire(), source) == obs
