"""The worker's retry-in-place: a failing store or broker never drops a batch."""

from __future__ import annotations

from typing import Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError

from config.policy import load_policy
from config.settings import Settings
from streams.engine import Engine
from streams.metrics import Metrics
from streams.state.base import Changes
from streams.state.memory import MemoryStore
from streams.worker import Runtime
from tests.factories import T0, dial

NOW_MS = (T0 + 30 * 86_400) * 1000


class FlakyStore(MemoryStore):
    """An in-process store whose first ``failures`` writes fail like a lost Redis connection."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def write(self, partition: int, expected_offset: int, changes: Changes) -> None:
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("connection refused")
        await super().write(partition, expected_offset, changes)


def runtime(store: MemoryStore) -> Runtime:
    settings = Settings(retry_max_backoff_s=0.01)
    engine = Engine(settings, load_policy(settings.policy_file), store, clock_ms=lambda: NOW_MS)
    return Runtime(settings, engine, Metrics())


async def test_store_failures_are_retried_in_place_and_counted_once() -> None:
    rt = runtime(FlakyStore(failures=3))
    items = list(enumerate(dial("17012345678", 260, 2000)))
    outcome = await rt.process(0, items)
    assert outcome.accepted == 260
    # 260 unanswered calls in 33 minutes to 139... numbers in sequence: every caller detector
    # but one-ring (international callers only) fires, once each.
    assert sorted(a.detector for a in outcome.alerts) == [
        "bulk_dialling",
        "quota_dialling",
        "robocall",
        "sequential_dialling",
    ]
    assert {a.action for a in outcome.alerts} == {"intercept"}
    assert rt.metrics.registry.get_sample_value("dialwatch_store_errors_total") == 3
    assert rt.healthy
    again = await rt.process(0, items)  # Kafka redelivers the same batch
    assert again.replayed == 260 and again.accepted == 0 and again.alerts == []


async def test_publish_retries_until_the_broker_confirms() -> None:
    rt = runtime(MemoryStore())
    outcome = await rt.process(0, list(enumerate(dial("17012345678", 260, 2000))))
    attempts: list[int] = []

    async def sends() -> list[Any]:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("broker unreachable")
        return []

    await rt.publish(0, outcome, sends)
    assert len(attempts) == 3
    labels = {"detector": "bulk_dialling", "severity": "critical", "state": "raised"}
    assert rt.metrics.registry.get_sample_value("dialwatch_alerts_total", labels) == 1


async def test_outbox_alerts_survive_a_crash_between_write_and_send() -> None:
    """The first owner writes the state and its alerts, then dies before sending. The next
    owner publishes the alerts the topic does not have yet, and only those."""
    store = MemoryStore()
    first = runtime(store)
    first.engine.outbox = True
    outcome = await first.process(0, list(enumerate(dial("17012345678", 260, 2000))))
    ids = sorted(a.alert_id for a in outcome.alerts)
    assert len(ids) == 4 and sorted(await store.pending_alerts(0)) == ids
    # ... crash: nothing was sent. One alert did reach the topic before the crash.
    on_topic = {ids[0]}
    sent: list[bytes] = []

    async def published(wanted: set[str]) -> set[str]:
        return wanted & on_topic

    async def send(values: list[bytes]) -> list[Any]:
        sent.extend(values)
        return []

    second = runtime(store)
    second.engine.outbox = True
    assert await second.recover(0, published, send) == 3
    assert sorted(orjson.loads(v)["alert_id"] for v in sent) == ids[1:]
    assert await store.pending_alerts(0) == {}
    replay = await second.process(0, list(enumerate(dial("17012345678", 260, 2000))))
    assert replay.replayed == 260 and replay.alerts == []  # and nothing raised twice
