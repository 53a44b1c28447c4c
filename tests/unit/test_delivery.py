"""Refused sends (streams.delivery): a message refused for good is dead-lettered with a reason
and counted, or counted as dropped when its dead letter is refused too; every other failure is
raised for the caller to retry. The topics are fakes recording what they were given."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, cast

import pytest
from aiokafka import errors as kafka_errors
from faust.exceptions import ProducerSendError
from faust.types import TopicT
from prometheus_client import CollectorRegistry, Counter

from streams.delivery import Outlet, Refusals, permanent

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
