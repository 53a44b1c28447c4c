"""Worker processes in one consumer group, observed from outside (the chaos loop, the
recovery benchmark): start, stop, read their metrics, and see where each partition's stored
state and the topics' ends are."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import redis
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from streams.tools.services import free_port
from streams.topics import create_topics


def worker_env(
    kafka: str, redis_url: str, unique: str, partitions: int, **extra: str
) -> dict[str, str]:
    """A worker's environment with its own topics (``<name>-<unique>``), group and key prefix
    (``t<unique>``), the group timings the tests use, and ``extra`` on top; the CDR, alert and
    dead-letter topics are created."""
    env = {
        **os.environ,
        "DIALWATCH_KAFKA": kafka,
        "DIALWATCH_REDIS": redis_url,
        "DIALWATCH_CDR_TOPIC": f"cdrs-{unique}",
        "DIALWATCH_ALERT_TOPIC": f"alerts-{unique}",
        "DIALWATCH_DEAD_LETTER_TOPIC": f"dead-{unique}",
        "DIALWATCH_DERIVED_TOPIC": f"derived-{unique}",
        "DIALWATCH_REPARTITION_TOPIC": f"repartition-{unique}",
        "DIALWATCH_COMPLAINT_TOPIC": f"complaints-{unique}",
        "DIALWATCH_AUDIT_TOPIC": f"audit-{unique}",
        "DIALWATCH_INTERCEPTION_TOPIC": f"interceptions-{unique}",
        "DIALWATCH_APP_ID": f"dialwatch-{unique}",
        "DIALWATCH_KEY_PREFIX": f"t{unique}",
        "DIALWATCH_TOPIC_PARTITIONS": str(partitions),
        "DIALWATCH_WEB_PORT": str(free_port()),
        "DIALWATCH_SESSION_TIMEOUT_S": "6",
        "DIALWATCH_HEARTBEAT_INTERVAL_S": "1",
        "DIALWATCH_REBALANCE_TIMEOUT_S": "6",
        **extra,
    }
    create_topics(
        kafka,
        {
            env["DIALWATCH_CDR_TOPIC"]: partitions,
            env["DIALWATCH_ALERT_TOPIC"]: 1,
            env["DIALWATCH_DEAD_LETTER_TOPIC"]: 1,
        },
    )
    return env


@dataclass
class Worker:
    """One ``dialwatch worker`` process with its web port and log."""

    name: str
    proc: subprocess.Popen[bytes]
    web_port: int
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=3) as r:
            return str(r.read().decode())

    def stop(self, timeout_s: float) -> int | None:
        """SIGTERM and wait; a worker still running after ``timeout_s`` logs its await chains
        (SIGUSR2) and is killed. Returns its exit status, None when it had to be killed."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR2)
            time.sleep(2)
            self.proc.kill()
            self.proc.wait()
            return None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@dataclass
class Fleet:
    """Workers started with one environment (their group, topics and key prefix)."""

    env: dict[str, str]
    logs: Path
    workers: list[Worker] = field(default_factory=list)

    def start(self) -> Worker:
        name = f"worker-{len(self.workers) + 1}"
        port, log = free_port(), self.logs / f"{name}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker"],
                env={**self.env, "DIALWATCH_WEB_PORT": str(port)},
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(name, proc, port, log)
        self.workers.append(worker)
        return worker

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.alive()]

    def stop(self, timeout_s: float = 30) -> None:
        for worker in self.live():
            worker.proc.terminate()
        for worker in self.workers:
            if worker.alive():
                worker.stop(timeout_s)


