"""The derived stream's wire: partitioning by subject, one message per target, decoding."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from functools import partial

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.numbering import CHINA
from streams.batches import chunks
from streams.cdr import CDR, REJECT_REASONS, Reject, decode_message
from streams.deadletter import DEAD_LETTER_MAX_BYTES, dead_letter
from streams.derived import decode_derived, derived_messages, derived_partition, progress_messages
from streams.observe import Obs, derived_obs
from streams.reorder import Progress
from tests.factories import T0, cdr

PARTITIONS = 8
INTL = ("intl-",)


def traffic() -> list[CDR]:
    """Mobile, fixed, foreign and spoofed callers to many callees: every observation kind."""
    out: list[CDR] = []
    for i in range(60):
        caller = ["13812345678", "1012345678", "0044770090012", "17012345600"][i % 4]
        c = cdr(caller, T0 + i * 3, i, callee=f"1390000{i:04d}")
        if i % 5 == 0:
            c = replace(c, ingress_trunk="intl-gw1")
        if i % 7 == 0:
            c = replace(c, attestation="C", ingress_trunk=f"sip:trunk {i % 3}")
        out.append(c)
    return out


# --------------------------------------------------------------------------- derived_partition


@pytest.mark.parametrize("subject", ["13912345678", "139123456", "intl-gw1", "h-0123456789abcdef"])
@pytest.mark.parametrize("partitions", [1, 3, 8, 64])
def test_derived_partition_is_stable_and_in_range(subject: str, partitions: int) -> None:
    got = derived_partition(subject, partitions)
    assert 0 <= got < partitions
    assert derived_partition(subject, partitions) == got


def test_derived_partition_is_fixed_across_processes() -> None:
    # crc32, not Python's per-process salted hash(): a restarted worker routes the same way
    assert derived_partition("a", 1_000_000) == 0xE8B7BE43 % 1_000_000  # crc32(b"a")
    assert derived_partition("a", 8) == 0xE8B7BE43 % 8


def test_derived_partition_spreads_subjects_over_all_partitions() -> None:
    subjects = [f"139{i:08d}" for i in range(1000)]
    counts = Counter(derived_partition(s, PARTITIONS) for s in subjects)
    assert set(counts) == set(range(PARTITIONS))
    assert min(counts.values()) > 1000 / PARTITIONS / 2  # no starved partition


# --------------------------------------------------------------------------- derived_messages

FRONT = (T0 + 600) * 1000


@pytest.mark.parametrize("source", [0, 5])
def test_one_message_per_target_partition_decodes_to_its_observations(source: int) -> None:
    observed = derived_obs(traffic(), INTL, source, CHINA)
    assert {o.kind for o in observed} == {"callee", "block", "trunk"}
    messages = dict(derived_messages(observed, source, PARTITIONS, FRONT))
    assert set(messages) == set(range(PARTITIONS))  # every partition hears the progress
    decoded_total = 0
    for target, message in messages.items():
        assert isinstance(message, bytes)
        *decoded, progress = decode_derived(message)
        assert progress == Progress(source, FRONT, False)
        expected = [o for o in observed if derived_partition(o.subject, PARTITIONS) == target]
        assert decoded == expected  # same observations, same source, same order
        assert all(isinstance(o, Obs) and o.source == source for o in decoded)
        decoded_total += len(decoded)
    assert decoded_total == len(observed)


def test_the_message_source_wins_over_the_observations() -> None:
    observed = derived_obs(traffic()[:5], INTL, 2, CHINA)
    for _, message in derived_messages(observed, 6, PARTITIONS, FRONT):
        assert {o.source for o in decode_derived(message) if not isinstance(o, Reject)} == {6}


def test_no_observations_still_tell_the_progress_everywhere() -> None:
    messages = derived_messages([], 4, PARTITIONS, FRONT)
    assert [t for t, _ in messages] == list(range(PARTITIONS))
    assert all(decode_derived(m) == [Progress(4, FRONT, False)] for _, m in messages)
    idle = progress_messages(4, PARTITIONS, FRONT)
    assert all(decode_derived(m) == [Progress(4, FRONT, True)] for _, m in idle)


def test_a_bad_progress_is_rejected() -> None:
    assert decode_derived(b'[1, [], "x", false]') == [
        Reject("bad_type", "derived progress is not [front ms, idle]")
    ]


def test_large_batches_are_split_in_order_under_the_size_cap() -> None:
    observed = derived_obs(traffic() * 40, INTL, 1, CHINA)
    messages = derived_messages(observed, 1, 2, FRONT, chunk=7)
    assert all(len(orjson.loads(m)[1]) <= 7 for _, m in messages)
    for target in (0, 1):
        decoded = [
            o for t, m in messages if t == target for o in decode_derived(m) if isinstance(o, Obs)
        ]
        assert decoded == [o for o in observed if derived_partition(o.subject, 2) == target]


def test_a_message_carries_the_source_once() -> None:
    observed = derived_obs([cdr("13812345678", T0, 1, callee="13900000001")], INTL, 3, CHINA)
    target = derived_partition(observed[0].subject, PARTITIONS)
    message = dict(derived_messages(observed[:1], 3, PARTITIONS, FRONT))[target]
    assert orjson.loads(message) == [3, [observed[0].to_wire()], FRONT, False]


_SUBJECT = st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True)
_OBS = st.builds(
    Obs,
    kind=st.sampled_from(["callee", "block", "trunk"]),
    subject=_SUBJECT,
    cdr_id=st.text(min_size=1, max_size=128),
    start_ms=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    answered=st.booleans(),
    duration_s=st.integers(min_value=0, max_value=86_400),
    cause=st.integers(min_value=-1, max_value=127),
    other=st.text(max_size=24),
    source=st.just(-1),
    after_ms=st.integers(min_value=0, max_value=2**63 - 1),  # past the start: a late CDR
)


@settings(max_examples=60, deadline=None)
@given(
    observed=st.lists(_OBS, max_size=20),
    source=st.integers(min_value=0, max_value=1000),
    partitions=st.integers(min_value=1, max_value=16),
)
def test_derived_messages_round_trip(observed: list[Obs], source: int, partitions: int) -> None:
    messages = derived_messages(observed, source, partitions, FRONT)
    assert {t for t, _ in messages} == set(range(partitions))
    back: dict[int, list[Obs | Progress | Reject]] = {}
    for target, message in messages:
        back.setdefault(target, []).extend(
            o for o in decode_derived(message) if not isinstance(o, Progress)
        )
    for target in range(partitions):
        expected = [
            # a front not past the start places the observation at its start: not sent
            o._replace(source=source, after_ms=o.after_ms if o.after_ms > o.start_ms else 0)
            for o in observed
            if derived_partition(o.subject, partitions) == target
        ]
        assert back.get(target, []) == expected


# --------------------------------------------------------------------------- decode_derived


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(None, "malformed_json", id="none"),
        pytest.param(b"", "malformed_json", id="empty"),
        pytest.param(b"[0, [", "malformed_json", id="truncated"),
        pytest.param(b"\xff\xfe", "malformed_json", id="not-utf8"),
        pytest.param(b"{}", "not_an_object", id="object"),
        pytest.param(b'"x"', "not_an_object", id="string"),
        pytest.param(b"3", "not_an_object", id="number"),
        pytest.param(b"null", "not_an_object", id="null"),
        pytest.param(b"[]", "not_an_object", id="empty-array"),
        pytest.param(b"[0]", "not_an_object", id="one-element"),
        pytest.param(b"[0, [], 1]", "not_an_object", id="three-elements"),
        pytest.param(b"[-1, []]", "not_an_object", id="negative-source"),
        pytest.param(b"[true, []]", "not_an_object", id="bool-source"),
        pytest.param(b"[false, []]", "not_an_object", id="bool-false-source"),
        pytest.param(b"[1.0, []]", "not_an_object", id="float-source"),
        pytest.param(b'["1", []]', "not_an_object", id="string-source"),
        pytest.param(b"[null, []]", "not_an_object", id="null-source"),
        pytest.param(b"[0, {}]", "not_an_object", id="items-object"),
        pytest.param(b"[0, null]", "not_an_object", id="items-null"),
        pytest.param(b'[0, "x"]', "not_an_object", id="items-string"),
        pytest.param(b"[0, 5]", "not_an_object", id="items-number"),
    ],
)
def test_decode_derived_rejects_bad_messages(value: bytes | None, reason: str) -> None:
    got = decode_derived(value)
    assert len(got) == 1
    (reject,) = got
    assert isinstance(reject, Reject)
    assert reject.reason == reason
    assert reject.reason in REJECT_REASONS


def test_decode_derived_of_no_observations() -> None:
    assert decode_derived(b"[4, []]") == []


def test_decode_derived_rejects_bad_items_one_by_one() -> None:
    good = derived_obs([cdr("13812345678", T0, 1, callee="13900000001")], INTL, 2, CHINA)
    assert len(good) == 2  # callee and block
    bad_kind = ["number", *good[0].to_wire()[1:]]
    bad_subject = list(good[0].to_wire())
    bad_subject[1] = "dw:{p0}"
    items = [good[0].to_wire(), bad_kind, 7, good[1].to_wire(), bad_subject, [], None]
    got = decode_derived(orjson.dumps([2, items]))
    assert len(got) == len(items)
    assert got[0] == good[0] and got[3] == good[1]
    for i in (1, 2, 4, 5, 6):
        rec = got[i]
        assert isinstance(rec, Reject), i
        assert rec.reason == "bad_type"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=9),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(
    st.binary(max_size=256)
    | _JSON.map(orjson.dumps)
    | st.tuples(st.integers(-3, 3), st.lists(_JSON, max_size=5)).map(
        lambda t: orjson.dumps([t[0], t[1]])
    )
)
def test_decode_derived_never_raises(value: bytes) -> None:
    for rec in decode_derived(value):
        assert isinstance(rec, Obs | Reject)
        if isinstance(rec, Reject):
            assert rec.reason in REJECT_REASONS


def test_a_dead_letter_keeps_the_original_bytes_and_the_reason() -> None:
    value, headers = dead_letter(b"{not json", Reject("malformed_json", "at 1"), "cdrs/2/17")
    assert value == b"{not json"
    assert headers == {"reason": b"malformed_json", "detail": b"at 1", "source": b"cdrs/2/17"}


def test_a_dead_letter_too_large_for_one_request_is_cut_and_says_so() -> None:
    original = b"x" * (DEAD_LETTER_MAX_BYTES + 5)
    value, headers = dead_letter(original, Reject("too_large", "big"), "cdrs/0/1")
    assert value == original[:DEAD_LETTER_MAX_BYTES]
    assert headers["truncated"] == str(len(original)).encode()
    assert sum(len(v) for v in headers.values()) + len(value) < 1_000_000


def test_a_batch_of_arrays_is_cut_into_chunks_of_about_the_limit() -> None:
    decode = partial(decode_message, plan=CHINA)
    record = {
        "cdr_id": "x", "caller": "13800138000", "callee": "13900139000",
        "start_time": "2026-11-28T09:00:00+08:00", "duration_s": 5, "answered": True,
    }  # fmt: skip
    array = orjson.dumps([{**record, "cdr_id": f"c{i}"} for i in range(300)])
    messages: list[tuple[int, bytes | None]] = [(10 + i, array) for i in range(10)]
    messages.insert(3, (99, b"[]"))
    got = list(chunks(messages, decode, 1000))
    assert [len(c) for c in got] == [1201, 1200, 600]  # cut after the message reaching 1,000
    assert [c[0][0] for c in got] == [10, 14, 18]
    assert got[0][900] == (99, None)  # a message with no record still advances the offset
    flat = [o for c in got for o, _ in c]
    assert sorted(set(flat)) == sorted(o for o, _ in messages)


def test_a_cut_batch_tells_only_what_it_sent_until_its_last_message() -> None:
    """A batch cut into several messages for one target: the earlier ones carry the newest
    start sent so far, not the batch's front, so stage 2 does not take the rest as too late."""
    observed = [
        Obs("callee", "13900000001", f"id{i}", T0 + i * 3_600_000, True, 30, 16, "13812345678", 1)
        for i in range(10)
    ]
    messages = derived_messages(observed, 1, 1, T0 + 10 * 3_600_000, chunk=4)
    fronts = [orjson.loads(m)[2] for _, m in messages]
    assert fronts == [T0 + 3 * 3_600_000, T0 + 7 * 3_600_000, T0 + 10 * 3_600_000]
    decoded = [o for _, m in messages for o in decode_derived(m) if isinstance(o, Obs)]
    assert decoded == observed
