"""The worker's per-stage runtime: batches applied with retry in place, outbox recovery and
restore of what the store lost (README "Delivery").

A store or broker failure is retried in place with backoff: an exception never escapes with an
unapplied batch, because faust-streaming 0.15 acknowledges what an abandoned ``take``
generator held. The runtime knows the broker only through the calls in ``Links`` and the
``sends`` it is given; ``streams.agents`` drives it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import orjson
from redis.exceptions import RedisError

from config.settings import Settings
from streams.engine import Engine
from streams.interception.step import Interception
from streams.items import Item, Outcome
from streams.metrics import STAGE_CALLERS, Metrics
from streams.state.base import PartitionMeta, StaleOffset

log = logging.getLogger("dialwatch.worker")
T = TypeVar("T")
FIRST_DELAY_S = 0.05
# What the driver does with a batch's outcome after detection and before its state write (the
# worker forwards stage 1's admitted CDRs to stage 2): a crash in between replays it.
Forward = Callable[[Outcome], Awaitable[None]]


@dataclass(frozen=True)
class Links:
    """The broker calls a stage needs to recover a partition (``Runtime.handle``)."""

    published: Callable[[set[str]], Awaitable[set[str]]]  # which ids the alert topic holds
    send_raw: Callable[[list[bytes]], Awaitable[list[Any]]]  # send alert JSON as stored
    # (partition, start, end): the stage's decoded items for input offsets [start, end), at
    # most ``kafka_reads.REREAD_CHUNK`` messages from ``start`` on, [] when the log has none
    reread: Callable[[int, int, int], Awaitable[list[Item]]]


async def acquire_within(lock: asyncio.Lock, wait_s: float) -> bool:
    """Acquire ``lock`` within ``wait_s``; False if not. Unlike ``asyncio.wait_for`` on
    Python 3.11, never leaves the lock held when the time runs out just as it was acquired."""
    attempt = asyncio.ensure_future(lock.acquire())
    try:
        done, _ = await asyncio.wait({attempt}, timeout=wait_s)
    except asyncio.CancelledError:
        attempt.cancel()
        if attempt.done() and not attempt.cancelled():
            lock.release()
        raise
    if done:
        return True
    attempt.cancel()
    try:
        await attempt
    except asyncio.CancelledError:
        return False
    return True  # acquired before the cancel took


class Runtime:
    """What the agent needs between batches: the engine, metrics, health."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        metrics: Metrics,
        stage: str = STAGE_CALLERS,
        rekeyed: bool = False,
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
        # The interception step (streams.interception), fed every alert the outbox holds.
        self.interception: Interception | None = None
        # Sends the regulator feed's records of outbox alerts (streams.agents.send_feed): on
        # recovery every pending alert's, since its feed record may be what was lost.
        self.feed: Callable[[list[bytes]], Awaitable[list[Any]]] | None = None
        self._verified: dict[int, int | None] = {}  # partition -> the load ``handle`` checked
        # Stage 1's second input, the repartition topic (``rekeyed_input``): same engine, same
        # state and locks, its own stored offset.
        self.rekeyed = rekeyed

    def rekeyed_input(self) -> Runtime:
        """A runtime for the repartition topic's partitions over this one's engine: it
        serialises with this one on each partition and fences on its own stored offset."""
        other = Runtime(self.settings, self.engine, self.metrics, self.stage, rekeyed=True)
        other._locks = self._locks
        other.interception = self.interception
        other.feed = self.feed
        return other

    def applied(self, meta: PartitionMeta) -> int:
        """The stored offset of this runtime's input."""
        return meta.rekeyed if self.rekeyed else meta.offset

    def lock(self, partition: int) -> asyncio.Lock:
        """Serialises the agent's batches and the store audit on one partition."""
        return self._locks.setdefault(partition, asyncio.Lock())

    async def revoke(self, partition: int, wait_s: float) -> None:
        """Forget a partition taken away by a rebalance, after its batch in flight (state
        write and alert sends) finishes, for at most ``wait_s``: the next owner then finds
        those alerts on the topic rather than publishing them again from the outbox."""
        lock = self.lock(partition)
        if await acquire_within(lock, wait_s):
            lock.release()
        else:
            log.warning(
                "partition %d (%s): revoked while a batch is still retrying", partition, self.stage
            )
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
        if self.feed is not None:
            await self.send_confirmed(partition, partial(self.feed, list(pending.values())))
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
        forward: Forward | None = None,
    ) -> Outcome:
        """Apply one partition's batch, whose first message is ``first_offset``.

        Whenever this process (re)loads the partition (first meeting, or after a store error or
        a fenced write that found another offset), it first publishes the outbox's pending
        alerts and re-applies from Kafka whatever the store lost (``restore``): the offset
        stored with the state is the truth, not the consumer's position. The caller holds
        ``lock(partition)`` across this and the batch's ``publish``.
        """
        while True:
            # Checked once per load of the partition's meta, by each input of the engine: the
            # other input (stage 1's two) may have been the one that loaded it.
            known = self.engine.knows(partition)
            if not known or self._verified.get(partition) != self.engine.loaded(partition):
                if not known:
                    await self.recover(partition, links.published, links.send_raw)
                if not await self.restore(partition, first_offset, links):
                    continue
                self._verified[partition] = self.engine.loaded(partition)
            outcome = await self.attempt(partition, items, forward=forward)
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
                    stored = self.applied(await self.engine.store.load_meta(partition))
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
        start = self.applied(meta) + 1
        if start >= first_offset:
            return True
        log.warning(
            "partition %d (%s): the store is behind the input (stored offset %d, batch starts "
            "at %d); re-reading the gap from Kafka",
            partition,
            self.stage,
            start - 1,
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
        forward: Forward | None = None,
    ) -> Outcome | None:
        """Try the batch once. None when the partition was dropped from the cache (the store
        failed, or its offset moved): the caller reloads it before trying again. ``forward``
        runs between detection and the state write, only when there is something to write."""
        started = time.perf_counter()
        try:
            prepared = await self.engine.prepare(partition, items, self.rekeyed)
            if forward is not None and prepared.changes is not None:
                await forward(prepared.outcome)
            outcome = await self.engine.commit(prepared)
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
            self.metrics.record(outcome, time.perf_counter() - started, self.stage, partition)
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
