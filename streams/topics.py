"""Topics: Kafka's partitioner as producers apply it, and creation of the topics dialwatch owns."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping

from kafka.partitioner.default import murmur2  # type: ignore[import-untyped, unused-ignore]


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` (murmur2, as in Java)."""
    if partitions < 1:
        raise ValueError("partitions must be positive")
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def create_topics(
    bootstrap: str,
    topics: dict[str, int],
    timeout_s: float = 30.0,
    kafka_options: Mapping[str, object] | None = None,
    replication: int = 1,
) -> None:
    """Create topics (name -> partitions) that do not exist yet, with ``replication`` replicas.
    ``kafka_options`` are extra KafkaAdminClient settings (TLS, SASL:
    ``streams.security.kafka_python_kwargs``)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap, client_id="dialwatch-admin", **(kafka_options or {})
            )
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, num_partitions=n, replication_factor=replication)
            for name, n in topics.items()
            if name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()
