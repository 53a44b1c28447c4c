"""Window maths: bucket edges, inclusive window ends, sparse vs dense maps, window specs."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.windows import (
    WindowSpec,
    bucket_of,
    busiest_window_end,
    count_in_window,
    sum_in_window,
    window_specs,
)

T0_MS = 1_793_581_200_000  # 2026-11-02T01:00:00Z, a whole hour


@pytest.mark.parametrize(
    ("t_ms", "bucket_s", "expected"),
    [
        pytest.param(0, 60, 0, id="epoch"),
        pytest.param(59_999, 60, 0, id="1ms-before-first-edge"),
        pytest.param(60_000, 60, 1, id="on-first-edge"),
        pytest.param(60_001, 60, 1, id="1ms-after-first-edge"),
        pytest.param(T0_MS, 60, T0_MS // 60_000, id="on-minute-edge"),
        pytest.param(T0_MS - 1, 60, T0_MS // 60_000 - 1, id="1ms-before-minute-edge"),
        pytest.param(T0_MS + 59_999, 60, T0_MS // 60_000, id="last-ms-of-minute"),
        pytest.param(T0_MS, 600, T0_MS // 600_000, id="on-10min-edge"),
        pytest.param(T0_MS - 1, 600, T0_MS // 600_000 - 1, id="1ms-before-10min-edge"),
        pytest.param(T0_MS + 599_999, 600, T0_MS // 600_000, id="last-ms-of-10min"),
        pytest.param(-1, 60, -1, id="negative-time-floors"),
    ],
)
def test_bucket_of(t_ms: int, bucket_s: int, expected: int) -> None:
    assert bucket_of(t_ms, bucket_s) == expected


def test_t0_is_on_a_ten_minute_edge() -> None:
    # The edge cases above only mean what their ids say if T0 is a bucket boundary.
    assert T0_MS % 600_000 == 0


B = 1000  # an arbitrary "current" bucket


@pytest.mark.parametrize(
    ("buckets", "n_buckets", "expected"),
    [
        pytest.param({}, 40, 0, id="empty"),
        pytest.param({B: 3}, 40, 3, id="current-bucket-only"),
        pytest.param({B - 39: 5}, 40, 5, id="oldest-bucket-included"),
        pytest.param({B - 40: 5}, 40, 0, id="one-before-oldest-excluded"),
        pytest.param({B + 1: 7}, 40, 0, id="future-bucket-excluded"),
        pytest.param({B - 40: 1, B - 39: 2, B: 4, B + 1: 8}, 40, 6, id="both-edges"),
        pytest.param({B: 2, B - 1: 3}, 1, 2, id="one-bucket-window"),
        pytest.param({b: 1 for b in range(B - 100, B + 100)}, 40, 40, id="dense-run"),
        pytest.param({b: 1 for b in range(B - 39, B + 1)}, 40, 40, id="exactly-n-entries"),
        pytest.param({b: 1 for b in range(B - 40, B + 1)}, 40, 40, id="n-plus-one-entries"),
        pytest.param({B - 143: 10, B - 144: 100, B: 1}, 144, 11, id="day-in-long-buckets"),
        pytest.param({B: 0, B - 1: 0}, 40, 0, id="zero-counts"),
    ],
)
def test_count_in_window(buckets: dict[int, int], n_buckets: int, expected: int) -> None:
    assert count_in_window(buckets, B, n_buckets) == expected


def _pad(buckets: dict[int, int], extra: int, far: int) -> dict[int, int]:
    """The same counts with ``extra`` zero-count buckets added far away (forces the dense path)."""
    out = dict(buckets)
    for i in range(extra):
        out.setdefault(far + i, 0)
    return out


@pytest.mark.parametrize(
    "buckets",
    [
        pytest.param({B: 1, B - 39: 2, B - 40: 4}, id="edges"),
        pytest.param({B - 5: 9, B + 3: 9}, id="inside-and-future"),
        pytest.param({}, id="empty"),
    ],
)
def test_sparse_and_dense_maps_agree(buckets: dict[int, int]) -> None:
    sparse = count_in_window(buckets, B, 40)
    padded = _pad(buckets, 100, B + 10_000)
    assert len(padded) > 40  # really takes the other branch
    assert count_in_window(padded, B, 40) == sparse


def brute_force(call_ms: list[int], at_ms: int, length_s: int, bucket_s: int) -> int:
    """The module docstring's definition, worked out in milliseconds, not bucket indexes.

    Reading a window of ``length_s`` at ``at_ms`` counts the calls whose start lies from the
    start of the oldest of the ``length_s / bucket_s`` buckets up to the end of the bucket
    holding ``at_ms``.
    """
    width = bucket_s * 1000
    end = (at_ms // width + 1) * width  # exclusive: end of the bucket holding at_ms
    start = end - length_s * 1000
    return sum(1 for t in call_ms if start <= t < end)


@settings(max_examples=300, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=-3 * 86_400_000, max_value=3_600_000), max_size=300),
    at_offset=st.integers(min_value=-3_600_000, max_value=3_600_000),
    spec=st.sampled_from([(600, 60), (2400, 60), (60, 60), (86_400, 600), (7200, 600)]),
    padding=st.integers(min_value=0, max_value=200),
)
def test_count_in_window_matches_brute_force_recount(
    offsets: list[int], at_offset: int, spec: tuple[int, int], padding: int
) -> None:
    length_s, bucket_s = spec
    calls = [T0_MS + o for o in offsets]
    at_ms = T0_MS + at_offset
    buckets = dict(Counter(bucket_of(t, bucket_s) for t in calls))
    padded = _pad(buckets, padding, -(10**9))  # zero buckets far in the past change nothing
    n = length_s // bucket_s
    expected = brute_force(calls, at_ms, length_s, bucket_s)
    at_bucket = bucket_of(at_ms, bucket_s)
    assert count_in_window(buckets, at_bucket, n) == expected
    assert count_in_window(padded, at_bucket, n) == expected


def test_forty_minute_window_from_minute_00_to_minute_39() -> None:
    # Calls at hh:00:00.000 and hh:39:59.999 are both in the 40 min window read at hh:39:xx;
    # at hh:40:00.000 the hh:00 bucket has dropped out.
    calls = [T0_MS, T0_MS + 2_399_999]
    buckets = dict(Counter(bucket_of(t, 60) for t in calls))
    assert count_in_window(buckets, bucket_of(T0_MS + 2_399_999, 60), 40) == 2
    assert count_in_window(buckets, bucket_of(T0_MS + 2_400_000, 60), 40) == 1
    # The window is bucket aligned, not a sliding 40 * 60 s: read at hh:39:00.000, a call at
    # (hh-1):59:59.999 is only 39 min ago yet outside the 40 buckets hh:00 .. hh:39.
    early = dict(Counter(bucket_of(t, 60) for t in [T0_MS - 1, T0_MS + 59_000]))
    assert count_in_window(early, bucket_of(T0_MS + 2_340_000, 60), 40) == 1
    assert count_in_window(early, bucket_of(T0_MS + 2_339_999, 60), 40) == 2


# --------------------------------------------------------------------------- window_specs

DEFAULT_WINDOWS = {"10m": 600, "40m": 2400, "24h": 86_400}


def test_window_specs_for_the_default_windows() -> None:
    assert window_specs(DEFAULT_WINDOWS, 60, 600, 7200) == (
        WindowSpec("10m", 600, 60, False),
        WindowSpec("40m", 2400, 60, False),
        WindowSpec("24h", 86_400, 600, True),
    )


@pytest.mark.parametrize(
    ("length_s", "long", "bucket_s", "n_buckets"),
    [
        pytest.param(60, False, 60, 1, id="one-short-bucket"),
        pytest.param(2400, False, 60, 40, id="40m-short"),
        pytest.param(7140, False, 60, 119, id="just-under-threshold-short"),
        pytest.param(7200, True, 600, 12, id="at-threshold-long"),
        pytest.param(86_400, True, 600, 144, id="24h-long"),
        pytest.param(604_800, True, 600, 1008, id="week-long"),
    ],
)
def test_window_specs_choose_short_or_long_buckets(
    length_s: int, long: bool, bucket_s: int, n_buckets: int
) -> None:
    (spec,) = window_specs({"w": length_s}, 60, 600, 7200)
    assert (spec.name, spec.length_s, spec.long, spec.bucket_s) == ("w", length_s, long, bucket_s)
    assert spec.n_buckets == n_buckets


@pytest.mark.parametrize(
    ("length_s", "width"),
    [
        pytest.param(90, 60, id="short-not-multiple-of-60"),
        pytest.param(2401, 60, id="short-off-by-one-second"),
        pytest.param(7260, 600, id="long-multiple-of-60-but-not-600"),
        pytest.param(86_460, 600, id="day-plus-a-minute"),
    ],
)
def test_window_specs_reject_lengths_that_are_not_bucket_multiples(
    length_s: int, width: int
) -> None:
    with pytest.raises(ValueError, match=rf"window bad \({length_s} s\).*multiple of {width} s"):
        window_specs({"ok": 600, "bad": length_s}, 60, 600, 7200)


def test_window_specs_keep_policy_order() -> None:
    specs = window_specs({"24h": 86_400, "10m": 600, "40m": 2400}, 60, 600, 7200)
    assert [s.name for s in specs] == ["24h", "10m", "40m"]


# --------------------------------------------------------------------------- busiest_window_end


def _calls_ending_at(buckets: dict[int, list[int]], end: int, n_buckets: int) -> int:
    return sum(v[0] for b, v in buckets.items() if end - n_buckets < b <= end)


@pytest.mark.parametrize(
    ("buckets", "at", "last", "n_buckets", "expected"),
    [
        pytest.param({B: [1], B + 1: [9]}, B, B, 5, B, id="in-order-at-is-last"),
        pytest.param({B - 3: [4], B: [1]}, B, B, 5, B, id="in-order-history-behind"),
        pytest.param(
            {B: [1], B + 3: [10], B + 10: [1]}, B, B + 10, 5, B + 3, id="late-burst-ahead"
        ),
        pytest.param({B: [1], B + 4: [10]}, B, B + 10, 5, B + 4, id="burst-at-window-edge"),
        pytest.param({B: [1], B + 5: [50]}, B, B + 10, 5, B, id="burst-beyond-reach"),
        pytest.param({B: [1], B + 4: [10]}, B, B + 3, 5, B, id="bounded-by-last"),
        pytest.param({B - 2: [3], B + 2: [3]}, B, B + 5, 3, B, id="tie-earliest"),
        pytest.param({B + 1: [2], B + 2: [2]}, B, B + 5, 3, B + 2, id="ahead-beats-at"),
        pytest.param({B + 1: [2], B + 3: [2]}, B, B + 5, 3, B + 1, id="tie-among-later-ends"),
        pytest.param({B - 4: [5], B + 1: [1]}, B, B + 9, 5, B, id="older-burst-behind"),
        pytest.param({B - 4: [5], B + 1: [6]}, B, B + 9, 5, B + 1, id="drop-old-gain-new"),
        pytest.param({}, B, B + 9, 5, B, id="empty"),
        pytest.param({B + 50: [7]}, B, B + 60, 5, B, id="only-far-buckets"),
        pytest.param({B: [1], B + 1: [9]}, B, B - 3, 5, B, id="last-before-at"),
        pytest.param({B: [1], B + 1: [9]}, B, B + 9, 1, B, id="one-bucket-window"),
        pytest.param({B: [1, 0], B + 2: [3, 99]}, B, B + 3, 5, B + 2, id="first-element-is-calls"),
        pytest.param({B: [0], B + 1: [0]}, B, B + 3, 5, B, id="zero-calls"),
    ],
)
def test_busiest_window_end(
    buckets: dict[int, list[int]], at: int, last: int, n_buckets: int, expected: int
) -> None:
    end = busiest_window_end(buckets, at, last, n_buckets)
    assert end == expected
    assert end - n_buckets < at <= end  # the chosen window contains at


def _brute_force_end(buckets: dict[int, list[int]], at: int, last: int, n_buckets: int) -> int:
    ends = range(at, min(at + n_buckets - 1, max(last, at)) + 1)
    best = max(_calls_ending_at(buckets, e, n_buckets) for e in ends)
    return next(e for e in ends if _calls_ending_at(buckets, e, n_buckets) == best)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    n_buckets=st.integers(min_value=1, max_value=40),
    at=st.integers(min_value=-100, max_value=10_000),
)
def test_busiest_window_end_matches_brute_force(
    data: st.DataObject, n_buckets: int, at: int
) -> None:
    span = 3 * n_buckets + 5
    buckets = data.draw(
        st.dictionaries(
            st.integers(min_value=at - span, max_value=at + span),
            st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=3),
            max_size=40,
        )
    )
    last = data.draw(st.integers(min_value=at - span, max_value=at + span))
    end = busiest_window_end(buckets, at, last, n_buckets)
    assert end == _brute_force_end(buckets, at, last, n_buckets)
    assert end - n_buckets < at <= end
    assert end <= max(last, at)
    # the window it names is the busiest: sum_in_window reads the same calls there
    best = _calls_ending_at(buckets, end, n_buckets)
    assert sum_in_window(buckets, end, n_buckets, 6)[0] == best
    assert best >= _calls_ending_at(buckets, at, n_buckets)
