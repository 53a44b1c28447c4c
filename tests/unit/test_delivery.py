"""Refused sends (streams.delivery): a message refused for good is dead-lettered with a reason
and counted, or counted as dropped when its dead letter is refused too; every other failure is
raised for the caller to retry. The topics are fakes recording what they were given."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import UTC
from functools import partial
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from aiokafka import errors as kafka_errors
from faust.exceptions import ProducerSendError
from faust.types import TopicT
from prometheus_client import CollectorRegistry, Counter
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.numbering import NumberingPlan
from config.settings import Settings
from detectors.alerts import Alert
from streams.agents import batch_sends
from streams.campaignwork import CampaignRecorder, CampaignTicker
from streams.context import Context
from streams.delivery import Confirmed, Outlet, Refusals, permanent
from streams.interception.feed import mirror
from streams.interception.store import InterceptStore
from streams.items import Outcome
from streams.runtime import Runtime

NUMBER = b"13800138000"


class FakeTopic:
    """Accepts or refuses each send: ``refuse_at_send`` raises from ``send`` (the client's size
    check), ``refuse_later`` fails the delivery future (the broker's answer)."""

    def __init__(
        self,
        name: str,
        refuse_at_send: BaseException | None = None,
        refuse_later: BaseException | None = None,
    ) -> None:
        self.name = name
        self.refuse_at_send = refuse_at_send
        self.refuse_later = refuse_later
        self.sent: list[dict[str, Any]] = []

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, **kwargs: Any) -> Awaitable[Any]:
        if self.refuse_at_send is not None:
            raise self.refuse_at_send
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.refuse_later is not None:
            future.set_exception(self.refuse_later)
        else:
            self.sent.append(kwargs)
            future.set_result(("meta", self.name, len(self.sent)))
        return future


def too_large() -> BaseException:
    try:
        raise ProducerSendError("Error while sending") from kafka_errors.MessageSizeTooLargeError()
    except ProducerSendError as exc:
        return exc


def outlet(topic: FakeTopic, dead: FakeTopic, max_request: int = 1000) -> tuple[Outlet, Counter]:
    counter = Counter("refused", "test", ["topic", "outcome"], registry=CollectorRegistry())
    refusals = Refusals(cast(TopicT, dead), dead.name, counter, max_request)
    return Outlet(cast(TopicT, topic), refusals), counter


def count(counter: Counter, topic: str, outcome: str) -> float:
    return float(counter.labels(topic, outcome)._value.get())


async def deliver(out: Outlet, value: bytes, partition: int | None = 3) -> Any:
    return await (await out.send(key=NUMBER, value=value, partition=partition))


@pytest.mark.parametrize(
    "error, is_permanent",
    [
        (too_large(), True),
        (kafka_errors.MessageSizeTooLargeError(), True),
        (kafka_errors.RecordTooLargeError(), True),
        (kafka_errors.InvalidTopicError(), True),
        (kafka_errors.KafkaTimeoutError(), False),  # a broker away: not retriable to aiokafka
        (kafka_errors.ProducerClosed(), False),  # a stop
        (kafka_errors.NotLeaderForPartitionError(), False),
        (kafka_errors.TopicAuthorizationFailedError(), False),  # the operator fixes the ACL
        (ProducerSendError("x"), False),
        (OSError("reset"), False),
    ],
)
def test_only_errors_about_the_message_are_permanent(
    error: BaseException, is_permanent: bool
) -> None:
    assert permanent(error) is is_permanent


@pytest.mark.parametrize("where", ["client", "broker"])
def test_a_refused_message_is_dead_lettered_cut_with_its_reason_and_counted(where: str) -> None:
    refusal = too_large()
    alerts = FakeTopic(
        "alerts",
        refuse_at_send=refusal if where == "client" else None,
        refuse_later=refusal if where == "broker" else None,
    )
    dead = FakeTopic("dead")
    out, counter = outlet(alerts, dead, max_request=1000)
    value = b'{"number":"' + NUMBER + b'","x":"' + b"y" * 3000 + b'"}'
    assert asyncio.run(deliver(out, value)) is None
    assert alerts.sent == []
    assert len(dead.sent) == 1
    letter = dead.sent[0]
    assert letter["value"] == value[:500]  # half the largest request
    assert letter["key"] is None
    assert letter["headers"] == {
        "reason": b"send_refused",
        "detail": f"MessageSizeTooLargeError: {len(value)} bytes".encode(),
        "source": b"alerts/3",
        "truncated": str(len(value)).encode(),
    }
    assert count(counter, "alerts", "dead_lettered") == 1
    assert count(counter, "alerts", "dropped") == 0


