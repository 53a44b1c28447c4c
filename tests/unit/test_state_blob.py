"""The per-subject window blob: a lossless round trip, compact, and earlier JSON blobs still
read."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from detectors.snapshot import N_FEATURES
from streams.state.base import NumberState
from streams.state.blob import from_blobs, windows_blob

NEWEST = 1_793_581_799_970
vectors = st.lists(st.integers(0, 10**6), min_size=N_FEATURES, max_size=N_FEATURES)
buckets = st.dictionaries(st.integers(NEWEST // 60_000 - 2000, NEWEST // 60_000), vectors)


@given(
    short=buckets,
    long=buckets,
    seen=st.dictionaries(st.integers(0, 2**63 - 1), st.integers(NEWEST - 3_600_000, NEWEST)),
    ring=st.lists(st.integers(0, 0xFFFF), max_size=16),
    last_other=st.text(alphabet="0123456789", max_size=15),
    peers=st.dictionaries(
        st.text("0123456789", min_size=1, max_size=15), st.lists(st.integers(0, 2**32), max_size=5)
    ),
)
def test_round_trip(
    short: dict[int, list[int]],
    long: dict[int, list[int]],
    seen: dict[int, int],
    ring: list[int],
    last_other: str,
    peers: dict[str, list[int]],
) -> None:
    state = NumberState(NEWEST, short, long, seen, ring, last_other, peers)
    blob = windows_blob(state)
    if not short and not long and not seen:
        assert blob == b""
        return
    back = from_blobs(blob, None)
    assert back.newest_ms == NEWEST
    assert (back.short, back.long, back.seen) == (short, long, seen)
    if ring or peers:
        assert (back.ring, back.last_other) == (ring, last_other)
    assert back.peers == peers


def normal_subscriber() -> NumberState:
    """About a day of a subscriber making 10 calls: 10 long buckets, a few short ones."""
    long_bucket = NEWEST // 600_000
    return NumberState(
        NEWEST,
        short={NEWEST // 60_000 - i * 7: [1, 1, 1, 0, 0, 0] for i in range(3)},
        long={long_bucket - i * 14: [1, 1, 0, 0, 0, 0] for i in range(10)},
        seen={2**62 + 12345: NEWEST - 5000},
        ring=[11084 + i for i in range(10)],
        last_other="13900019999",
    )


def test_a_normal_subscriber_blob_is_compact_and_half_the_json() -> None:
    state = normal_subscriber()
    blob = windows_blob(state)
    legacy = orjson.dumps(
        [
            state.newest_ms,
            [x for k, v in state.short.items() for x in (k, v[:3])],
            [x for k, v in state.long.items() for x in (k, v[:2])],
            [x for h, t in state.seen.items() for x in (h, t)],
            state.ring,
            state.last_other,
        ]
    )
    assert len(blob) < 130 and len(blob) * 2 < len(legacy), (len(blob), len(legacy))


def test_blobs_of_the_earlier_json_format_still_read() -> None:
    legacy = orjson.dumps(
        [NEWEST, [29893020, 2, 29893021, [3, 1]], [], [99, NEWEST - 1], [7, 8], "139"]
    )
    state = from_blobs(legacy, None)
    assert state.short == {29893020: [2, 0, 0, 0, 0, 0], 29893021: [3, 1, 0, 0, 0, 0]}
    assert state.seen == {99: NEWEST - 1} and state.ring == [7, 8] and state.last_other == "139"
    again = from_blobs(windows_blob(state), None)
    assert (again.short, again.seen, again.ring) == (state.short, state.seen, state.ring)
