"""Outages of the real services a worker depends on, injected mid-stream.

Each test starts its own Tansu broker and redis-server (not the session fixtures: pausing those
would disturb other tests), produces about 22,000 CDRs as JSON arrays of 100 on 4 partitions,
starts a worker, and when about 30% is applied takes one service away for a while:

* Redis frozen (SIGSTOP) for 8 s, then thawed (SIGCONT);
* the broker frozen likewise (not restarted: Tansu's memory storage keeps nothing across one);
* Redis shut down cleanly (``SHUTDOWN``, the AOF complete) and restarted on the same port and
  directory.

The scenarios run side by side (one module fixture, each its own services, worker and
directory); each test reports its own. The worker must stay up and catch up. Afterwards
``dialwatch verify`` accounts for every record, no alert id appears twice on the alert topic,
and the caller-stage alert ids equal those of a fault-free run of the same records (``scan``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from config.settings import Settings
from streams.tools import simulate as sim
from streams.tools.fleet import applied, end_offsets, read_published, worker_env
from streams.tools.services import Service, free_port, start_broker, start_redis
from streams.tools.simulate import default_start
from tests.integration.test_faults import (
    CALLER_DETECTORS,
    PARTITIONS,
    fault_free,
)

pytestmark = pytest.mark.e2e
SPEC = sim.SimSpec(
    start=default_start(Settings()), seed=31, hours=12, subscribers=2_500, bulk_diallers=2
)
OUTAGE_S = 8.0
SIDE_BY_SIDE = 5  # scenarios at once
CATCH_UP_S = 150.0


@pytest.fixture(scope="module")
def records() -> list[dict[str, object]]:
    return sim.generate(SPEC)[0]


@pytest.fixture(scope="module")
def reference(
    records: list[dict[str, object]], tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, object]]:
    return fault_free(records, tmp_path_factory.mktemp("reference"))


def health(port: int) -> int | None:
    """The status of the worker's /health, None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@dataclass
