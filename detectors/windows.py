"""Window maths over event-time buckets.

A number's calls are counted in buckets of ``bucket_s`` seconds: bucket ``b`` holds the calls
whose start_time falls in ``[b * bucket_s, (b + 1) * bucket_s)``. A window of length ``W``
read at time ``t`` is the ``W / bucket_s`` buckets ending with the bucket that holds ``t``::

    buckets:  ... | b-3 | b-2 | b-1 |  b  |
                        <----- W ----->  ^ t lies in bucket b

so "calls in the 40 min window" means calls in the 40 one-minute buckets up to and including
the current minute. Windows of at least ``long_window_from_s`` use the coarser long buckets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowSpec:
    name: str
    length_s: int
    bucket_s: int
    long: bool  # counted in the long buckets

    @property
    def n_buckets(self) -> int:
        return self.length_s // self.bucket_s


def window_specs(
    windows: Mapping[str, int], bucket_s: int, long_bucket_s: int, long_window_from_s: int
) -> tuple[WindowSpec, ...]:
    specs = []
    for name, length_s in windows.items():
        long = length_s >= long_window_from_s
        width = long_bucket_s if long else bucket_s
        if length_s % width:
            raise ValueError(f"window {name} ({length_s} s) is not a multiple of {width} s buckets")
        specs.append(WindowSpec(name, length_s, width, long))
    return tuple(specs)


def bucket_of(t_ms: int, bucket_s: int) -> int:
    return t_ms // (bucket_s * 1000)


def count_in_window(buckets: Mapping[int, int], at_bucket: int, n_buckets: int) -> int:
    """Calls in the ``n_buckets`` buckets ending with ``at_bucket`` (inclusive)."""
    low = at_bucket - n_buckets
    if len(buckets) <= n_buckets:
        return sum(c for b, c in buckets.items() if low < b <= at_bucket)
    return sum(buckets.get(b, 0) for b in range(low + 1, at_bucket + 1))


def sum_in_window(
    buckets: Mapping[int, Sequence[int]], at_bucket: int, n_buckets: int, width: int
) -> list[int]:
    """Element-wise sum of the feature vectors in the ``n_buckets`` buckets ending at
    ``at_bucket``; vectors shorter than ``width`` count as zero-padded."""
    low = at_bucket - n_buckets
    total = [0] * width
    if len(buckets) <= n_buckets:
        picked = [v for b, v in buckets.items() if low < b <= at_bucket]
    else:
        got = (buckets.get(b) for b in range(low + 1, at_bucket + 1))
        picked = [v for v in got if v is not None]
    for vector in picked:
        for i, v in enumerate(vector):
            total[i] += v
    return total


def busiest_window_end(
    buckets: Mapping[int, Sequence[int]], at_bucket: int, last_bucket: int, n_buckets: int
) -> int:
    """Of the windows that contain ``at_bucket`` and end no later than ``last_bucket``, the end
    of the one with the most calls (the earliest on ties).

    Reading a window at a late record's own time, not only at the subject's newest, keeps the
    result independent of arrival order: a burst that arrives after later calls is still seen.
    """
    last_end = min(at_bucket + n_buckets - 1, max(last_bucket, at_bucket))
    if last_end == at_bucket:
        return at_bucket
    calls = {b: v[0] for b, v in buckets.items() if at_bucket - n_buckets < b <= last_end}
    running = sum(c for b, c in calls.items() if b <= at_bucket)
    best, best_end = running, at_bucket
    for end in range(at_bucket + 1, last_end + 1):
        running += calls.get(end, 0) - calls.get(end - n_buckets, 0)
        if running > best:
            best, best_end = running, end
    return best_end
