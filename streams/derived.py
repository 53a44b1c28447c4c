"""The derived stream's wire (README "Derived stream"): stage 1's observations of callees,
blocks and trunks go to stage 2 as ``[source partition, [observation, ...]]`` messages, each on
the partition of its subjects."""

from __future__ import annotations

import zlib

import orjson

from streams.cdr import Reject
from streams.observe import Obs


def derived_partition(subject: str, partitions: int) -> int:
    """The derived-topic partition of a subject: stable across processes and restarts."""
    return zlib.crc32(subject.encode()) % partitions


MAX_OBS_PER_MESSAGE = 4000  # about 400 KB of JSON: well under Kafka's 1 MB default request


def derived_messages(
    observed: list[Obs], source: int, partitions: int, chunk: int = MAX_OBS_PER_MESSAGE
) -> list[tuple[int, bytes]]:
    """``(target partition, [source, [obs...]])`` messages: per target partition, as few as the
    size cap allows (never one per observation), in order."""
    by_target: dict[int, list[list[object]]] = {}
    for obs in observed:
        by_target.setdefault(derived_partition(obs.subject, partitions), []).append(obs.to_wire())
    return [
        (target, orjson.dumps([source, items[i : i + chunk]]))
        for target, items in by_target.items()
        for i in range(0, len(items), chunk)
    ]


def decode_derived(value: bytes | None) -> list[Obs | Reject]:
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return [Reject("malformed_json", "derived message is not JSON")]
    if not (isinstance(doc, list) and len(doc) == 2 and type(doc[0]) is int and doc[0] >= 0):
        return [Reject("not_an_object", "derived message is not [source, [observations]]")]
    source, items = doc
    if not isinstance(items, list):
        return [Reject("not_an_object", "derived observations are not an array")]
    return [Obs.from_wire(item, source) for item in items]