class Rig:
    """One test's broker, Redis, topics and worker."""

    broker: Service
    store: Service  # the redis-server
    env: dict[str, str]
    log: Path
    total: int = 0  # messages on the CDR topic
    proc: subprocess.Popen[bytes] | None = None
    statuses: list[int | None] = field(default_factory=list)  # /health during the outage

    @property
    def prefix(self) -> str:
        return self.env["DIALWATCH_KEY_PREFIX"]

    @property
    def web_port(self) -> int:
        return int(self.env["DIALWATCH_WEB_PORT"])

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.store.address, socket_timeout=5)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.tail()

    def start_worker(self) -> None:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker"],
                env=self.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )

    def wait_applied(self, fraction: float, timeout_s: float = 90) -> None:
        """Until ``fraction`` of the CDR messages is applied; asserts the stream is not done."""
        client = self.client()
        deadline = time.monotonic() + timeout_s
        try:
            while (done := sum(applied(client, self.prefix, PARTITIONS).values())) < (
                self.total * fraction
            ):
                self.alive()
                assert time.monotonic() < deadline, self.tail()
                time.sleep(0.05)
        finally:
            client.close()
        assert done < self.total * 0.9, (done, self.total)  # the fault comes mid-stream
        print(f"fault at {done} of {self.total} CDR messages applied")

    def watch(self, seconds: float) -> None:
        """Poll /health for ``seconds`` while the worker must stay up."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.alive()
            self.statuses.append(health(self.web_port))
            time.sleep(0.2)
        print(f"/health so far during the outage: {self.statuses}")

    def wait_caught_up(self) -> None:
        """Both stages at or past their topics' end offsets, and stable (see test_faults)."""
        client = self.client()
        deadline = time.monotonic() + CATCH_UP_S
        kafka = self.env["DIALWATCH_KAFKA"]
        try:
            for topic, key in (
                (self.env["DIALWATCH_CDR_TOPIC"], self.prefix),
                (self.env["DIALWATCH_DERIVED_TOPIC"], f"{self.prefix}:x"),
            ):
                while True:
                    self.alive()
                    ends = end_offsets(kafka, topic)
                    done = applied(client, key, PARTITIONS)
                    if ends and all(done[p] >= end for p, end in ends.items()):
                        time.sleep(2)
                        if applied(client, key, PARTITIONS) == done:
                            break
                    assert time.monotonic() < deadline, (topic, ends, done, self.tail())
                    time.sleep(0.5)
        finally:
            client.close()

    def check(self, records: list[dict[str, object]], ref: list[dict[str, object]]) -> None:
        client = self.client()
        try:  # caught up: the state is written; its last alerts may still be sending
            kafka, topic = self.env["DIALWATCH_KAFKA"], self.env["DIALWATCH_ALERT_TOPIC"]
            alerts = read_published(client, kafka, topic, self.prefix, PARTITIONS)
        finally:
            client.close()
        ids = [str(a["alert_id"]) for a in alerts]
        assert len(ids) == len(set(ids)), "an alert was published twice"

        def caller_ids(rows: list[dict[str, object]]) -> set[str]:
            return {str(a["alert_id"]) for a in rows if a["detector"] in CALLER_DETECTORS}

        assert caller_ids(ref), "the reference run raised no caller alert"
        assert caller_ids(alerts) == caller_ids(ref)
        verify = subprocess.run(
            [
                sys.executable, "-m", "streams", "verify",
                "--topic", self.env["DIALWATCH_CDR_TOPIC"],
                "--alerts", self.env["DIALWATCH_ALERT_TOPIC"],
                "--redis", self.store.address,
                "--prefix", self.prefix,
            ],
            capture_output=True, env=self.env, timeout=180,
        )  # fmt: skip
        output = verify.stdout.decode() + verify.stderr.decode()
        assert verify.returncode == 0 and "ALL-RECORDS-ACCOUNTED" in output, output[-3000:]


@contextmanager
def rigs(
    records: list[dict[str, object]], unique: str, tmp_path: Path
) -> Iterator[Callable[..., Rig]]:
    """``rig(redis_port=None, redis_extra=None)``: own services, topics produced, worker up;
    all stopped on the way out."""
    made: list[Rig] = []

    def make(redis_port: int | None = None, redis_extra: list[str] | None = None) -> Rig:
        broker = start_broker()
        try:
            store = start_redis(redis_port, redis_extra)
        except BaseException:
            broker.stop()
            raise
        try:  # the topics are created too
            env = worker_env(
                broker.address, store.address, unique, PARTITIONS, DIALWATCH_RETRY_MAX_BACKOFF_S="1"
            )
        except BaseException:
            broker.stop()
            store.stop()
            raise
        one = Rig(broker, store, env, tmp_path / "worker.log")
        made.append(one)
        sim.produce(records, broker.address, env["DIALWATCH_CDR_TOPIC"], PARTITIONS, 100)
        one.total = sum(end_offsets(broker.address, env["DIALWATCH_CDR_TOPIC"]).values())
        one.start_worker()
        return one

    try:
        yield make
    finally:
        stop_all(made)


def stop_all(made: list[Rig]) -> None:
    for one in made:
        for service in (one.broker, one.store):
            if service.proc.poll() is None:
                os.kill(service.proc.pid, signal.SIGCONT)  # a stopped process ignores SIGTERM
        if one.proc is not None and one.proc.poll() is None:
            one.proc.terminate()
            try:
                one.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                one.proc.kill()
                one.proc.wait()
        one.broker.stop()
        one.store.stop()


def freeze(service: Service, rig: Rig) -> None:
    """SIGSTOP ``service`` for OUTAGE_S while polling /health, then SIGCONT."""
    os.kill(service.proc.pid, signal.SIGSTOP)
    try:
        rig.watch(OUTAGE_S)
    finally:
        os.kill(service.proc.pid, signal.SIGCONT)


