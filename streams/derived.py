"""The derived stream's wire (README "Derived stream"): stage 1's observations of callees,
blocks and trunks go to stage 2 as ``[source partition, [observation, ...], front ms, idle]``
messages, each on the partition of its subjects; every stage-1 batch sends one to every derived
partition, so each learns the source's progress (``streams.reorder.Progress``) even when the
batch had nothing for it. ``[source, [observation, ...]]`` (before issue 17) is still read."""

from __future__ import annotations

import zlib

import orjson

from streams.cdr import Reject
from streams.observe import Obs
from streams.reorder import Progress


def derived_partition(subject: str, partitions: int) -> int:
    """The derived-topic partition of a subject: stable across processes and restarts."""
    return zlib.crc32(subject.encode()) % partitions


MAX_OBS_PER_MESSAGE = 4000  # about 400 KB of JSON: well under Kafka's 1 MB default request


def derived_messages(
    observed: list[Obs],
    source: int,
    partitions: int,
    front_ms: int,
    idle: bool = False,
    chunk: int = MAX_OBS_PER_MESSAGE,
) -> list[tuple[int, bytes]]:
    """``(target partition, [source, [obs...], front_ms, idle])`` messages: per target
    partition, as few as the size cap allows (never one per observation), in order, and one
    for every target partition (with no observations when it has none): each message tells the
    source's progress after its observations. A target's last message carries ``front_ms``;
    one cut before it only the newest start among the observations sent so far, since the
    rest of the batch is still to come (telling the batch's front there made stage 2 reject
    the next messages' observations as too late once a batch spanned more than the lateness:
    a catch-up of historical CDRs)."""
    by_target: dict[int, list[Obs]] = {p: [] for p in range(partitions)}
    for obs in observed:
        by_target[derived_partition(obs.subject, partitions)].append(obs)
    out = []
    for target, items in by_target.items():
        starts = 0
        for i in range(0, max(len(items), 1), chunk):
            part = items[i : i + chunk]
            starts = max([starts, *(o.start_ms for o in part)])
            last = i + chunk >= len(items)
            front = front_ms if last else min(front_ms, starts)
            wire = [o.to_wire() for o in part]
            out.append((target, orjson.dumps([source, wire, front, idle and last])))
    return out


def progress_messages(source: int, partitions: int, front_ms: int) -> list[tuple[int, bytes]]:
    """A source that has read all its input tells every derived partition (the heartbeat)."""
    return derived_messages([], source, partitions, front_ms, idle=True)


def decode_derived(value: bytes | None) -> list[Obs | Progress | Reject]:
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return [Reject("malformed_json", "derived message is not JSON")]
    if not (isinstance(doc, list) and len(doc) in (2, 4) and type(doc[0]) is int and doc[0] >= 0):
        return [Reject("not_an_object", "derived message is not [source, [observations], ...]")]
    source, items = doc[0], doc[1]
    if not isinstance(items, list):
        return [Reject("not_an_object", "derived observations are not an array")]
    out: list[Obs | Progress | Reject] = [Obs.from_wire(item, source) for item in items]
    if len(doc) == 4:
        front, idle = doc[2], doc[3]
        if type(front) is not int or not isinstance(idle, bool):
            out.append(Reject("bad_type", "derived progress is not [front ms, idle]"))
        else:
            out.append(Progress(source, front, idle))
    return out
