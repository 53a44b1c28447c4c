"""The worker's retry-in-place: a failing store or broker never drops a batch."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import orjson
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from config.policy import load_policy
from config.settings import Settings
from streams.engine import Engine
from streams.items import Item, Outcome
from streams.metrics import Metrics
from streams.runtime import Links, Runtime
from streams.state.base import Changes
from streams.state.memory import MemoryStore
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


class Broker:
    """The partition's input log and the alert topic, as ``Runtime.handle`` sees them."""

    def __init__(self, log: list[Item]) -> None:
        self.log = log
        self.alerts: list[str] = []  # alert ids in publication order
        self.rereads: list[tuple[int, int]] = []

    async def published(self, wanted: set[str]) -> set[str]:
        return wanted & set(self.alerts)

    async def send_raw(self, values: list[bytes]) -> list[Any]:
        self.alerts.extend(orjson.loads(v)["alert_id"] for v in values)
        return []

    async def reread(self, partition: int, start: int, end: int) -> list[Item]:
        self.rereads.append((start, end))
        return [item for item in self.log if start <= item[0] < min(end, start + 50)]

    def links(self) -> Links:
        return Links(self.published, self.send_raw, self.reread)

    async def run(self, rt: Runtime, start: int, end: int) -> None:
        outcome = await rt.handle(0, start, self.log[start:end], self.links())

        async def sends() -> list[Any]:
            self.alerts.extend(a.alert_id for a in outcome.alerts)
            return []

        await rt.publish(0, outcome, sends)


async def test_a_store_that_lost_writes_is_caught_up_from_kafka_and_alerts_go_out_once() -> None:
    """Redis comes back from a snapshot taken after offset 9 while the worker had applied and
    published up to offset 199. The next batch finds the stored offset behind it, re-reads
    10..199 from Kafka, and ends in the state of a run without the loss; the alerts raised
    again are on the topic already and are not sent twice."""
    log: list[Item] = list(enumerate(dial("17012345678", 260, 2000)))
    store = MemoryStore()
    rt = runtime(store)
    rt.engine.outbox = True
    broker = Broker(log)
    await broker.run(rt, 0, 10)
    snapshot = copy.deepcopy(store.__dict__)
    await broker.run(rt, 10, 200)
    published = list(broker.alerts)
    assert len(published) == 4
    store.__dict__.update(copy.deepcopy(snapshot))  # the restarted Redis lost 10..199
    await broker.run(rt, 200, 260)

    assert broker.rereads[0] == (10, 200) and broker.rereads[-1] == (160, 200)
    assert (
        rt.metrics.registry.get_sample_value(
            "dialwatch_restored_messages_total", {"stage": "callers"}
        )
        == 190
    )
    assert broker.alerts == published  # nothing raised again reached the topic
    assert await store.pending_alerts(0) == {}

    straight = MemoryStore()
    reference = runtime(straight)
    reference.engine.outbox = True
    for start, end in ((0, 10), (10, 200), (200, 260)):
        await Broker(log).run(reference, start, end)
    assert store.__dict__ == straight.__dict__


async def test_no_gap_no_reread() -> None:
    log: list[Item] = list(enumerate(dial("17012345678", 30, 2000)))
    rt = runtime(MemoryStore())
    broker = Broker(log)
    await broker.run(rt, 0, 10)
    rt.engine.forget(0)  # as after a store error: reloaded, and the store is where it was
    await broker.run(rt, 10, 30)
    assert broker.rereads == []


async def test_a_hole_in_the_log_ends_the_reread() -> None:
    """Offsets a compacted or transactional topic no longer holds are not waited for."""
    log: list[Item] = list(enumerate(dial("17012345678", 30, 2000)))
    rt = runtime(MemoryStore())
    broker = Broker([item for item in log if not 10 <= item[0] < 20])
    await broker.run(rt, 0, 10)
    rt.engine.forget(0)
    outcome = await rt.handle(0, 20, log[20:30], broker.links())
    assert broker.rereads == [(10, 20)] and outcome.accepted == 10


async def test_the_audit_restores_an_idle_partition_that_lost_writes() -> None:
    """No further batch arrives to reveal the loss: the periodic audit finds it."""
    log: list[Item] = list(enumerate(dial("17012345678", 260, 2000)))
    store = MemoryStore()
    rt = runtime(store)
    rt.engine.outbox = True
    broker = Broker(log)
    await broker.run(rt, 0, 10)
    snapshot = copy.deepcopy(store.__dict__)
    await broker.run(rt, 10, 260)
    assert await rt.audit(broker.links()) == 0 and broker.rereads == []
    store.__dict__.update(copy.deepcopy(snapshot))
    assert await rt.audit(broker.links()) == 1
    assert (await store.load_meta(0)).offset == 259
    assert await rt.audit(broker.links()) == 0
    assert len(broker.alerts) == len(set(broker.alerts)) == 4
    await rt.revoke(0, wait_s=1)
    assert rt.handled == {}


