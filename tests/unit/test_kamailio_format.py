"""The ``kamailio`` format: the accounting lines deploy/kamailio/kamailio.cfg writes into
Kamailio's log, read out of its other log output (README "Formats", docs/sip.md)."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.numbering import CHINA
from streams.cdr import CDR, Reject, parse_record
from streams.formats import get
from streams.formats.kamailio import CAUSE_BY_STATUS, MARK, cause_of
from streams.ingest import Source

FMT = get("kamailio")
INVITE = "1796000400.123456"


def line(doc: dict[str, Any], prefix: str = " 3(4242) NOTICE: <script>: ") -> str:
    return prefix + MARK + orjson.dumps(doc).decode()


def read(text: str) -> list[CDR | Reject]:
    out: list[CDR | Reject] = []
    for row in FMT.decode_line(text, None):
        out.append(row if isinstance(row, Reject) else parse_record(row, CHINA))
    return out


def attempt(status: int, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"v": 1, "id": "a1b2", "caller": "13800138000",
                           "callee": "13900139000", "invite": INVITE, "status": status,
                           "trunk": "127.0.0.1"}  # fmt: skip
    if 200 <= status < 300:
        doc |= {"answer": "1796000403.5", "end": "1796000410.25"}
    return doc | over


@pytest.mark.parametrize(
    ("status", "answered", "cause", "intercepted"),
    [
        (200, True, 16, False),
        (486, False, 17, False),
        (480, False, 19, False),
        (408, False, 19, False),
        (487, False, 31, False),
        (404, False, 1, False),
        (603, False, 21, False),
        (608, False, 21, True),
        (503, False, 41, False),
        (499, False, None, False),
    ],
)
def test_the_final_status_gives_answered_cause_and_interception(
    status: int, answered: bool, cause: int | None, intercepted: bool
) -> None:
    (cdr,) = read(line(attempt(status)))
    assert isinstance(cdr, CDR)
    assert (cdr.answered, cdr.release_cause, cdr.intercepted) == (answered, cause, intercepted)
    assert cdr.start_ms == 1796000400123
    assert cdr.duration_s == (7 if answered else 0)  # 6.75 s of talk, rounded up
    assert (cdr.caller, cdr.callee, cdr.ingress_trunk) == ("13800138000", "13900139000",
                                                           "127.0.0.1")  # fmt: skip


def test_other_log_lines_are_skipped_and_a_reason_header_cause_wins() -> None:
    assert read(" 0(100) INFO: <core> [main.c:2861]: main(): processes (at least): 9") == []
    assert read("WARNING: <script>: dialwatch: interception lookup failed") == []
    (cdr,) = read(line(attempt(200, q850=17)))
    assert isinstance(cdr, CDR) and cdr.release_cause == 17


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (MARK + "{not json", "malformed_json"),
        (MARK + "[1, 2]", "not_an_object"),
        (line(attempt(200) | {"v": 2}), "bad_type"),
        (line({k: v for k, v in attempt(486).items() if k != "id"}), "missing_field"),
        (line(attempt(486) | {"status": "ringing"}), "bad_type"),
        (line(attempt(180)), "bad_type"),
        (line(attempt(200, answer="")), "missing_field"),
        (line(attempt(200, end="1796000401")), "bad_duration"),
        (line(attempt(486, caller="")), "missing_field"),
        (line(attempt(486, callee="sip-user")), "bad_number"),
        (line(attempt(486, invite="yesterday")), "bad_time"),
        (line(attempt(486, q850=300)), "bad_type"),
    ],
)
def test_a_marked_line_that_does_not_read_is_rejected_with_its_reason(
    text: str, reason: str
) -> None:
    (got,) = read(text)
    assert isinstance(got, Reject) and got.reason == reason, got


def test_ids_are_stable_and_tell_attempts_apart() -> None:
    (a,), (b,), (c,) = (
        read(line(attempt(486))),
        read(line(attempt(486))),
        read(line(attempt(486, id="other"))),
    )
    assert isinstance(a, CDR) and isinstance(b, CDR) and isinstance(c, CDR)
    assert a.cdr_id == b.cdr_id != c.cdr_id and a.cdr_id.startswith("kam-")


PREFIXES = st.sampled_from(
    [
        "",
        " 0(17) NOTICE: <script>: ",
        "Dec  1 23:50:01 sbc1 /usr/sbin/kamailio[3456]: NOTICE: <script>: ",
        "2026-12-01T23:50:01.123456+00:00 sbc1 kamailio[1]: ",
    ]
)
STAMP = st.decimals(
    min_value=Decimal("946684800"), max_value=Decimal("4102444000"), places=6,
    allow_nan=False, allow_infinity=False,
)  # fmt: skip
STATUS = st.one_of(st.sampled_from(sorted(CAUSE_BY_STATUS)), st.integers(200, 699))


@settings(max_examples=300, deadline=None)
@given(
    prefix=PREFIXES,
    status=STATUS,
    invite=STAMP,
    ring=st.decimals(min_value=0, max_value=60, places=6),
    talk=st.decimals(min_value=0, max_value=3600, places=6),
    trunk=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True)),
    q850=st.one_of(st.none(), st.integers(0, 127)),
    status_text=st.booleans(),
    stamps_as_numbers=st.booleans(),
    extra=st.dictionaries(st.sampled_from(["reason", "src_port", "x"]), st.text(max_size=5)),
    shuffle=st.randoms(use_true_random=False),
)
def test_every_legal_line_reads_to_its_call(
    prefix: str, status: int, invite: Decimal, ring: Decimal, talk: Decimal,
    trunk: str | None, q850: int | None, status_text: bool, stamps_as_numbers: bool,
    extra: dict[str, str], shuffle: Any,
) -> None:  # fmt: skip
    answered = 200 <= status < 300

    def stamp(value: Decimal) -> object:
        return float(value) if stamps_as_numbers else str(value)

    doc: dict[str, Any] = {"v": 1, "id": f"{invite}-{status}", "caller": "+86 138-0013-8000",
                           "callee": "013900139000", "invite": stamp(invite),
                           "status": str(status) if status_text else status, **extra}  # fmt: skip
    if answered:
        doc |= {"answer": stamp(invite + ring), "end": stamp(invite + ring + talk)}
    if trunk is not None:
        doc["trunk"] = trunk
    if q850 is not None:
        doc["q850"] = q850
    items = list(doc.items())
    shuffle.shuffle(items)
    (cdr,) = read(line(dict(items), prefix))
    assert isinstance(cdr, CDR), cdr
    assert (cdr.caller, cdr.callee) == ("13800138000", "13900139000")
    if stamps_as_numbers:  # a float stamp is read to its nearest double
        assert abs(cdr.start_ms - float(invite) * 1000) <= 1
    else:
        assert cdr.start_ms == math.floor(invite * 1000)
    assert cdr.answered is answered
    if answered and not stamps_as_numbers:
        assert cdr.duration_s == math.ceil(talk)
    elif answered:
        assert abs(cdr.duration_s - float(talk)) <= 1
    else:
        assert cdr.duration_s == 0
    assert cdr.release_cause == (q850 if q850 is not None else cause_of(status))
    assert cdr.intercepted is (status == 608)
    assert cdr.ingress_trunk == trunk


def test_the_shipper_reads_only_complete_marked_lines_of_a_kamailio_log(tmp_path: Path) -> None:
    log = tmp_path / "kamailio.log"
    log.write_text(
        " 0(1) INFO: <core> [main.c:2861]: main(): processes (at least): 9\n"
        + line(attempt(200)) + "\n"
        + " 2(3) WARNING: <script>: dialwatch: interception lookup failed, call let through\n"
        + MARK + "{broken\n"
        + line(attempt(608, id="x"))[:40]
    )  # fmt: skip
    src = Source(log, FMT, tmp_path / "pos", follow=True)
    got = [r for _, text in src.read(100) for r in read(text)]
    assert [type(r) for r in got] == [CDR, Reject]
    with log.open("a") as out:
        out.write(line(attempt(608, id="x"))[40:] + "\n")
    (late,) = [r for _, text in src.read(100) for r in read(text)]
    assert isinstance(late, CDR) and late.intercepted
