"""Faust batches cut into what the engine takes: per partition, ``(offset, record)`` items in
message order, in chunks of bounded size."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from streams.items import Item

Messages = list[tuple[int, bytes | None]]  # one partition's (offset, value) in order


def items_of(
    messages: Iterable[tuple[int, bytes | None]], decode: Callable[[bytes | None], list[Any]]
) -> list[Item]:
    """A partition's items in message order; a message that decodes to nothing still advances
    the stored offset (``None``), so the next batch never looks like a gap."""
    items: list[Item] = []
    for offset, value in messages:
        records = decode(value)
        items.extend((offset, rec) for rec in records)
        if not records:
            items.append((offset, None))
    return items


def chunks(
    messages: Sequence[tuple[int, bytes | None]],
    decode: Callable[[bytes | None], list[Any]],
    limit: int,
) -> Iterator[list[Item]]:
    """A partition's items, decoded lazily and cut after the message that reaches ``limit``
    records: Faust's batch counts messages, and a batch of JSON arrays can hold a million
    CDRs. Each chunk is one store round trip; only one chunk is decoded at a time."""
    chunk: list[Item] = []
    for offset, value in messages:
        chunk.extend(items_of([(offset, value)], decode))
        if len(chunk) >= limit:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def split(events: list[Any]) -> tuple[dict[int, Messages], dict[tuple[int, int], bytes]]:
    """Per partition its ``(offset, value)`` messages, and the raw values by offset."""
    messages: dict[int, Messages] = {}
    raw: dict[tuple[int, int], bytes] = {}
    for event in events:
        message = event.message
        messages.setdefault(message.partition, []).append((message.offset, message.value))
        raw[(message.partition, message.offset)] = message.value or b""
    return messages, raw


def oldest_times(events: list[Any]) -> dict[int, float]:
    """Per partition, the Kafka timestamp (epoch seconds) of its oldest message in the batch:
    where the alert latency of the batch's alerts starts (dialwatch_alert_latency_seconds)."""
    oldest: dict[int, float] = {}
    for event in events:
        message = event.message
        stamp = message.timestamp
        if stamp and stamp < oldest.get(message.partition, float("inf")):
            oldest[message.partition] = float(stamp)
    return oldest
