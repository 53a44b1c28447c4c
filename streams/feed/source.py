"""Where ``feed export`` reads: the whole feed topic as it stands, or a JSON Lines file of
feed records (an archive of the topic)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from config.settings import Settings
from streams.errors import InputError, UsageError, path_error
from streams.security import kafka_python_kwargs

QUIET_POLLS = 2  # empty polls after the end offsets before the topic counts as read
BOOTSTRAP_TIMEOUT_MS = 5000  # an unreachable broker is reported after this long


def read_file(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise path_error(path, exc, "--input") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise InputError(f"--input {path}:{number}: not a JSON feed record") from None
        if isinstance(value, dict):
            out.append(value)
    return out


def read_topic(settings: Settings, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every record on ``DIALWATCH_FEED_TOPIC``, from the start of each partition to its end
    when the read began (Tansu may report an end offset below the last batch, so the read
    goes on until the partitions stay quiet)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    topic = settings.feed_topic
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka.split(","),
            enable_auto_commit=False,
            request_timeout_ms=int(timeout_s * 1000) + 1000,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            **kafka_python_kwargs(settings),
        )
    except KafkaError as exc:
        raise UsageError(
            f"DIALWATCH_KAFKA {settings.kafka}: cannot reach the broker ({type(exc).__name__});"
            " is it running there?"
        ) from None
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise UsageError(
                f"DIALWATCH_FEED_TOPIC {topic}: no such topic on {settings.kafka} (the worker"
                " creates it; check the name)"
            )
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends: Mapping[Any, int] = consumer.end_offsets(tps)
        out: list[dict[str, Any]] = []
        quiet, deadline = 0, time.monotonic() + timeout_s
        while quiet < QUIET_POLLS:
            batches = consumer.poll(timeout_ms=500, max_records=5000)
            got = 0
            for messages in batches.values():
                for message in messages:
                    got += 1
                    try:
                        value = orjson.loads(message.value)
                    except orjson.JSONDecodeError:
                        continue  # not ours; the feed's producer writes JSON only
                    if isinstance(value, dict):
                        out.append(value)
            done = all(consumer.position(tp) >= ends[tp] for tp in tps)
            quiet = quiet + 1 if (got == 0 and done) else 0
            if time.monotonic() > deadline:
                raise UsageError(f"DIALWATCH_FEED_TOPIC {topic}: no end after {timeout_s} s")
        return out
    except KafkaError as exc:
        raise UsageError(f"DIALWATCH_KAFKA {settings.kafka}: {exc}") from None
    finally:
        consumer.close()
