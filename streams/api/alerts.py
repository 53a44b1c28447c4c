"""The recent alerts every worker's API serves: the tail of the alert topic, followed.

A thread reads every partition of ``DIALWATCH_ALERT_TOPIC`` from the last
``api_recent_alerts`` messages on (no consumer group: each worker sees all alerts, whichever
worker raised them) and keeps the newest ``api_recent_alerts`` in memory. Alerts name callees
only by pseudonym, so nothing here needs hiding from a read-only token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import orjson

from config.settings import Settings
from streams.security import kafka_python_kwargs

log = logging.getLogger("dialwatch.api")
RETRY_S = 2.0


class RecentAlerts:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._alerts: deque[dict[str, Any]] = deque(maxlen=settings.api_recent_alerts)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.caught_up = False  # the tail as it was at start has been read

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recent-alerts", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def add(self, alert: dict[str, Any]) -> None:
        with self._lock:
            self._alerts.append(alert)

    def newest(
        self, limit: int, number: str | None = None, numbers: set[str] | None = None
    ) -> list[dict[str, Any]]:
        """The newest alerts first, of ``number`` (or any of ``numbers``) when given."""
        with self._lock:
            rows = list(self._alerts)
        out = []
        for alert in reversed(rows):
            shown = str(alert.get("number", ""))
            if number is not None and shown != number:
                continue
            if numbers is not None and shown not in numbers:
                continue
            out.append(alert)
            if len(out) >= limit:
                break
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as exc:  # the broker away: try again, the API stays up
                log.warning("recent alerts: %s; retrying", type(exc).__name__)
                self._stop.wait(RETRY_S)

    def _follow(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        settings = self.settings
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka.split(","),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            **kafka_python_kwargs(settings),
        )
        try:
            parts: set[int] = set()
            while not parts and not self._stop.is_set():
                parts = consumer.partitions_for_topic(settings.alert_topic) or set()
                if not parts:
                    self.caught_up = True  # no topic yet: nothing to catch up on
                    self._stop.wait(RETRY_S)
            tps = [TopicPartition(settings.alert_topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            ends = consumer.end_offsets(tps)
            begins = consumer.beginning_offsets(tps)
            for tp in tps:
                consumer.seek(tp, max(begins[tp], ends[tp] - settings.api_recent_alerts))
            started = time.monotonic()
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=500, max_records=2000)
                fresh = []
                for messages in batch.values():
                    for message in messages:
                        try:
                            alert = orjson.loads(message.value)
                        except orjson.JSONDecodeError:
                            continue
                        if isinstance(alert, dict):
                            fresh.append((message.timestamp, alert))
                fresh.sort(key=lambda pair: pair[0])  # partitions interleaved by broker time
                for _, alert in fresh:
                    self.add(alert)
                if not self.caught_up and (
                    all(consumer.position(tp) >= ends[tp] for tp in tps)
                    or time.monotonic() - started > 30
                ):
                    self.caught_up = True
        finally:
            consumer.close()
