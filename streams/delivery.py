"""Sends the broker or the client refuses for good: dead-lettered, counted, never retried
(docs/recovery.md "Refused sends").

Every message the worker writes goes through an ``Outlet``. A send that fails with an error
about the message itself (too large, an invalid topic name, a bad timestamp) would fail on
every retry and stall its partition, so the outlet settles it instead: the message, cut to fit,
goes to the dead-letter topic with reason ``send_refused`` (a refused dead letter is sent again,
cut, with its own headers); if even that is refused it is counted and logged without its
content. Any other failure (timeouts, a broker away, a stopped
producer, authorisation) is raised as before, and the caller retries the batch.

``Confirmed`` keeps the ids whose send the broker confirmed, for the senders that record what
they sent in Redis only after the sends (the campaign ticker, the audit mirror): when that
record fails (a Redis timeout), their retry would publish the same ids again; with it, it skips
them (docs/recovery.md "Idempotent output").
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import errors as kafka_errors
from faust.types import TopicT
from prometheus_client import Counter

from streams.deadletter import DEAD_LETTER_MAX_BYTES

log = logging.getLogger("dialwatch.worker")
REFUSED_REASON = "send_refused"
CONFIRMED_MAX = 100_000  # ids a Confirmed remembers (a few MB): far more than one round sends
# Errors about the message, not the connection: the same message fails again however often it
# is sent. aiokafka's ``retriable`` flag is not used: KafkaTimeoutError (a broker away) and
# ProducerClosed (a stop) are not retriable by it, and dead-lettering them would drain whole
# batches of alerts away from the alert topic during an outage.
PERMANENT: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,  # the client's max_request_size or the broker's limit
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidTopicError,
    kafka_errors.InvalidTimestampError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.CorruptRecordException,
)


def permanent(exc: BaseException) -> bool:
    """Whether a send failure is about the message itself. Faust wraps the client's errors
    raised at send time in ``ProducerSendError``; the cause is what counts."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 4:
        if isinstance(current, PERMANENT):
            return True
        current, seen = current.__cause__, seen + 1
    return False


def reason_of(exc: BaseException) -> str:
    """The refusing error's class name (never its text, which may quote the message)."""
    cause = exc
    while cause.__cause__ is not None and not isinstance(cause, PERMANENT):
        cause = cause.__cause__
    return type(cause).__name__


@dataclass
class Refusals:
    """Where refused messages go, and their count: ``dialwatch_send_refused_total{topic,
    outcome}``, outcome ``dead_lettered`` or ``dropped``."""

    dead: TopicT
    dead_name: str
    counter: Counter
    max_request_bytes: int

    @property
    def excerpt_bytes(self) -> int:
        """How much of a refused message its dead letter keeps: half a request leaves room for
        the headers and the record's framing."""
        return min(DEAD_LETTER_MAX_BYTES, self.max_request_bytes // 2)

    async def settle(
        self,
        topic: str,
        partition: int | None,
        value: bytes,
        headers: Mapping[str, bytes] | None,
        exc: BaseException,
    ) -> None:
        """Dead-letter a refused message: a dead letter itself is sent again cut, its headers
        kept, any other message as a ``send_refused`` dead letter. A retriable failure of that
        send is raised (the batch is retried, and the message refused and settled again)."""
        reason = reason_of(exc)
        limit = self.excerpt_bytes
        if topic == self.dead_name:
            letter = {**(headers or {}), "refused": reason.encode()}
        else:
            letter = {
                "reason": REFUSED_REASON.encode(),
                "detail": f"{reason}: {len(value)} bytes".encode(),
                "source": f"{topic}/{'' if partition is None else partition}".encode(),
            }
        if len(value) > limit:
            letter["truncated"] = str(len(value)).encode()
        try:
            pending = await self.dead.send(key=None, value=value[:limit], headers=letter)
            await pending
        except Exception as dead_exc:
            if not permanent(dead_exc):
                raise
            self.counter.labels(topic, "dropped").inc()
            log.error(
                "a %d-byte message to %s was refused (%s), and its dead letter too (%s); dropped",
                len(value),
                topic,
                reason,
                reason_of(dead_exc),
            )
            return
        self.counter.labels(topic, "dead_lettered").inc()
        log.warning(
            "a %d-byte message to %s was refused (%s); dead-lettered", len(value), topic, reason
        )


class Outlet:
    """A topic the worker writes to, whose refused messages are settled (``Refusals``)."""

    def __init__(self, topic: TopicT, refusals: Refusals) -> None:
        self.topic = topic
        self.name = topic.get_topic_name()
        self.refusals = refusals

    async def send(
        self,
        *,
        value: bytes,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Mapping[str, bytes] | None = None,
    ) -> Awaitable[Any]:
        """Send like ``TopicT.send``; the returned delivery resolves once the broker has the
        message or, refused, its dead letter (or once it is counted as dropped)."""
        try:
            pending = await self.topic.send(
                key=key, value=value, partition=partition, headers=headers
            )
        except Exception as exc:  # the client refused it before sending (its size)
            if not permanent(exc):
                raise
            return asyncio.ensure_future(
                self.refusals.settle(self.name, partition, value, headers, exc)
            )
        return asyncio.ensure_future(self._delivered(pending, partition, value, headers))

    async def _delivered(
        self,
        pending: Awaitable[Any],
        partition: int | None,
        value: bytes,
        headers: Mapping[str, bytes] | None,
    ) -> Any:
        try:
            return await pending
        except Exception as exc:  # the broker refused it
            if not permanent(exc):
                raise
            await self.refusals.settle(self.name, partition, value, headers, exc)
            return None


@dataclass(frozen=True)
class Outlets:
    """The worker's output topics (``streams.topics.WorkerTopics``) behind ``Outlet``s."""

    derived: Outlet
    rekeyed: Outlet
    alerts: Outlet
    dead: Outlet
    feed: Outlet


class Confirmed:
    """The newest ``limit`` ids whose send the broker confirmed, in this process's memory.

    ``once(id, send)`` sends unless ``id`` was confirmed before, and records it once the
    delivery resolves (a failed delivery records nothing, so the retry sends it). A sender that
    records its progress in Redis after the sends calls it for each id: a retry after that
    record failed (a Redis timeout) does not publish an id twice. It does not help a retry by
    another process (the state is not shared) nor a send whose confirmation was lost.
    """

    def __init__(self, limit: int = CONFIRMED_MAX) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, key: str) -> None:
        self._ids[key] = None
        self._ids.move_to_end(key)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    async def once(self, key: str, send: Callable[[], Awaitable[Awaitable[Any]]]) -> Awaitable[Any]:
        """``await send()`` unless ``key`` is confirmed; a delivery that records ``key`` once it
        resolves (or one already resolved, to None, when nothing was sent)."""
        if key in self._ids:
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        pending = await send()
        return asyncio.ensure_future(self._confirm(key, pending))

    async def _confirm(self, key: str, pending: Awaitable[Any]) -> Any:
        result = await pending
        self.add(key)
        return result