def test_a_message_that_fits_is_delivered_untouched() -> None:
    alerts, dead = FakeTopic("alerts"), FakeTopic("dead")
    out, counter = outlet(alerts, dead)
    assert asyncio.run(deliver(out, b"ok", partition=None)) == ("meta", "alerts", 1)
    assert alerts.sent == [{"key": NUMBER, "value": b"ok", "partition": None, "headers": None}]
    assert dead.sent == []
    assert count(counter, "alerts", "dead_lettered") == 0


@pytest.mark.parametrize("where", ["client", "broker"])
def test_a_retriable_failure_is_raised_for_the_caller_to_retry(where: str) -> None:
    away = kafka_errors.KafkaTimeoutError()
    alerts = FakeTopic(
        "alerts",
        refuse_at_send=away if where == "client" else None,
        refuse_later=away if where == "broker" else None,
    )
    dead = FakeTopic("dead")
    out, counter = outlet(alerts, dead)
    with pytest.raises(kafka_errors.KafkaTimeoutError):
        asyncio.run(deliver(out, b"x"))
    assert dead.sent == []
    assert count(counter, "alerts", "dead_lettered") == count(counter, "alerts", "dropped") == 0


def test_a_retriable_failure_of_the_dead_letter_is_raised_and_counts_nothing_yet() -> None:
    alerts = FakeTopic("alerts", refuse_at_send=too_large())
    dead = FakeTopic("dead", refuse_later=kafka_errors.KafkaTimeoutError())
    out, counter = outlet(alerts, dead)
    with pytest.raises(kafka_errors.KafkaTimeoutError):
        asyncio.run(deliver(out, b"x" * 2000))
    assert count(counter, "alerts", "dead_lettered") == count(counter, "alerts", "dropped") == 0


def test_refused_twice_it_is_counted_dropped_and_logged_without_its_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alerts = FakeTopic("alerts", refuse_later=kafka_errors.MessageSizeTooLargeError())
    dead = FakeTopic("dead", refuse_at_send=too_large())
    out, counter = outlet(alerts, dead)
    value = b'{"number":"' + NUMBER + b'"}' * 100
    with caplog.at_level(logging.WARNING, logger="dialwatch.worker"):
        assert asyncio.run(deliver(out, value)) is None
    assert count(counter, "alerts", "dropped") == 1
    assert count(counter, "alerts", "dead_lettered") == 0
    assert NUMBER.decode() not in caplog.text
    assert "dropped" in caplog.text and f"{len(value)}-byte" in caplog.text


def test_a_refused_dead_letter_is_sent_again_cut_with_its_own_headers() -> None:
    dead = FakeTopic("dead")
    refusing = FakeTopic("dead", refuse_at_send=too_large())
    out, counter = outlet(refusing, dead, max_request=1000)
    headers = {"reason": b"bad_json", "detail": b"d", "source": b"cdrs/1/7"}
    value = b"z" * 5000

    async def run() -> Any:
        return await (await out.send(key=None, value=value, headers=headers))

    assert asyncio.run(run()) is None
    assert len(dead.sent) == 1
    assert dead.sent[0]["value"] == value[:500]
    assert dead.sent[0]["headers"] == {
        **headers,
        "refused": b"MessageSizeTooLargeError",
        "truncated": b"5000",
    }
    assert count(counter, "dead", "dead_lettered") == 1


def test_a_dead_letter_refused_twice_is_dropped() -> None:
    dead = FakeTopic("dead", refuse_at_send=too_large())
    out, counter = outlet(dead, dead)
    assert asyncio.run(deliver(out, b"z" * 5000, partition=None)) is None
    assert count(counter, "dead", "dropped") == 1
    assert dead.sent == []


# Repeated ids (issue 17 item 3): the campaign ticker and the audit mirror record what they
# sent in Redis after the sends; a retry after that record failed must not send again.