def end_offsets(kafka: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def applied(client: redis.Redis, prefix: str, partitions: int) -> dict[int, int]:
    """Per partition, the offset its stored state reflects + 1 (comparable to end offsets).
    ``prefix`` is the key prefix for stage 1, ``<prefix>:x`` for stage 2."""
    out = {}
    for p in range(partitions):
        off = client.hget(f"{prefix}:{{p{p}}}:meta", "off")
        out[p] = int(off) + 1 if off is not None else 0
    return out


def caught_up(
    client: redis.Redis, kafka: str, topics: list[tuple[str, str]], partitions: int
) -> bool:
    """Whether every (topic, key prefix) has its stored offsets at or past the topic's end, and
    still the same two seconds later (Tansu may report an end as the first offset of its last
    batch, so "at or past" it)."""
    seen = []
    for topic, prefix in topics:
        ends = end_offsets(kafka, topic)
        done = applied(client, prefix, partitions)
        if not ends or any(done[p] < end for p, end in ends.items()):
            return False
        seen.append(done)
    time.sleep(2)
    return seen == [applied(client, prefix, partitions) for _, prefix in topics]


def unconfirmed(client: redis.Redis, prefix: str, partitions: int) -> int:
    """Alerts in the outboxes of both stages under key prefix ``prefix``: written with their
    state, not yet confirmed by the broker. A worker counts a batch in its metrics (and stores
    its offset) once the state is written, so a reader that waited for those waits for this to
    be 0 too before it reads the alert topic to its end."""
    keys = [f"{pre}:{{p{p}}}:outbox" for pre in (prefix, f"{prefix}:x") for p in range(partitions)]
    return sum(int(client.hlen(key)) for key in keys)


def wait_confirmed(
    client: redis.Redis, prefix: str, partitions: int, timeout_s: float = 60.0
) -> None:
    """Until every alert written under ``prefix`` is confirmed published (``unconfirmed``)."""
    deadline = time.monotonic() + timeout_s
    while (left := unconfirmed(client, prefix, partitions)) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{left} alerts under {prefix} still unconfirmed")
        time.sleep(0.1)


def read_published(
    client: redis.Redis, kafka: str, topic: str, prefix: str, partitions: int, timeout_s: float = 60
) -> list[dict[str, object]]:
    """The alert topic once it holds every alert the outboxes under ``prefix`` still list: those
    being sent, and any a store restored from an older snapshot lists again though it was
    confirmed (so the outbox need not be empty, as ``wait_confirmed`` wants)."""
    deadline = time.monotonic() + timeout_s
    while True:
        keys = [f"{p}:{{p{n}}}:outbox" for p in (prefix, f"{prefix}:x") for n in range(partitions)]
        listed = {
            k.decode() if isinstance(k, bytes) else str(k)
            for key in keys
            for k in client.hkeys(key)
        }
        alerts = read_topic(kafka, topic)
        missing = listed - {str(a["alert_id"]) for a in alerts}
        if not missing:
            return alerts
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(missing)} outbox alerts under {prefix} not on {topic}")


def read_records(
    kafka: str, topic: str, idle_s: float = 1.0, timeout_s: float = 120.0
) -> list[ConsumerRecord]:
    """Every message of a topic from the start: up to the end offsets it has when called, then
    on until ``idle_s`` passes without a new one (Tansu may report an end as the first offset
    of the last batch). A missing topic is empty. Messages still to come are the caller's to
    wait for (a condition such as ``wait_confirmed``), not an idle timeout's."""
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200)
            for messages in batch.values():
                out.extend(messages)
            now = time.monotonic()
            if batch:
                last = now
            elif now - last >= idle_s and all(consumer.position(tp) >= ends[tp] for tp in tps):
                return out
        raise TimeoutError(f"{topic}: not read to its end in {timeout_s} s")
    finally:
        consumer.close()


def read_topic(kafka: str, topic: str, idle_s: float = 1.0) -> list[dict[str, object]]:
    """Every message of a JSON topic, from the start (``read_records``)."""
    return [orjson.loads(m.value) for m in read_records(kafka, topic, idle_s)]


def repeated_ids(alerts: list[dict[str, object]]) -> list[str]:
    """Alert ids that appear more than once."""
    counts = Counter(str(a["alert_id"]) for a in alerts)
    return sorted(i for i, n in counts.items() if n > 1)
