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

from collections.abc import Mapping
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
