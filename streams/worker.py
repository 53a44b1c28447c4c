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
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial, wraps
from typing import Any, TypeVar

import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from config.numbering import normalise
from config.settings import Settings
from streams.allowlist import Allowlist, shared_key
from streams.cdr import Reject, decode_message
from streams.complaints import Complaint, decode_complaints, record
from streams.engine import Engine, Item, Outcome
from streams.factory import build_engines
from streams.interception.feed import mirror as mirror_audit
from streams.interception.step import Interception, build_store
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
from streams.state.base import StaleOffset
from streams.state.redis import RedisStore
from streams.topics import create_topics, partition_for

log = logging.getLogger("dialwatch.worker")
T = TypeVar("T")
FIRST_DELAY_S = 0.05
REREAD_CHUNK = 20_000  # messages per re-read from Kafka when the store lost writes
REREAD_TIMEOUT_S = 15.0
BeforeWrite = Callable[[Outcome], Awaitable[None]]
BROKER_PROBE_S = 5.0
BROKER_PROBE_TIMEOUT_S = 3.0
ADMISSION_REASONS = frozenset({"future", "too_late"})  # decided by the engine, not the parser


@dataclass(frozen=True)
class Links:
    """The broker calls a stage needs to recover a partition (``Runtime.handle``)."""

    published: Callable[[set[str]], Awaitable[set[str]]]  # which ids the alert topic holds
    send_raw: Callable[[list[bytes]], Awaitable[list[Any]]]  # send alert JSON as stored
    # (partition, start, end): the stage's decoded items for input offsets [start, end), at
    # most REREAD_CHUNK messages from ``start`` on, [] when the log holds none of them
    reread: Callable[[int, int, int], Awaitable[list[Item]]]


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
        self._delay = FIRST_DELAY_S  # the next backoff after a store error, reset on success
        self.handled: dict[int, int] = {}  # partition -> last input offset this process handled
        self._locks: dict[int, asyncio.Lock] = {}
        # The interception step (streams.interception), fed every alert the broker confirmed.
        self.interception: Interception | None = None

    def lock(self, partition: int) -> asyncio.Lock:
        """Serialises the agent's batches and the store audit on one partition."""
        return self._locks.setdefault(partition, asyncio.Lock())

    async def revoke(self, partition: int, wait_s: float) -> None:
        """Forget a partition taken away by a rebalance, after its batch in flight (state
        write and alert sends) finishes, for at most ``wait_s``: the next owner then finds
        those alerts on the topic rather than publishing them again from the outbox."""
        lock = self.lock(partition)
        try:
            await asyncio.wait_for(lock.acquire(), wait_s)
        except TimeoutError:
            log.warning(
                "partition %d (%s): revoked while a batch is still retrying", partition, self.stage
            )
        else:
            lock.release()
        self.engine.forget(partition)
        self.handled.pop(partition, None)

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
        await self.intercept([orjson.loads(alert) for alert in pending.values()])
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

    async def handle(
        self,
        partition: int,
        first_offset: int,
        items: Sequence[Item],
        links: Links,
        before_write: BeforeWrite | None = None,
    ) -> Outcome:
        """Apply one partition's batch, whose first message is ``first_offset``.

        Whenever this process (re)loads the partition (first meeting, or after a store error or
        a fenced write that found another offset), it first publishes the outbox's pending
        alerts and re-applies from Kafka whatever the store lost (``restore``): the offset
        stored with the state is the truth, not the consumer's position. The caller holds
        ``lock(partition)`` across this and the batch's ``publish``.
        """
        while True:
            if not self.engine.knows(partition):
                await self.recover(partition, links.published, links.send_raw)
                if not await self.restore(partition, first_offset, links):
                    continue
            outcome = await self.attempt(partition, items, before_write=before_write)
            if outcome is not None:
                if items:
                    self.handled[partition] = max(offset for offset, _ in items)
                return outcome

    async def audit(self, links: Links) -> int:
        """Re-apply what the store lost on partitions with no new input to reveal it: for each
        partition this process handled, compare the stored offset with the last one handled.
        Returns how many partitions were behind. A store error skips the round."""
        behind = 0
        for partition in list(self.handled):
            async with self.lock(partition):
                last = self.handled.get(partition)
                if last is None:  # revoked meanwhile
                    continue
                try:
                    stored = (await self.engine.store.load_meta(partition)).offset
                except (RedisError, OSError) as exc:
                    log.warning("store audit skipped (%s)", type(exc).__name__)
                    return behind
                if stored >= last:
                    continue
                behind += 1
                while True:
                    self.engine.forget(partition)
                    await self.recover(partition, links.published, links.send_raw)
                    if await self.restore(partition, last + 1, links):
                        break
        return behind

    async def restore(self, partition: int, first_offset: int, links: Links) -> bool:
        """Re-read and apply the messages between the stored offset and ``first_offset``.

        They were applied once (the consumer only moves past what was written and published),
        but the store no longer has them: a Redis that lost its last writes (kill -9 under
        ``appendfsync everysec``, a failover to a lagging replica, a restore from a snapshot).
        Their dead letters and derived observations went out the first time; alerts they raise
        again go through the outbox and are published only if the alert topic lacks them.
        Returns False when the partition had to be reloaded meanwhile.
        """
        meta = await self.retry("offset read", partial(self.engine.meta, partition))
        start = meta.offset + 1
        if start >= first_offset:
            return True
        log.warning(
            "partition %d (%s): the store is behind the input (stored offset %d, batch starts "
            "at %d); re-reading the gap from Kafka",
            partition,
            self.stage,
            meta.offset,
            first_offset,
        )
        restored = 0
        while start < first_offset:
            chunk = await self.retry(
                "re-read",
                partial(links.reread, partition, start, first_offset),
                (Exception,),
                store=False,
            )
            if not chunk:  # a hole in the log: compacted, or transaction markers
                break
            if await self.attempt(partition, chunk, count=False) is None:
                return False
            offsets = {offset for offset, _ in chunk}
            restored += len(offsets)
            self.metrics.restored.labels(self.stage).inc(len(offsets))
            start = max(offsets) + 1
        log.warning("partition %d (%s): %d messages re-applied", partition, self.stage, restored)
        await self.recover(partition, links.published, links.send_raw)
        return True

    async def process(self, partition: int, items: Sequence[Item]) -> Outcome:
        """Apply one partition's batch, retrying in place until the store takes it (no outbox
        recovery and no restore: ``handle`` adds those)."""
        while True:
            outcome = await self.attempt(partition, items)
            if outcome is not None:
                return outcome

    async def attempt(
        self,
        partition: int,
        items: Sequence[Item],
        count: bool = True,
        before_write: BeforeWrite | None = None,
    ) -> Outcome | None:
        """Try the batch once. None when the partition was dropped from the cache (the store
        failed, or its offset moved): the caller reloads it before trying again."""
        started = time.perf_counter()
        try:
            outcome = await self.engine.process(partition, items, before_write)
        except StaleOffset as exc:
            # The stored offset moved (a replay after a restart, another owner, or a store that
            # lost writes): reload it; records at or below it are then skipped as applied.
            log.warning("partition %d: %s; reloading its offset", partition, exc)
            self.engine.forget(partition)
            return None
        except (RedisError, OSError) as exc:
            self.healthy, self.last_error = False, type(exc).__name__
            self.metrics.store_errors.inc()
            self.engine.forget(partition)
            log.warning(
                "store unavailable (%s); retrying in %.2f s", type(exc).__name__, self._delay
            )
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, self.settings.retry_max_backoff_s)
            return None
        except Exception as exc:  # a bug: stall visibly rather than drop the batch
            log.exception("partition %d: batch failed (%s); retrying", partition, exc)
            self.healthy, self.last_error = False, type(exc).__name__
            self.engine.forget(partition)
            await asyncio.sleep(self.settings.retry_max_backoff_s)
            return None
        self.healthy, self.last_error, self._delay = True, None, FIRST_DELAY_S
        self.last_batch_at = time.time()
        if count:
            self.metrics.record(outcome, time.perf_counter() - started, self.stage)
        return outcome

    async def retry(
        self,
        what: str,
        call: Callable[[], Awaitable[T]],
        errors: tuple[type[BaseException], ...] = (RedisError, OSError, RuntimeError),
        store: bool = True,
    ) -> T:
        """Run a call until it succeeds, backing off while its service is unavailable.
        ``store``: a failure counts in ``dialwatch_store_errors_total`` (not for the broker)."""
        delay = FIRST_DELAY_S
        while True:
            try:
                result = await call()
            except errors as exc:
                self.healthy, self.last_error = False, type(exc).__name__
                if store:
                    self.metrics.store_errors.inc()
                log.warning("%s failed (%s); retrying in %.2f s", what, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_backoff_s)
                continue
            self.healthy, self.last_error = True, None
            return result

    async def publish(
        self, partition: int, outcome: Outcome, sends: Callable[[], Awaitable[list[Any]]]
    ) -> None:
        """Send alerts and dead letters and wait for the broker, retrying until it confirms.

        The state is already written, so a failed send is repeated rather than skipped: a
        duplicate alert (same alert_id) is better than a lost one.
        """
        if not outcome.alerts and not outcome.rejects:
            return
        if outcome.alerts:
            # Before the send: the broker's confirmation takes about a second on Tansu, and an
            # entry must follow its alert within one. The alert is in the outbox already, so a
            # crash here still publishes it on recovery (which hands it over again: a no-op).
            await self.intercept([alert.to_dict(self.engine.tz) for alert in outcome.alerts])
        await self.send_confirmed(partition, sends)
        for alert in outcome.alerts:
            self.metrics.published(alert)
        if self.engine.outbox and outcome.alerts:
            ids = [a.alert_id for a in outcome.alerts]
            await self.retry(
                "outbox confirm", partial(self.engine.store.confirm_alerts, partition, ids)
            )

    async def intercept(self, alerts: list[dict[str, Any]]) -> None:
        """Hand alerts written to the outbox to the interception step (idempotent by
        alert_id), before the outbox forgets them: a crash in between hands them over again on
        recovery, with the alerts themselves."""
        if self.interception is not None and alerts:
            await self.retry("interception", partial(self.interception.apply, alerts))

    async def send_confirmed(
        self, partition: int, sends: Callable[[], Awaitable[list[Any]]]
    ) -> None:
        """Run ``sends`` and wait for every delivery, retrying the lot until all are confirmed."""
        delay = FIRST_DELAY_S
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