def redis_frozen(
    rig: Callable[..., Rig],
    records: list[dict[str, object]],
    reference: list[dict[str, object]],
    tmp_path: Path,
) -> None:
    one = rig()
    one.wait_applied(0.3)
    freeze(one.store, one)
    assert 503 in one.statuses, f"/health during the Redis outage: {one.statuses}"
    one.wait_caught_up()
    assert health(one.web_port) == 200
    one.check(records, reference)


def broker_frozen(
    rig: Callable[..., Rig],
    records: list[dict[str, object]],
    reference: list[dict[str, object]],
    tmp_path: Path,
) -> None:
    one = rig()
    one.wait_applied(0.3)
    freeze(one.broker, one)
    assert 503 in one.statuses, f"/health during the broker outage: {one.statuses}"
    one.wait_caught_up()
    assert health(one.web_port) == 200
    one.check(records, reference)


def redis_restarted(
    rig: Callable[..., Rig],
    records: list[dict[str, object]],
    reference: list[dict[str, object]],
    tmp_path: Path,
) -> None:
    data = tmp_path / "redis-data"
    data.mkdir()
    port = free_port()
    persistent = ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(data)]
    one = rig(port, persistent)
    one.wait_applied(0.3)
    before = one.client()
    try:
        kept = applied(before, one.prefix, PARTITIONS)
        before.shutdown()  # the AOF is fsynced on every write and closed on SHUTDOWN
    finally:
        before.close()
    one.store.proc.wait(timeout=30)
    assert one.store.proc.returncode == 0, (one.store.workdir / "redis.log").read_text()
    one.watch(OUTAGE_S / 2)  # down: connections refused
    one.store.stop()  # its (empty) temporary directory only; the data live in ``data``
    one.store = start_redis(port, persistent)
    after = one.client()
    try:  # the restarted server reloaded the state from the AOF
        reloaded = applied(after, one.prefix, PARTITIONS)
    finally:
        after.close()
    assert sum(kept.values()) > 0, kept
    assert all(reloaded[p] >= kept[p] for p in kept), (kept, reloaded)
    one.watch(OUTAGE_S / 2)
    assert 503 in one.statuses, f"/health while Redis was down: {one.statuses}"
    one.wait_caught_up()
    assert health(one.web_port) == 200
    one.check(records, reference)


def restart_redis(one: Rig, port: int, args: list[str]) -> None:
    """Start a redis-server on ``port`` again with ``args`` (its data directory in them)."""
    one.store.stop()  # its temporary directory only; the data live in the one in ``args``
    one.store = start_redis(port, args)


def redis_killed_everysec(
    rig: Callable[..., Rig],
    records: list[dict[str, object]],
    reference: list[dict[str, object]],
    tmp_path: Path,
) -> None:
    """SIGKILL, not SHUTDOWN: the AOF has whatever reached it, up to a second may be missing."""
    data = tmp_path / "redis-data"
    data.mkdir()
    port = free_port()
    everysec = ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(data)]
    one = rig(port, everysec)
    one.wait_applied(0.3)
    os.kill(one.store.proc.pid, signal.SIGKILL)
    one.store.proc.wait(timeout=30)
    one.watch(OUTAGE_S / 2)
    restart_redis(one, port, everysec)
    one.watch(OUTAGE_S / 2)
    assert 503 in one.statuses, f"/health while Redis was down: {one.statuses}"
    one.wait_caught_up()
    assert health(one.web_port) == 200
    one.check(records, reference)


