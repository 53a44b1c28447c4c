"""Blocking reads from Kafka (kafka-python) for recovery, and their executor wrappers: which
alerts the alert topic already holds, and a partition's messages in an offset range."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from config.settings import Settings
from streams.batches import items_of
from streams.items import Item
from streams.security import kafka_python_kwargs

REREAD_CHUNK = 20_000  # messages per re-read from Kafka when the store lost writes
REREAD_TIMEOUT_S = 15.0


def alert_ids_in_tail(settings: Settings, wanted: set[str]) -> set[str]:
    """Which of ``wanted`` are among the last ``outbox_tail_messages`` of each alert-topic
    partition (blocking: run it in an executor)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.split(","),
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
        **kafka_python_kwargs(settings),
    )
    found: set[str] = set()
    try:
        parts = consumer.partitions_for_topic(settings.alert_topic) or set()
        tps = [TopicPartition(settings.alert_topic, p) for p in parts]
        if not tps:
            return found
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        begins = consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(begins[tp], ends[tp] - settings.outbox_tail_messages))
        remaining = {tp for tp in tps if ends[tp] > begins[tp]}
        while remaining:
            batch = consumer.poll(timeout_ms=1000, max_records=5000)
            if not batch:
                break
            for tp, messages in batch.items():
                for message in messages:
                    try:
                        alert_id = orjson.loads(message.value).get("alert_id")
                    except (orjson.JSONDecodeError, AttributeError):
                        continue
                    if alert_id in wanted:
                        found.add(alert_id)
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()
    return found


def read_range(
    settings: Settings, topic: str, partition: int, start: int, end: int, limit: int
) -> list[tuple[int, bytes | None]]:
    """``(offset, value)`` of the messages of one partition in offsets [start, end), at most
    ``limit`` from ``start`` on (blocking: run it in an executor). Raises TimeoutError when the
    broker stops answering before ``end`` is reached."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.split(","),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kafka_python_kwargs(settings),
    )
    tp = TopicPartition(topic, partition)
    found: list[tuple[int, bytes | None]] = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, max(start, consumer.beginning_offsets([tp])[tp]))
        quiet_since = time.monotonic()
        while len(found) < limit and consumer.position(tp) < end:
            batch = consumer.poll(timeout_ms=500, max_records=min(limit - len(found), 5000))
            messages = [m for m in batch.get(tp, []) if m.offset < end]
            if not messages and not batch:
                if time.monotonic() - quiet_since > REREAD_TIMEOUT_S:
                    raise TimeoutError(f"no messages from {topic}/{partition} at {start}")
                continue
            quiet_since = time.monotonic()
            found.extend((m.offset, m.value) for m in messages)
            if len(messages) < len(batch.get(tp, [])):
                break  # reached ``end``
    finally:
        consumer.close()
    return found[:limit]


async def published_ids(settings: Settings, wanted: set[str]) -> set[str]:
    """``alert_ids_in_tail`` off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, partial(alert_ids_in_tail, settings, wanted))


async def reread(
    settings: Settings,
    topic: str,
    decode: Callable[[bytes | None], list[Any]],
    partition: int,
    start: int,
    end: int,
) -> list[Item]:
    """A stage's decoded items for input offsets [start, end) (``Links.reread``), off the
    event loop."""
    loop = asyncio.get_running_loop()
    read = partial(read_range, settings, topic, partition, start, end, REREAD_CHUNK)
    return items_of(await loop.run_in_executor(None, read), decode)
