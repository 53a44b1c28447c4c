"""Feature extraction: what one call adds to its subject's bucket (detectors.snapshot.FEATURES).

Each call adds a vector ``[calls, answered, short, unallocated, repeats, sequential]``:

- ``calls``: 1, every attempt counts;
- ``answered``: 1 when the call was answered;
- ``short``: 1 when answered and at most ``features.short_call_s`` long (a robocall's answered
  calls are hung up within seconds; a conversation lasts minutes);
- ``unallocated``: 1 when released with Q.850 cause 1, a number nobody holds;
- ``repeats``: 1 when the counterpart is among the subject's last
  ``features.recent_counterparts`` counterparts (``Tally.distinct`` is calls minus repeats: a
  bounded estimate of distinct callees that needs no set of every number called);
- ``sequential``: 1 when the counterpart has as many digits as the previous one and lies at
  most ``features.max_stride`` from it (a dialler stepping through a range).

Pure: the caller keeps the subject's ring of recent counterparts and its previous counterpart.
"""

from __future__ import annotations

import zlib

from config.policy import Features

UNALLOCATED = 1  # Q.850 cause 1: unallocated (unassigned) number


def counterpart_hash(other: str) -> int:
    """The 16-bit name of a counterpart kept in the ring of recent ones."""
    return zlib.crc32(other.encode()) & 0xFFFF


def is_sequential(last: str, other: str, max_stride: int) -> bool:
    """``other`` a small step (1 to ``max_stride``) from ``last``, both of the same length."""
    return (
        bool(last)
        and len(last) == len(other)
        and last.isdigit()
        and other.isdigit()
        and 0 < abs(int(other) - int(last)) <= max_stride
    )


def call_features(
    rules: Features,
    answered: bool,
    duration_s: int,
    cause: int,
    other: str,
    last_other: str,
    ring: list[int],
) -> list[int]:
    """The feature vector of one call; ``ring`` (the subject's recent counterparts, oldest
    first) gets ``other`` appended, keeping at most ``rules.recent_counterparts``."""
    inc = [
        1,
        1 if answered else 0,
        1 if answered and duration_s <= rules.short_call_s else 0,
        1 if cause == UNALLOCATED else 0,
        0,
        0,
    ]
    if other:
        h = counterpart_hash(other)
        if h in ring:
            inc[4] = 1
        ring.append(h)
        if len(ring) > rules.recent_counterparts:
            del ring[0]
        if is_sequential(last_other, other, rules.max_stride):
            inc[5] = 1
    return inc