def redis_from_older_snapshot(
    rig: Callable[..., Rig],
    records: list[dict[str, object]],
    reference: list[dict[str, object]],
    tmp_path: Path,
) -> None:
    """The strong form of a lost second: Redis killed and started from a snapshot taken while
    the worker went on applying (and publishing) for a while. The stored offsets are then
    behind the consumer's; the worker must re-read the gap from Kafka, raise nothing twice
    and end with exact counts."""
    data = tmp_path / "redis-data"
    data.mkdir()
    port = free_port()
    args = ["--dir", str(data), "--dbfilename", "dump.rdb"]
    one = rig(port, args)
    one.wait_applied(0.2)
    client = one.client()
    try:
        client.save()
        at_snapshot = applied(client, one.prefix, PARTITIONS)
        (data / "dump.rdb").rename(data / "snapshot.rdb")
        deadline = time.monotonic() + 90
        while sum((at_kill := applied(client, one.prefix, PARTITIONS)).values()) <= sum(
            at_snapshot.values()
        ):  # the worker applies (and publishes) more after the snapshot
            one.alive()
            assert time.monotonic() < deadline, one.tail()
            time.sleep(0.05)
    finally:
        client.close()
    os.kill(one.store.proc.pid, signal.SIGKILL)
    one.store.proc.wait(timeout=30)
    (data / "snapshot.rdb").rename(data / "dump.rdb")
    restart_redis(one, port, args)
    restarted = one.client()
    try:
        assert applied(restarted, one.prefix, PARTITIONS) == at_snapshot
    finally:
        restarted.close()
    lost = sum(at_kill.values()) - sum(at_snapshot.values())
    assert lost > 0, (at_snapshot, at_kill)
    print(f"Redis lost {lost} applied CDR messages")
    one.wait_caught_up()
    assert health(one.web_port) == 200
    assert "re-reading the gap from Kafka" in one.tail() or "re-reading the gap" in (
        one.log.read_text(errors="replace")
    )
    one.check(records, reference)


SCENARIOS: dict[str, Callable[..., None]] = {
    "redis_frozen": redis_frozen,
    "broker_frozen": broker_frozen,
    "redis_restarted": redis_restarted,
    "redis_killed_everysec": redis_killed_everysec,
    "redis_from_older_snapshot": redis_from_older_snapshot,
}


@pytest.fixture(scope="module")
def outcomes(
    records: list[dict[str, object]],
    reference: list[dict[str, object]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Future[None]]]:
    """The scenarios side by side, each with its own broker, Redis, worker and directory; each
    test takes its scenario's outcome (its assertion error, if any)."""

    def one(name: str) -> None:
        tmp = tmp_path_factory.mktemp(name[:40])
        with rigs(records, uuid.uuid4().hex[:10], tmp) as make:
            SCENARIOS[name](make, records, reference, tmp)

    with ThreadPoolExecutor(SIDE_BY_SIDE) as pool:
        yield {name: pool.submit(one, name) for name in SCENARIOS}


@pytest.mark.timeout(600)
def test_redis_frozen_mid_stream_degrades_health_then_catches_up_exactly(
    outcomes: dict[str, Future[None]],
) -> None:
    outcomes["redis_frozen"].result(timeout=560)


@pytest.mark.timeout(600)
def test_broker_frozen_mid_stream_worker_resumes_exactly(
    outcomes: dict[str, Future[None]],
) -> None:
    outcomes["broker_frozen"].result(timeout=560)


@pytest.mark.timeout(600)
def test_redis_shut_down_and_restarted_mid_stream_catches_up_exactly(
    outcomes: dict[str, Future[None]],
) -> None:
    outcomes["redis_restarted"].result(timeout=560)


@pytest.mark.timeout(600)
def test_redis_killed_under_appendfsync_everysec_mid_stream_catches_up_exactly(
    outcomes: dict[str, Future[None]],
) -> None:
    outcomes["redis_killed_everysec"].result(timeout=560)


@pytest.mark.timeout(600)
def test_redis_back_from_an_older_snapshot_is_replayed_from_kafka_exactly(
    outcomes: dict[str, Future[None]],
) -> None:
    outcomes["redis_from_older_snapshot"].result(timeout=560)
