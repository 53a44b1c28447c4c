"""``dialwatch worker``: the Faust app, its agent and its web endpoints.

The agent takes a batch of events, splits it by partition, and for each partition runs the
engine (one store read, one fenced store write), publishes the alerts and dead letters, and only
then lets Faust acknowledge the batch. A store or broker failure is retried in place with
backoff: an exception never escapes the loop with an unapplied batch, because faust-streaming
0.15 acknowledges what an abandoned ``take`` generator held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from config.settings import Settings
from streams.cdr import decode_message
from streams.engine import Engine, Item, Outcome
from streams.factory import build_engine
from streams.metrics import Metrics
from streams.state.base import StaleOffset

log = logging.getLogger("dialwatch.worker")


class Runtime:
    """What the agent needs between batches: the engine, metrics, health."""

    def __init__(self, settings: Settings, engine: Engine, metrics: Metrics) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.healthy = True
        self.last_error: str | None = None
        self.last_batch_at: float | None = None

    async def process(self, partition: int, items: Sequence[Item]) -> Outcome:
        """Apply one partition's batch, retrying in place until the store takes it."""
        delay = 0.05
        while True:
            started = time.perf_counter()
            try:
                outcome = await self.engine.process(partition, items)
            except StaleOffset as exc:
                # The stored offset moved (a replay after a restart, or another owner): reload
                # it; records at or below it are then skipped as already applied.
                log.warning("partition %d: %s; reloading its offset", partition, exc)
                self.engine.forget(partition)
                continue
            except (RedisError, OSError) as exc:
                self.healthy, self.last_error = False, type(exc).__name__
                self.metrics.store_errors.inc()
                self.engine.forget(partition)
                log.warning("store unavailable (%s); retrying in %.2f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_backoff_s)
                continue
            except Exception as exc:  # a bug: stall visibly rather than drop the batch
                log.exception("partition %d: batch failed (%s); retrying", partition, exc)
                self.healthy, self.last_error = False, type(exc).__name__
                self.engine.forget(partition)
                await asyncio.sleep(self.settings.retry_max_backoff_s)
                continue
            self.healthy, self.last_error = True, None
            self.last_batch_at = time.time()
            self.metrics.record(outcome, time.perf_counter() - started)
            return outcome

    async def publish(
        self, partition: int, outcome: Outcome, sends: Callable[[], Awaitable[list[Any]]]
    ) -> None:
        """Send alerts and dead letters and wait for the broker, retrying until it confirms.

        The state is already written, so a failed send is repeated rather than skipped: a
        duplicate alert (same alert_id) is better than a lost one.
        """
        if not outcome.alerts and not outcome.rejects:
            return
        delay = 0.05
        while True:
            try:
                await asyncio.gather(*(await sends()))
            except Exception as exc:
                self.healthy, self.last_error = False, type(exc).__name__
                log.warning("partition %d: publish failed (%s); retrying", partition, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_backoff_s)
                continue
            for alert in outcome.alerts:
                self.metrics.published(alert)
            return


def build_app(settings: Settings, runtime: Runtime) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.kafka.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.topic_partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        stream_wait_empty=False,
    )
    cdrs = app.topic(settings.cdr_topic, key_type=bytes, value_type=bytes)
    alerts = app.topic(settings.alert_topic, key_type=bytes, value_type=bytes)
    dead = app.topic(settings.dead_letter_topic, key_type=bytes, value_type=bytes)
    tz = runtime.engine.tz

    @app.agent(cdrs, name="by_caller")
    async def by_caller(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
            by_partition: dict[int, list[Item]] = {}
            raw: dict[tuple[int, int], bytes] = {}
            for event in events:
                message = event.message
                part = by_partition.setdefault(message.partition, [])
                for rec in decode_message(message.value):
                    part.append((message.offset, rec))
                raw[(message.partition, message.offset)] = message.value or b""
            for partition, items in by_partition.items():
                outcome = await runtime.process(partition, items)
                await runtime.publish(partition, outcome, partial(_sends, partition, outcome, raw))

    async def _sends(
        partition: int, outcome: Outcome, raw: dict[tuple[int, int], bytes]
    ) -> list[Any]:
        pending = [
            await alerts.send(key=alert.number.encode(), value=orjson.dumps(alert.to_dict(tz)))
            for alert in outcome.alerts
        ]
        for offset, reject in outcome.rejects:
            headers = {
                "reason": reject.reason.encode(),
                "detail": reject.detail.encode(),
                "source": f"{settings.cdr_topic}/{partition}/{offset}".encode(),
            }
            pending.append(
                await dead.send(key=None, value=raw[(partition, offset)], headers=headers)
            )
        return pending

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body = generate_latest(runtime.metrics.registry)
        return web.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        body = {
            "status": "ok" if runtime.healthy else "degraded",
            "store": "ok" if runtime.healthy else runtime.last_error,
            "last_batch_at": runtime.last_batch_at,
        }
        return web.json(body, status=200 if runtime.healthy else 503)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        for tp in revoked:
            runtime.engine.forget(tp.partition)

    return app


def run_worker(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    engine = build_engine(settings)
    runtime = Runtime(settings, engine, Metrics())
    app = build_app(settings, runtime)
    worker = faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
