"""Topics: Kafka's partitioner as producers apply it, creation of the topics dialwatch owns,
and the worker's Faust topic definitions."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kafka.partitioner.default import murmur2  # type: ignore[import-untyped, unused-ignore]

from config.settings import Settings

if TYPE_CHECKING:  # the tooling imports the partitioner; only the worker needs Faust
    import faust
    from faust.types import TopicT


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
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create topics (name -> partitions) that do not exist yet, with ``replication`` replicas.
    ``kafka_options`` are extra KafkaAdminClient settings (TLS, SASL:
    ``streams.security.kafka_python_kwargs``); ``configs``: topic configs by name (retention)."""
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
            NewTopic(
                name,
                num_partitions=n,
                replication_factor=replication,
                topic_configs=dict((configs or {}).get(name, {})),
            )
            for name, n in topics.items()
            if name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()


@dataclass(frozen=True)
class WorkerTopics:
    """The worker's Faust topics, all raw bytes both ways."""

    cdrs: TopicT  # input, keyed by caller (stage 1)
    derived: TopicT  # stage 1 -> stage 2 observations (streams.derived)
    rekeyed: TopicT  # stage 1 -> stage 1: CDRs moved to their caller's partition (streams.rekey)
    complaints: TopicT  # reports, keyed by number (streams.complaints)
    alerts: TopicT
    dead: TopicT  # dead letters (streams.deadletter)
    feed: TopicT  # the regulator feed (streams.feed.records): leaves dialwatch


def worker_topics(app: faust.App, settings: Settings) -> WorkerTopics:
    def topic(name: str) -> TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes)

    return WorkerTopics(
        cdrs=topic(settings.cdr_topic),
        derived=topic(settings.derived_topic),
        rekeyed=topic(settings.repartition_topic),
        complaints=topic(settings.complaint_topic),
        alerts=topic(settings.alert_topic),
        dead=topic(settings.dead_letter_topic),
        feed=topic(settings.feed_topic),
    )


def owned_topics(settings: Settings) -> dict[str, int]:
    """The topics the worker creates when missing (name -> partitions): the CDR, alert and
    dead-letter topics belong to the deployment."""
    return {
        settings.derived_topic: settings.topic_partitions,
        settings.repartition_topic: settings.topic_partitions,
        settings.complaint_topic: settings.topic_partitions,
        settings.audit_topic: settings.topic_partitions,
        settings.interception_topic: settings.topic_partitions,
        settings.feed_topic: settings.topic_partitions,
        settings.leak_candidates_topic: settings.topic_partitions,
    }


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Retention of the topics the worker creates (docs/privacy.md): the internal ones carry
    callee numbers and are kept only as long as a restart's re-read needs, the audit mirrors as
    long as the audit trail, the feed as long as regulators may ask for an export."""
    internal = str(settings.internal_retention_s * 1000)
    return {
        settings.derived_topic: {"retention.ms": internal},
        settings.repartition_topic: {"retention.ms": internal},
        settings.feed_topic: {"retention.ms": str(settings.feed_retention_s * 1000)},
        settings.audit_topic: {"retention.ms": str(settings.audit_retention_s * 1000)},
        settings.interception_topic: {"retention.ms": str(settings.audit_retention_s * 1000)},
    }
