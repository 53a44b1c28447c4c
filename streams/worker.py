"""``dialwatch worker``: the Faust app, its two agents and its web endpoints.

``by_caller`` reads the CDR topic (keyed by caller). For each partition of a batch it first
publishes the batch's callee, block and trunk observations to the derived topic, one message
per target partition (README "Derived stream"), then runs the caller engine (one store read,
one fenced store write), publishes the alerts and dead letters, and only then lets Faust
acknowledge the batch. ``by_subject`` reads the derived topic and runs the subject engine the
same way. A store or broker failure is retried in place with backoff: an exception never
escapes the loop with an unapplied batch, because faust-streaming 0.15 acknowledges what an
abandoned ``take`` generator held.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from config.settings import Settings
from detectors.numbering import normalise
from streams.allowlist import Allowlist, shared_key
from streams.cdr import CDR, Reject, decode_message
from streams.complaints import Complaint, decode_complaints, record
from streams.engine import Engine, Item, Outcome
from streams.factory import build_engines
from streams.metrics import STAGE_CALLERS, STAGE_SUBJECTS, Metrics
from streams.observe import Obs, derived_obs
from streams.security import (
    api_token,
    bearer_ok,
    describe,
    faust_broker_kwargs,
    faust_web_kwargs,
    kafka_python_kwargs,
)
from streams.services import create_topics
from streams.simulate import partition_for
from streams.state.base import StaleOffset
from streams.state.redis import RedisStore

log = logging.getLogger("dialwatch.worker")


class Runtime:
    """What the agent needs between batches: the engine, metrics, health."""

    def __init__(
        self, settings: Settings, engine: Engine, metrics: Metrics, stage: str = STAGE_CALLERS
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.stage = stage
        self.healthy = True
        self.last_error: str | None = None
        self.last_batch_at: float | None = None

    async def recover(
        self,
        partition: int,
        published: Callable[[set[str]], Awaitable[set[str]]],
        send: Callable[[list[bytes]], Awaitable[list[Any]]],
    ) -> int:
        """Publish the alerts a previous owner wrote to the outbox but did not confirm.

        Runs when this process first meets a partition. Alerts already on the alert topic
        (``published`` reads its tail) are not sent again; the rest are. Returns how many.
        """
        pending: dict[str, bytes] = {}

        async def load() -> None:
            pending.update(await self.engine.store.pending_alerts(partition))

        await self.retry("outbox read", load)
        if not pending:
            return 0
        already = await published(set(pending))
        missing = [alert for alert_id, alert in pending.items() if alert_id not in already]
        if missing:
            await self.send_confirmed(partition, partial(send, missing))
        await self.retry(
            "outbox confirm",
            partial(self.engine.store.confirm_alerts, partition, list(pending)),
        )
        log.info(
            "partition %d: %d pending alerts, %d already published, %d sent",
            partition,
            len(pending),
            len(pending) - len(missing),
            len(missing),
        )
        return len(missing)

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
            self.metrics.record(outcome, time.perf_counter() - started, self.stage)
            return outcome

    async def retry(self, what: str, call: Callable[[], Awaitable[None]]) -> None:
        """Run a store call until it succeeds, backing off while the store is unavailable."""
        delay = 0.05
        while True:
            try:
                await call()
            except (RedisError, OSError, RuntimeError) as exc:
                self.healthy, self.last_error = False, type(exc).__name__
                self.metrics.store_errors.inc()
                log.warning("%s failed (%s); retrying in %.2f s", what, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_backoff_s)
                continue
            self.healthy, self.last_error = True, None
            return

    async def publish(
        self, partition: int, outcome: Outcome, sends: Callable[[], Awaitable[list[Any]]]
    ) -> None:
        """Send alerts and dead letters and wait for the broker, retrying until it confirms.

        The state is already written, so a failed send is repeated rather than skipped: a
        duplicate alert (same alert_id) is better than a lost one.
        """
        if not outcome.alerts and not outcome.rejects:
            return
        await self.send_confirmed(partition, sends)
        for alert in outcome.alerts:
            self.metrics.published(alert)
        if self.engine.outbox and outcome.alerts:
            ids = [a.alert_id for a in outcome.alerts]
            await self.retry(
                "outbox confirm", partial(self.engine.store.confirm_alerts, partition, ids)
            )

    async def send_confirmed(
        self, partition: int, sends: Callable[[], Awaitable[list[Any]]]
    ) -> None:
        """Run ``sends`` and wait for every delivery, retrying the lot until all are confirmed."""
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
            return


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


def build_app(settings: Settings, callers: Runtime, subjects: Runtime) -> faust.App:
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
        **faust_broker_kwargs(settings),
        **faust_web_kwargs(),
    )
    cdrs = app.topic(settings.cdr_topic, key_type=bytes, value_type=bytes)
    derived = app.topic(settings.derived_topic, key_type=bytes, value_type=bytes)
    alerts = app.topic(settings.alert_topic, key_type=bytes, value_type=bytes)
    dead = app.topic(settings.dead_letter_topic, key_type=bytes, value_type=bytes)
    tz = callers.engine.tz
    trunks = settings.international_trunks
    plan = callers.engine.numbering
    partitions = settings.topic_partitions

    def split(
        events: list[Any], decode: Callable[[bytes | None], list[Any]]
    ) -> tuple[dict[int, list[Item]], dict[tuple[int, int], bytes]]:
        by_partition: dict[int, list[Item]] = {}
        raw: dict[tuple[int, int], bytes] = {}
        for event in events:
            message = event.message
            part = by_partition.setdefault(message.partition, [])
            for rec in decode(message.value):
                part.append((message.offset, rec))
            raw[(message.partition, message.offset)] = message.value or b""
        return by_partition, raw

    @app.agent(cdrs, name="by_caller")
    async def by_caller(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
            by_partition, raw = split(events, partial(decode_message, plan=plan))
            for partition, items in by_partition.items():
                # Derived observations go out before the state write: a crash in between
                # replays them, and stage 2 drops the repeats by cdr_id.
                cdrs = (r for _, r in items if isinstance(r, CDR))
                observed = derived_obs(cdrs, trunks, partition, plan)
                if observed:
                    messages = derived_messages(observed, partition, partitions)
                    await callers.send_confirmed(partition, partial(_forward, messages))
                if not callers.engine.knows(partition):
                    await callers.recover(partition, published_ids, _send_raw)
                outcome = await callers.process(partition, items)
                await callers.publish(
                    partition, outcome, partial(_sends, settings.cdr_topic, partition, outcome, raw)
                )

    @app.agent(derived, name="by_subject")
    async def by_subject(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
            by_partition, raw = split(events, decode_derived)
            for partition, items in by_partition.items():
                if not subjects.engine.knows(partition):
                    await subjects.recover(partition, published_ids, _send_raw)
                outcome = await subjects.process(partition, items)
                await subjects.publish(
                    partition,
                    outcome,
                    partial(_sends, settings.derived_topic, partition, outcome, raw),
                )

    complaint_topic = app.topic(settings.complaint_topic, key_type=bytes, value_type=bytes)
    horizon_ms = callers.engine.policy.complaints.horizon_s * 1000

    @app.agent(complaint_topic, name="complaints")
    async def by_complaint(stream: Any) -> None:
        """Reports go to the caller partition of their number (README "Complaints")."""
        async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
            by_partition: dict[int, list[Complaint]] = {}
            rejects: list[tuple[Any, Reject]] = []
            for event in events:
                for rec in decode_complaints(event.message.value, plan):
                    if isinstance(rec, Reject):
                        rejects.append((event.message, rec))
                        continue
                    target = partition_for(rec.number.encode(), partitions)
                    by_partition.setdefault(target, []).append(rec)
            for target, complaints in by_partition.items():
                await callers.retry(
                    "complaint write",
                    partial(record, callers.engine.store, target, complaints, horizon_ms),
                )
                callers.metrics.complaints.labels("accepted").inc(len(complaints))
            if rejects:
                await callers.send_confirmed(-1, partial(_dead_complaints, rejects))
                for _, reject in rejects:
                    callers.metrics.complaints.labels(reject.reason).inc()

    async def _dead_complaints(rejects: list[tuple[Any, Reject]]) -> list[Any]:
        pending = []
        for message, reject in rejects:
            headers = {
                "reason": reject.reason.encode(),
                "detail": reject.detail.encode(),
                "source": f"{message.topic}/{message.partition}/{message.offset}".encode(),
            }
            pending.append(await dead.send(key=None, value=message.value or b"", headers=headers))
        return pending

    async def published_ids(wanted: set[str]) -> set[str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, partial(alert_ids_in_tail, settings, wanted))

    async def _send_raw(alerts_json: list[bytes]) -> list[Any]:
        pending = []
        for value in alerts_json:
            number = str(orjson.loads(value).get("number", ""))
            pending.append(await alerts.send(key=number.encode(), value=value))
        return pending

    async def _forward(messages: list[tuple[int, bytes]]) -> list[Any]:
        return [await derived.send(value=value, partition=target) for target, value in messages]

    async def _sends(
        source: str, partition: int, outcome: Outcome, raw: dict[tuple[int, int], bytes]
    ) -> list[Any]:
        pending = [
            await alerts.send(key=alert.number.encode(), value=orjson.dumps(alert.to_dict(tz)))
            for alert in outcome.alerts
        ]
        for offset, reject in outcome.rejects:
            headers = {
                "reason": reject.reason.encode(),
                "detail": reject.detail.encode(),
                "source": f"{source}/{partition}/{offset}".encode(),
            }
            pending.append(
                await dead.send(key=None, value=raw[(partition, offset)], headers=headers)
            )
        return pending

    allowlist = callers.engine.allowlist
    store = callers.engine.store
    shared = shared_key(settings.key_prefix)
    token = api_token(settings)

    async def refresh_allowlist() -> None:
        try:
            if isinstance(allowlist, Allowlist):
                allowlist.reload_if_changed()
                if isinstance(store, RedisStore):
                    allowlist.set_shared(await store.client.smembers(shared))
        except (OSError, ValueError, RedisError) as exc:  # keep the last good list
            log.warning("allowlist refresh failed (%s); keeping the current list", exc)

    @app.timer(settings.allowlist_refresh_s)  # type: ignore[untyped-decorator]
    async def allowlist_timer() -> None:
        await refresh_allowlist()

    @app.page("/allowlist")
    class AllowlistView(faust.web.View):
        """GET: how many entries. POST {"number": ...} (bearer token): add a shared entry."""

        async def get(self, request: Any) -> Any:
            return self.json({"entries": len(allowlist) if isinstance(allowlist, Allowlist) else 0})

        async def post(self, request: Any) -> Any:
            if not bearer_ok(request.headers.get("Authorization"), token):
                return self.json({"error": "unauthorised"}, status=401)
            try:
                body = await request.json()
                number = normalise(str(body["number"])[:40], plan)
            except (ValueError, KeyError, TypeError):
                number = None
            if number is None or not isinstance(allowlist, Allowlist):
                return self.json({"error": 'expected {"number": a phone number}'}, status=400)
            if isinstance(store, RedisStore):
                await store.client.sadd(shared, number)
            allowlist.add(number)
            return self.json({"entries": len(allowlist)})

    @app.page("/allowlist/reload")
    class AllowlistReload(faust.web.View):
        async def post(self, request: Any) -> Any:
            if not bearer_ok(request.headers.get("Authorization"), token):
                return self.json({"error": "unauthorised"}, status=401)
            await refresh_allowlist()
            return self.json({"entries": len(allowlist) if isinstance(allowlist, Allowlist) else 0})

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body = generate_latest(callers.metrics.registry)
        return web.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        healthy = callers.healthy and subjects.healthy
        body = {
            "status": "ok" if healthy else "degraded",
            "store": "ok" if healthy else (callers.last_error or subjects.last_error),
            "last_batch_at": callers.last_batch_at,
        }
        return web.json(body, status=200 if healthy else 503)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        for tp in revoked:
            engine = subjects.engine if tp.topic == settings.derived_topic else callers.engine
            engine.forget(tp.partition)

    return app


def run_worker(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    log.info("starting: %s", describe(settings))
    create_topics(
        settings.kafka,
        {
            settings.derived_topic: settings.topic_partitions,
            settings.complaint_topic: settings.topic_partitions,
        },
        kafka_options=kafka_python_kwargs(settings),
    )
    caller_engine, subject_engine = build_engines(
        settings, sources=settings.topic_partitions, outbox=True
    )
    metrics = Metrics()
    callers = Runtime(settings, caller_engine, metrics, STAGE_CALLERS)
    subjects = Runtime(settings, subject_engine, metrics, STAGE_SUBJECTS)
    app = build_app(settings, callers, subjects)
    worker = faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