class Broker:
    """A ``(topic, key, value) -> delivery`` send that records what reached the topic;
    ``fail`` fails the delivery of the values it names (the broker away)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail: set[bytes] = set()

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if value in self.fail:
            future.set_exception(kafka_errors.KafkaTimeoutError())
        else:
            self.sent.append((topic, key, value))
            future.set_result(len(self.sent))
        return future


def test_confirmed_sends_an_id_once_and_only_after_its_delivery_resolved() -> None:
    broker, confirmed = Broker(), Confirmed()

    async def run() -> list[Any]:
        send = partial(broker.send, "alerts", b"k", b"a")
        first = await confirmed.once("a", send)
        assert "a" not in confirmed  # not confirmed before the broker answered
        got = [await first]
        got.append(await (await confirmed.once("a", send)))  # the retry
        return got

    assert asyncio.run(run()) == [1, None]
    assert broker.sent == [("alerts", b"k", b"a")]


def test_confirmed_does_not_record_a_failed_delivery_so_its_retry_sends() -> None:
    broker, confirmed = Broker(), Confirmed()
    broker.fail.add(b"a")

    async def run() -> None:
        send = partial(broker.send, "alerts", b"k", b"a")
        with pytest.raises(kafka_errors.KafkaTimeoutError):
            await (await confirmed.once("a", send))
        assert "a" not in confirmed
        broker.fail.clear()
        await (await confirmed.once("a", send))

    asyncio.run(run())
    assert broker.sent == [("alerts", b"k", b"a")] and "a" in confirmed


def test_confirmed_keeps_the_newest_ids_within_its_bound() -> None:
    confirmed = Confirmed(limit=3)
    for key in ("a", "b", "c", "a", "d"):  # "a" confirmed again: the newest
        confirmed.add(key)
    assert len(confirmed) == 3
    assert [k in confirmed for k in ("a", "b", "c", "d")] == [True, False, True, True]
    with pytest.raises(ValueError):
        Confirmed(limit=0)


class MirrorStore:
    """The audit trail's store as ``mirror`` uses it; ``cursor_fails`` times out that many
    cursor writes (the Redis timeout after the sends)."""

    def __init__(self, rows: list[tuple[str, dict[str, str]]], cursor_fails: int) -> None:
        self.rows, self.cursor, self.cursor_fails = rows, "0-0", cursor_fails

    async def mirror_lock(self, token: str) -> bool:
        return True

    async def mirror_cursor(self) -> str:
        return self.cursor

    async def audit(self, start: str, count: int) -> list[tuple[str, dict[str, str]]]:
        after = start.lstrip("(")
        return [r for r in self.rows if r[0] > after][:count]

    async def set_mirror_cursor(self, entry_id: str) -> None:
        if self.cursor_fails:
            self.cursor_fails -= 1
            raise RedisTimeoutError("timeout")
        self.cursor = entry_id


@pytest.mark.parametrize("with_confirmed", [True, False])
def test_an_audit_mirror_retried_after_a_redis_timeout_sends_no_entry_twice(
    with_confirmed: bool,
) -> None:
    number = "+8613800138000"
    rows = [
        ("1-0", {"event": "add", "number": number, "detector": "robocall", "at_ms": "1000"}),
        ("2-0", {"event": "breaker", "number": "", "at_ms": "2000", "reason": "r"}),
        ("3-0", {"event": "release", "number": number, "at_ms": "3000"}),
    ]
    store, broker = MirrorStore(rows, cursor_fails=1), Broker()
    confirmed = Confirmed() if with_confirmed else None

    async def tick() -> int:
        return await mirror(
            cast(InterceptStore, store), broker.send, ("au", "ic", "al"), UTC, "t",
            feed=("fd", "k1"), confirmed=confirmed,
        )  # fmt: skip

    with pytest.raises(RedisTimeoutError):
        asyncio.run(tick())
    first = list(broker.sent)
    assert {t for t, _, _ in first} == {"au", "ic", "al", "fd"}
    assert asyncio.run(tick()) == 3  # the retry moves the cursor
    assert store.cursor == "3-0"
    if with_confirmed:
        assert broker.sent == first  # nothing sent twice
    else:  # without it, the retry repeats every entry: what Confirmed is for
        assert broker.sent == first + first


def test_a_campaign_alert_retried_after_the_redis_record_failed_is_not_sent_again() -> None:
    broker = Broker()
    recorder = SimpleNamespace(client=None, prefix="cs", period_ms=86_400_000)
    ticker = CampaignTicker(
        cast(CampaignRecorder, recorder), Settings(), cast(NumberingPlan, None), UTC,
        metas=cast(Any, None), sources=4, send=broker.send, intercept=cast(Any, None),
        listed_by_others=cast(Any, None), policy_version="p",
    )  # fmt: skip
    alert = {"alert_id": "a1", "number": "campaign-1", "detector": "campaign"}

    async def run(sent: list[str]) -> None:
        await (await ticker._alert(alert, sent))

    first: list[str] = []
    asyncio.run(run(first))  # sent; then the Redis pipeline recording "a1" timed out
    again: list[str] = []
    asyncio.run(run(again))  # the next run: Redis does not know a1, the broker confirmed it
    assert [t for t, _, _ in broker.sent] == [Settings().alert_topic]
    assert first == again == ["a1"]  # still recorded in Redis by the retry's pipeline


class FlakyTopic(FakeTopic):
    """Fails the delivery of the values in ``fail_once`` the first time each is sent."""

    def __init__(self, name: str, fail_once: set[bytes]) -> None:
        super().__init__(name)
        self.fail_once = fail_once

    async def send(self, **kwargs: Any) -> Awaitable[Any]:
        if kwargs["value"] in self.fail_once:
            self.fail_once.discard(kwargs["value"])
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(kafka_errors.KafkaTimeoutError())
            return future
        return await super().send(**kwargs)


def intercept_alert(n: int) -> Alert:
    return Alert(
        alert_id=f"a{n}", episode_id=f"e{n}", number=f"1380013800{n}", number_class="mobile",
        subject="number", detector="bulk_dialling", state="raised", severity="high",
        action="intercept", category="telemarketing", event_ms=1_000, detected_at_ms=2_000,
        evidence={"calls": 3}, reasons=("r",), policy_version="p",
    )  # fmt: skip


@pytest.mark.parametrize("with_confirmed", [True, False])
def test_a_batch_retried_after_one_send_timed_out_sends_no_alert_twice(
    with_confirmed: bool,
) -> None:
    """A batch of three alerts whose second delivery times out: the retry of the lot
    (``Runtime.send_confirmed``) sends only the unconfirmed alert, and its feed record."""
    alerts = [intercept_alert(n) for n in range(3)]
    second = orjson.dumps(alerts[1].to_dict(UTC))
    topic, feed, dead = FlakyTopic("al", {second}), FakeTopic("fd"), FakeTopic("dl")
    counter = Counter("refused", "test", ["topic", "outcome"], registry=CollectorRegistry())
    refusals = Refusals(cast(TopicT, dead), dead.name, counter, 1000)
    ctx = SimpleNamespace(
        out=SimpleNamespace(
            alerts=Outlet(cast(TopicT, topic), refusals),
            feed=Outlet(cast(TopicT, feed), refusals),
            dead=Outlet(cast(TopicT, dead), refusals),
        ),
        tz=UTC, feed_key_id="k1", sent=Confirmed() if with_confirmed else _Forgetful(),
    )  # fmt: skip
    runtime = Runtime(Settings(), cast(Any, None), cast(Any, None), "callers")
    sends = partial(batch_sends, cast(Context, ctx), "cdrs", 0, Outcome(alerts=alerts), {})
    asyncio.run(runtime.send_confirmed(0, sends))
    ids = [orjson.loads(m["value"])["alert_id"] for m in topic.sent]
    if with_confirmed:
        assert sorted(ids) == ["a0", "a1", "a2"]
        assert len(feed.sent) == 3  # every alert intercepts: one feed record each, once
    else:  # without it, the retry repeats the two that were confirmed
        assert sorted(ids) == ["a0", "a0", "a1", "a2", "a2"]


class _Forgetful(Confirmed):
    """Remembers nothing: the batch sends as they were before ``Context.sent``."""

    def add(self, key: str) -> None:
        pass
