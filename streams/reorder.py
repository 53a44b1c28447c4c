"""Stage 2's canonical order (docs/ordering.md): derived observations are held until every
source's progress has passed them, then released sorted by content, so the subject engine sees
them in one order whatever the interleaving of the stage-1 partitions, the batching or the
faults.

Each observation has a place in that order, ``Obs.order_ms``: its start_time, or, for a CDR
that arrived on its stage-1 partition after a later one (a late CDR), that partition's front
when it was read (``Obs.after_ms``). A source (a stage-1 partition) tells its progress with
every derived message it sends to every derived partition (``Progress``): ``front_ms``, the
newest start_time that arrived on it, a promise that no later observation of it has an earlier
place, whatever the order of its input. An observation is released once its place is below
every active source's front; a source that has read everything there is to read, and for
``progress_idle_s``, says so (``idle``) and stops holding the others back until it sends again.
The held observations and the idle sources are stored with the partition's state and offset
(``PartitionMeta.held``), so a restart resumes the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from streams.observe import Obs

FOREVER = 2**62  # the release point when every source is idle: release everything


@dataclass(frozen=True, slots=True)
class Progress:
    """A source's progress, carried by a derived message after its observations."""

    source: int  # the stage-1 partition
    front_ms: int  # its newest arrived start_time
    idle: bool = False  # it has read all its input: it does not hold back the others


@dataclass(frozen=True, slots=True)
class Held:
    """What a derived partition holds back: observations not yet released, and idle sources."""

    observations: tuple[Obs, ...] = ()
    idle: frozenset[int] = frozenset()


EMPTY = Held()


def order_key(obs: Obs) -> tuple[int, int, str, str, str, str, int]:
    """The canonical order: its place (the start time, or for a late CDR stage 1's front when
    it was read, ``Obs.order_ms``), then start time, then cdr id (then the rest, for identical
    ids)."""
    return (obs.order_ms, obs.start_ms, obs.cdr_id, obs.kind, obs.subject, obs.other, obs.source)


def release_point(fronts: dict[int, int], idle: frozenset[int], sources: int) -> int | None:
    """Observations starting before this are released; None while some source of the
    ``sources`` expected has never been heard from."""
    if len(fronts) < sources:
        return None
    active = [front for source, front in fronts.items() if source not in idle]
    return min(active) if active else FOREVER


def release(held: list[Obs], point: int | None, cap: int) -> tuple[list[Obs], tuple[Obs, ...], int]:
    """(released in canonical order, still held, how many were released early because more
    than ``cap`` were held: the order is then no longer guaranteed for them)."""
    ordered = sorted(held, key=order_key)
    n = 0 if point is None else _count_before(ordered, point)
    forced = max(0, len(ordered) - n - cap)
    return ordered[: n + forced], tuple(ordered[n + forced :]), forced


def _count_before(ordered: list[Obs], point: int) -> int:
    lo, hi = 0, len(ordered)
    while lo < hi:
        mid = (lo + hi) // 2
        if ordered[mid].order_ms < point:
            lo = mid + 1
        else:
            hi = mid
    return lo


def encode(held: Held) -> bytes:
    """The stored form (``b""`` when nothing is held)."""
    if not held.observations and not held.idle:
        return b""
    return orjson.dumps([sorted(held.idle), [list(obs) for obs in held.observations]])


def decode(blob: bytes) -> Held:
    if not blob:
        return EMPTY
    idle, items = orjson.loads(blob)  # items: Obs fields (written before after_ms: without it)
    return Held(tuple(Obs(*item) for item in items), frozenset(idle))
