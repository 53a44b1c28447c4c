"""The worker's gauges that need a service to read (README "Metrics and endpoints"): the
interception list's sizes and breaker, and each assigned partition's lag as Kafka sees it
(log end minus the group's committed offset) and as the state sees it (log end minus the
offset stored in Redis, the truth here); plus the event-time lag of each partition.

``refresh`` runs on a timer (``DIALWATCH_METRICS_REFRESH_S``) and caches what it read; a
scrape (``collect``) only reads the cache, so /metrics never waits on Redis or Kafka. Labels:
``state`` (intercepted, pending, protected), ``stage`` (callers, subjects), ``topic`` (the
worker's three input topics) and ``partition`` (at most the topics' partition counts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from config.settings import Settings
from streams.interception.store import InterceptStore
from streams.metrics import STAGE_CALLERS, STAGE_SUBJECTS, Metrics
from streams.runtime import Runtime
from streams.security import kafka_python_kwargs

log = logging.getLogger("dialwatch.worker")
STALE_AFTER = 3  # refresh periods without a successful read: the cached values are dropped
KAFKA_TIMEOUT_S = 10.0  # one lag read from the broker; a slower one is abandoned


@dataclass
class Cache:
    lists: dict[str, int] = field(default_factory=dict)  # state -> numbers
    breaker_open: int | None = None
    lists_at: float = 0.0  # wall clock of the last successful list read
    kafka_lag: dict[tuple[str, int], int] = field(default_factory=dict)
    state_lag: dict[tuple[str, int], int] = field(default_factory=dict)
    lag_at: float = 0.0


class Gauges(Collector):
    """A custom collector over values ``refresh`` caches (one per worker process)."""

    def __init__(
        self,
        settings: Settings,
        callers: Runtime,
        subjects: Runtime,
        intercept: InterceptStore | None,
        assignment: Callable[[], set[tuple[str, int]]],
    ) -> None:
        self.settings = settings
        self.callers, self.subjects = callers, subjects
        self.metrics: Metrics = callers.metrics
        self.intercept = intercept
        self.assignment = assignment  # (topic, partition) this worker consumes now
        self.cache = Cache()
        self._kafka: Any = None  # kafka-python (consumer, admin), made on first use
        self._reading: asyncio.Future[Any] | None = None  # the broker read in its thread

    # --- refresh (timer) -------------------------------------------------------------------

    async def refresh(self) -> None:
        await self.refresh_lists()
        await self.refresh_lag()

    async def refresh_lists(self) -> None:
        """One pipelined round trip to the list's Redis: the three index sizes (entries not
        yet expired) and the breaker flag."""
        store = self.intercept
        if store is None:
            return
        now_ms = int(time.time() * 1000)
        started = time.perf_counter()
        try:
            pipe = store.client.pipeline(transaction=False)
            for name in ("active", "pending", "prot"):
                pipe.zcount(store.key("idx", name), f"({now_ms}", "+inf")
            pipe.exists(store.key("brkopen"))
            active, pending, protected, breaker = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("interception gauges not refreshed (%s)", type(exc).__name__)
            return
        self.metrics.redis_call("list_gauges", time.perf_counter() - started)
        self.cache.lists = {
            "intercepted": int(active),
            "pending": int(pending),
            "protected": int(protected),
        }
        self.cache.breaker_open = 1 if int(breaker) else 0
        self.cache.lists_at = time.time()

    def inputs(self) -> dict[str, tuple[Runtime, bool]]:
        """Input topic -> (its runtime, whether its stored offset is ``roff``)."""
        s = self.settings
        return {
            s.cdr_topic: (self.callers, False),
            s.repartition_topic: (self.callers, True),
            s.derived_topic: (self.subjects, False),
        }

    async def refresh_lag(self) -> None:
        inputs = self.inputs()
        tps = sorted(tp for tp in self.assignment() if tp[0] in inputs)
        if not tps:
            self.cache.kafka_lag, self.cache.state_lag = {}, {}
            self.cache.lag_at = time.time()
            return
        if self._reading is not None and not self._reading.done():
            return  # the previous read still blocks its thread (kafka-python is not shareable)
        self._reading = asyncio.ensure_future(asyncio.to_thread(self._offsets, tps))
        try:
            ends, committed = await asyncio.wait_for(asyncio.shield(self._reading), KAFKA_TIMEOUT_S)
        except Exception as exc:  # the broker is down or slow: keep the old values a while
            log.warning("consumer lag not refreshed (%s)", type(exc).__name__)
            if self._reading.done():
                self._close_kafka()
            return
        state_lag: dict[tuple[str, int], int] = {}
        for topic, partition in tps:
            runtime, rekeyed = inputs[topic]
            try:
                meta = await runtime.engine.store.load_meta(partition)
            except (RedisError, OSError) as exc:
                log.warning("state lag not refreshed (%s)", type(exc).__name__)
                return
            stored = meta.rekeyed if rekeyed else meta.offset
            state_lag[(topic, partition)] = max(0, ends[(topic, partition)] - (stored + 1))
        self.cache.kafka_lag = {
            tp: max(0, ends[tp] - committed.get(tp, 0)) for tp in tps if tp in ends
        }
        self.cache.state_lag = state_lag
        self.cache.lag_at = time.time()

    def _offsets(
        self, tps: list[tuple[str, int]]
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        """(log-end offsets, the group's committed offsets) of ``tps`` (blocking)."""
        from kafka import KafkaConsumer, TopicPartition
        from kafka.admin import KafkaAdminClient

        if self._kafka is None:
            servers = self.settings.kafka.split(",")
            options = kafka_python_kwargs(self.settings)
            consumer = KafkaConsumer(
                bootstrap_servers=servers, group_id=None, enable_auto_commit=False, **options
            )
            admin = KafkaAdminClient(
                bootstrap_servers=servers, client_id="dialwatch-lag", **options
            )
            self._kafka = (consumer, admin)
        consumer, admin = self._kafka
        wanted = [TopicPartition(t, p) for t, p in tps]
        timeout_ms = int(KAFKA_TIMEOUT_S * 1000)
        ends = {
            (tp.topic, tp.partition): int(o)
            for tp, o in consumer.end_offsets(wanted, timeout_ms=timeout_ms).items()
        }
        group = self.settings.app_id
        offsets = admin.list_group_offsets({group: wanted}).get(group, {})
        committed = {
            (tp.topic, tp.partition): int(meta.offset)
            for tp, meta in offsets.items()
            if meta is not None and meta.offset is not None and meta.offset >= 0
        }
        return ends, committed

    def _close_kafka(self) -> None:
        if self._kafka is not None:
            for client in self._kafka:
                with contextlib.suppress(Exception):  # a broken client: nothing more to do
                    client.close()
            self._kafka = None

    def close(self) -> None:
        self._close_kafka()

    # --- collect (scrape) ------------------------------------------------------------------

    def lag(self) -> dict[str, object]:
        """/health's ``lag``: per input topic, the state lag and Kafka's (messages, summed over
        the partitions this worker holds; None while the cached read is stale), and stage 1's
        event-time lag (seconds, its most behind partition)."""
        cache, fresh = self.cache, self.fresh(self.cache.lag_at)
        by_topic: dict[str, dict[str, int | None]] = {}
        for name, values in (
            ("state_messages", cache.state_lag),
            ("kafka_messages", cache.kafka_lag),
        ):
            for (topic, _), n in values.items():
                entry = by_topic.setdefault(topic, {"state_messages": None, "kafka_messages": None})
                entry[name] = (entry[name] or 0) + n if fresh else None
        now = time.time()
        newest = [ms for ms in self.callers.engine.newest_by_partition().values() if ms > 0]
        event_s = round(max(0.0, now - min(newest) / 1000), 1) if newest else None
        return {"topics": by_topic, "event_time_s": event_s, "read_at": cache.lag_at or None}

    def fresh(self, at: float) -> bool:
        return time.time() - at <= STALE_AFTER * self.settings.metrics_refresh_s

    def collect(self) -> Iterator[Metric]:
        cache = self.cache
        if self.intercept is not None and cache.lists and self.fresh(cache.lists_at):
            numbers = GaugeMetricFamily(
                "dialwatch_interception_numbers",
                "Numbers on the interception list now, by state (intercepted: active entries; "
                "pending: awaiting approval; protected: victims shielded). Every worker reports "
                "the same list: aggregate with max, not sum",
                labels=["state"],
            )
            for state, n in sorted(cache.lists.items()):
                numbers.add_metric([state], n)
            yield numbers
            yield GaugeMetricFamily(
                "dialwatch_interception_breaker_open",
                "1 while the interception breaker is open (new auto-listings wait for approval)",
                value=cache.breaker_open or 0,
            )
        if self.fresh(cache.lag_at):
            for name, doc, values in (
                (
                    "dialwatch_consumer_lag_messages",
                    "Log-end offset minus the consumer group's committed offset, per assigned "
                    "input partition (Kafka's view)",
                    cache.kafka_lag,
                ),
                (
                    "dialwatch_state_lag_messages",
                    "Log-end offset minus the next offset the Redis state has applied, per "
                    "assigned input partition (the truth: the stored offset)",
                    cache.state_lag,
                ),
            ):
                family = GaugeMetricFamily(name, doc, labels=["topic", "partition"])
                for (topic, partition), lag in sorted(values.items()):
                    family.add_metric([topic, str(partition)], lag)
                yield family
        event_lag = GaugeMetricFamily(
            "dialwatch_event_time_lag_seconds",
            "Wall clock minus the newest start_time applied, per partition this worker holds",
            labels=["stage", "partition"],
        )
        now = time.time()
        for stage, runtime in ((STAGE_CALLERS, self.callers), (STAGE_SUBJECTS, self.subjects)):
            for partition, newest_ms in sorted(runtime.engine.newest_by_partition().items()):
                if newest_ms > 0:
                    event_lag.add_metric([stage, str(partition)], max(0.0, now - newest_ms / 1000))
        yield event_lag