async def test_forward_runs_before_the_write_and_a_crash_there_replays_the_batch() -> None:
    store = MemoryStore()
    rt = runtime(store)
    broker = Broker(list(enumerate(dial("17012345678", 30, 2000))))
    forwarded: list[tuple[int, int]] = []  # (stored offset when forwarding, CDRs admitted)

    async def forward(outcome: Outcome) -> None:
        forwarded.append(((await store.load_meta(0)).offset, len(outcome.admitted)))
        if len(forwarded) == 1:
            raise RuntimeError("crash between forward and write")

    outcome = await rt.handle(0, 0, broker.log, broker.links(), forward)
    # The first forward ran before any write and failed: the batch was not written, so it is
    # detected and forwarded again, whole, before the write that then succeeds.
    assert forwarded == [(-1, 30), (-1, 30)]
    assert outcome.accepted == 30 and (await store.load_meta(0)).offset == 29
    again = await rt.handle(0, 0, broker.log, broker.links(), forward)
    assert again.replayed == 30 and len(forwarded) == 2  # nothing to write: nothing forwarded


async def test_prepare_writes_nothing_until_commit() -> None:
    store = MemoryStore()
    engine = runtime(store).engine
    prepared = await engine.prepare(0, list(enumerate(dial("17012345678", 260, 2000))))
    assert prepared.outcome.alerts and (await store.load_meta(0)).offset == -1
    assert await engine.commit(prepared) is prepared.outcome
    assert (await store.load_meta(0)).offset == 259


async def test_revoke_waits_for_the_batch_in_flight() -> None:
    rt = runtime(MemoryStore())
    order: list[str] = []

    async def batch() -> None:
        async with rt.lock(0):
            await asyncio.sleep(0.05)
            order.append("published")

    task = asyncio.create_task(batch())
    await asyncio.sleep(0)
    await rt.revoke(0, wait_s=5)
    order.append("revoked")
    await task
    assert order == ["published", "revoked"]


async def test_revoke_gives_up_waiting_on_a_stuck_batch() -> None:
    rt = runtime(MemoryStore())
    await rt.lock(0).acquire()
    started = asyncio.get_running_loop().time()
    await rt.revoke(0, wait_s=0.05)
    assert asyncio.get_running_loop().time() - started < 1 and 0 not in rt.handled


async def test_the_fetch_wait_setting_reaches_every_aiokafka_consumer() -> None:
    import aiokafka

    from streams.app import set_fetch_max_wait

    original = aiokafka.AIOKafkaConsumer.__init__
    try:
        set_fetch_max_wait(10)
        set_fetch_max_wait(10)  # idempotent: not wrapped twice
        consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        assert consumer._fetch_max_wait_ms == 10
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=1500
        )  # what faust-streaming passes
        assert consumer._fetch_max_wait_ms == 10
    finally:
        aiokafka.AIOKafkaConsumer.__init__ = original


@pytest.mark.parametrize("steps", range(6))
async def test_a_revocation_never_leaves_the_partition_locked(steps: int) -> None:
    """A revocation that Faust cancels just as the batch in flight finishes (``steps`` loop
    turns after it) never holds the partition's lock afterwards: the next batch and the audit
    go on (issue 17). The revocation only waits for the lock to be free, never takes it."""
    rt = runtime(MemoryStore())
    release = asyncio.Event()

    async def batch() -> None:
        async with rt.lock(0):
            await release.wait()

    held = asyncio.create_task(batch())
    await asyncio.sleep(0)
    revoking = asyncio.create_task(rt.revoke(0, wait_s=5))
    await asyncio.sleep(0.01)
    release.set()
    for _ in range(steps):
        await asyncio.sleep(0)
    revoking.cancel()
    await asyncio.gather(revoking, return_exceptions=True)
    await held
    assert not rt.lock(0).locked()


async def test_a_revocation_that_times_out_leaves_the_lock_to_its_batch() -> None:
    rt = runtime(MemoryStore())
    release = asyncio.Event()

    async def batch() -> None:
        async with rt.lock(0):
            await release.wait()

    held = asyncio.create_task(batch())
    await asyncio.sleep(0)
    await rt.revoke(0, wait_s=0.05)
    assert rt.lock(0).locked()  # still the batch's
    release.set()
    await held
    assert not rt.lock(0).locked()