# Faust's producer sends requests of at most 1,000,000 bytes; a dead letter must fit in one with
# its headers, or its send would fail for ever and stall the partition.
DEAD_LETTER_MAX_BYTES = 900_000


def dead_letter(value: bytes, reject: Reject, source: str) -> tuple[bytes, dict[str, bytes]]:
    """The dead-letter message of a rejected record: the original bytes and why, with
    ``source`` (topic/partition/offset) pointing at the original. Bytes beyond
    DEAD_LETTER_MAX_BYTES are cut, and ``truncated`` gives the original length."""
    headers = {
        "reason": reject.reason.encode(),
        "detail": reject.detail.encode(),
        "source": source.encode(),
    }
    if len(value) > DEAD_LETTER_MAX_BYTES:
        headers["truncated"] = str(len(value)).encode()
        value = value[:DEAD_LETTER_MAX_BYTES]
    return value, headers


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
        events: list[Any],
    ) -> tuple[dict[int, list[tuple[int, bytes | None]]], dict[tuple[int, int], bytes]]:
        """Per partition its ``(offset, value)`` messages, and the raw values by offset."""
        messages: dict[int, list[tuple[int, bytes | None]]] = {}
        raw: dict[tuple[int, int], bytes] = {}
        for event in events:
            message = event.message
            messages.setdefault(message.partition, []).append((message.offset, message.value))
            raw[(message.partition, message.offset)] = message.value or b""
        return messages, raw

    decode_cdrs = partial(decode_message, plan=plan)

    def links(topic: str, decode: Callable[[bytes | None], list[Any]]) -> Links:
        async def reread(partition: int, start: int, end: int) -> list[Item]:
            loop = asyncio.get_running_loop()
            read = partial(read_range, settings, topic, partition, start, end, REREAD_CHUNK)
            return items_of(await loop.run_in_executor(None, read), decode)

        return Links(published_ids, _send_raw, reread)

    @app.agent(cdrs, name="by_caller")
    async def by_caller(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
            by_partition, raw = split(events)
            for partition, messages in by_partition.items():
                for items in chunks(messages, decode_cdrs, settings.chunk_records):
                    async with callers.lock(partition):
                        outcome = await callers.handle(
                            partition, items[0][0], items, caller_links, forward(partition)
                        )
                        sends = partial(_sends, settings.cdr_topic, partition, outcome, raw)
                        await callers.publish(partition, outcome, sends)

    @app.agent(derived, name="by_subject")
    async def by_subject(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
            by_partition, raw = split(events)
            for partition, messages in by_partition.items():
                for items in chunks(messages, decode_derived, settings.chunk_records):
                    async with subjects.lock(partition):
                        outcome = await subjects.handle(
                            partition, items[0][0], items, subject_links, stage_victims(items)
                        )
                        sends = partial(
                            _sends, settings.derived_topic, partition, outcome, raw, internal=True
                        )
                        await subjects.publish(partition, outcome, sends)

    # Interception (streams.interception): both stages hand it their published alerts.
    interception = Interception(build_store(settings), settings, plan)
    callers.interception = subjects.interception = interception
    mirrored = {
        name: app.topic(name, key_type=bytes, value_type=bytes)
        for name in (settings.audit_topic, settings.interception_topic)
    }
    mirrored[settings.alert_topic] = alerts

    def stage_victims(items: Sequence[Item]) -> BeforeWrite:
        return interception.stage_for(items)

    async def _send_mirrored(topic: str, key: bytes, value: bytes) -> Any:
        return await mirrored[topic].send(key=key, value=value)

    mirror_token = f"{settings.app_id}-{id(app)}-{time.time()}"

    @app.timer(settings.intercept_mirror_s)  # type: ignore[untyped-decorator]
    async def interception_mirror() -> None:
        try:
            await mirror_audit(
                interception.store,
                _send_mirrored,
                (settings.audit_topic, settings.interception_topic, settings.alert_topic),
                tz,
                mirror_token,
                callers.engine.policy.version,
            )
        except (RedisError, OSError) as exc:  # the next tick tries again from the cursor
            log.warning("audit mirror failed (%s); retrying", type(exc).__name__)

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
            source = f"{message.topic}/{message.partition}/{message.offset}"
            value, headers = dead_letter(message.value or b"", reject, source)
            pending.append(await dead.send(key=None, value=value, headers=headers))
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

    def forward(partition: int) -> BeforeWrite:
        """Stage 1's admitted CDRs go to stage 2 before the state write: a crash in between
        replays them, and stage 2 drops the repeats by cdr_id."""

        async def send(outcome: Outcome) -> None:
            observed = derived_obs(outcome.admitted, trunks, partition, plan)
            if observed:
                messages = derived_messages(observed, partition, partitions)
                await callers.send_confirmed(partition, partial(_forward, messages))

        return send

    caller_links = links(settings.cdr_topic, decode_cdrs)
    subject_links = links(settings.derived_topic, decode_derived)

    async def _forward(messages: list[tuple[int, bytes]]) -> list[Any]:
        return [await derived.send(value=value, partition=target) for target, value in messages]

    async def _sends(
        source: str,
        partition: int,
        outcome: Outcome,
        raw: dict[tuple[int, int], bytes],
        internal: bool = False,
    ) -> list[Any]:
        """The alerts and dead letters of a batch. ``internal`` (the derived topic): a stage-2
        admission reject is only counted; its record's dead letter, if any, came from stage 1,
        and the derived message holds a whole batch of other calls."""
        pending = [
            await alerts.send(key=alert.number.encode(), value=orjson.dumps(alert.to_dict(tz)))
            for alert in outcome.alerts
        ]
        for offset, reject in outcome.rejects:
            if internal and reject.reason in ADMISSION_REASONS:
                continue
            value, headers = dead_letter(
                raw[(partition, offset)], reject, f"{source}/{partition}/{offset}"
            )
            pending.append(await dead.send(key=None, value=value, headers=headers))
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

    @app.timer(settings.store_audit_s)  # type: ignore[untyped-decorator]
    async def store_audit() -> None:
        for runtime, stage_links in ((callers, caller_links), (subjects, subject_links)):
            await runtime.audit(stage_links)

    broker = {"ok": True}

    @app.timer(BROKER_PROBE_S)  # type: ignore[untyped-decorator]
    async def broker_probe() -> None:
        """A metadata round trip on the producer's connection: /health turns degraded while
        the broker does not answer, even when there is nothing to send."""
        try:
            producer: Any = app.producer  # faust's aiokafka driver; its client is aiokafka's
            client = producer._ensure_producer().client
            await asyncio.wait_for(client.fetch_all_metadata(), BROKER_PROBE_TIMEOUT_S)
        except Exception as exc:  # any failure means "not reachable now"
            if broker["ok"]:
                log.warning("broker unreachable (%s)", type(exc).__name__)
            broker["ok"] = False
            return
        if not broker["ok"]:
            log.info("broker reachable again")
        broker["ok"] = True

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
            await interception.release(number, "api", "allowlisted", "allowlist")
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
        stages_ok = callers.healthy and subjects.healthy
        healthy = stages_ok and broker["ok"]
        body = {
            "status": "ok" if healthy else "degraded",
            "store": "ok" if stages_ok else (callers.last_error or subjects.last_error),
            "broker": "ok" if broker["ok"] else "unreachable",
            "last_batch_at": callers.last_batch_at,
        }
        return web.json(body, status=200 if healthy else 503)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        for tp in revoked:
            runtime = subjects if tp.topic == settings.derived_topic else callers
            await runtime.revoke(tp.partition, settings.rebalance_timeout_s / 2)

    return app


def set_fetch_max_wait(ms: int) -> None:
    """Make every aiokafka consumer this process creates (Faust's) ask for ``ms`` of fetch wait.

    faust-streaming 0.15 passes a fixed ``fetch_max_wait_ms=1500`` with no setting for it
    (``faust/transport/drivers/aiokafka.py``), so the constructor's argument is replaced here.
    """
    import aiokafka

    original = aiokafka.AIOKafkaConsumer.__init__
    if getattr(original, "dialwatch_fetch_wait", None) == ms:
        return

    @wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["fetch_max_wait_ms"] = ms
        original(self, *args, **kwargs)

    init.dialwatch_fetch_wait = ms  # type: ignore[attr-defined]
    aiokafka.AIOKafkaConsumer.__init__ = init


def run_worker(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    log.info("starting: %s", describe(settings))
    if settings.fetch_max_wait_ms is not None:
        set_fetch_max_wait(settings.fetch_max_wait_ms)
    create_topics(
        settings.kafka,
        {
            settings.derived_topic: settings.topic_partitions,
            settings.complaint_topic: settings.topic_partitions,
            settings.audit_topic: settings.topic_partitions,
            settings.interception_topic: settings.topic_partitions,
        },
        kafka_options=kafka_python_kwargs(settings),
        replication=settings.topic_replication,
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
