"""Overload (issue 17 item 5): input at several times one worker's capacity, then the catch-up.

``python -m benchmarks.overload [--minutes 2] [--factor 5] [--partitions 4]`` starts a Tansu
broker and a redis-server, measures one worker's capacity (a backlog of ``--probe`` CDRs
produced first, then the CDRs/s from the worker's first stored batch until both stages have
applied it),
then, on fresh topics and a fresh key prefix, produces to one worker at ``--factor`` times that
rate for ``--minutes`` and waits until it has caught up. Every ``--sample-s`` it records the
worker's RSS, Redis's used memory, the state lag of the CDR topic from /metrics
(``dialwatch_state_lag_messages``) and from /health's ``lag``. At the end: peak RSS and when it
was reached, peak lag, the catch-up time and ``dialwatch verify`` (ALL-RECORDS-ACCOUNTED).
Exit 0 when verify accounts for every record, the worker caught up, /health showed the lag and
the worker's RSS stayed under ``--rss-bound-mb`` over the whole run (the stated bound: it is set
by Faust's stream buffers, counted in messages, not by the backlog; docs/recovery.md)."""

from __future__ import annotations

import argparse
import random
import re
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import redis
from kafka import KafkaProducer

from benchmarks.chaos import create, environment, stages, verify
from streams.tools import simulate as sim
from streams.tools.fleet import Fleet, Worker, applied, caught_up
from streams.tools.services import Service, start_broker, start_redis

BATCH = 100  # records per message
BEGUN = datetime.now(UTC)
LAG_RE = re.compile(r"^dialwatch_state_lag_messages\{([^}]*)\} (\S+)$", re.MULTILINE)


def records(start_s: float, count: int, seed: int, first: int = 0) -> Iterator[dict[str, object]]:
    """Ordinary traffic: 20,000 mobile callers, 100 calls a second of event time, from six hours
    before the benchmark began (two million calls fit before the clock: none is "future")."""
    rng = random.Random(seed)
    start = BEGUN - timedelta(hours=6)
    for i in range(first, first + count):
        at = start + timedelta(seconds=start_s + i / 100)
        yield {
            "cdr_id": f"ov{seed}-{i:09d}",
            "caller": f"138{rng.randrange(20_000):08d}",
            "callee": f"139{rng.randrange(10**8):08d}",
            "start_time": at.isoformat(timespec="seconds"),
            "duration_s": rng.randrange(0, 300),
            "answered": rng.random() < 0.6,
            "release_cause": 16,
            "direction": "outgoing",
        }


def encoded(count: int, seed: int, parts: int) -> list[tuple[int, bytes, int]]:
    """The overload's messages, made before it starts (``(partition, JSON array, records)``):
    encoding in the paced loop capped the input at 2-4x the worker's capacity."""
    return [
        (partition, orjson.dumps(batch), len(batch))
        for partition, batch in sim.batch_by_partition(records(0, count, seed), parts, BATCH)
    ]


def send_paced(
    messages: list[tuple[int, bytes, int]], bootstrap: str, topic: str, rate: float, run: Run
) -> None:
    """One producer for the whole overload, paced at ``rate`` records per second."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    errors: list[BaseException] = []
    started = time.monotonic()
    try:
        for partition, value, n in messages:
            producer.send(topic, value=value, partition=partition).add_errback(errors.append)
            run.produced += n
            ahead = run.produced / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        producer.flush()
    finally:
        producer.close()
    if errors:
        raise RuntimeError(f"{len(errors)} overload messages failed") from errors[0]


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            return bytes(reply.read())
    except OSError as exc:  # a 503 /health still has its body
        body = getattr(exc, "read", None)
        return bytes(body()) if callable(body) else None


@dataclass
class Sample:
    at_s: float
    produced: int
    rss_kb: int
    redis_mb: float
    metrics_lag: int | None  # dialwatch_state_lag_messages, CDR topic, summed
    health_lag: int | None  # /health lag.topics[cdr].state_messages


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    produced: int = 0


def sample(worker: Worker, client: redis.Redis, topic: str, run: Run, begun: float) -> Sample:
    metrics = get(f"http://127.0.0.1:{worker.web_port}/metrics") or b""
    lags = [
        float(n) for labels, n in LAG_RE.findall(metrics.decode()) if f'topic="{topic}"' in labels
    ]
    health = get(f"http://127.0.0.1:{worker.web_port}/health")
    health_lag = None
    if health:
        entry = orjson.loads(health).get("lag", {}).get("topics", {}).get(topic, {})
        health_lag = entry.get("state_messages")
    try:
        redis_mb = int(client.info("memory")["used_memory"]) / 2**20
    except redis.RedisError:
        redis_mb = 0.0
    return Sample(
        round(time.monotonic() - begun, 1),
        run.produced,
        rss_kb(worker.proc.pid),
        round(redis_mb, 1),
        int(sum(lags)) if lags else None,
        health_lag,
    )


def wait_caught_up(client: redis.Redis, env: dict[str, str], parts: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if caught_up(client, env["DIALWATCH_KAFKA"], stages(env), parts):
                return True
        except (redis.RedisError, OSError):
            pass
        time.sleep(1)
    return False


def capacity(broker: Service, store: Service, parts: int, probe: int, logs: Path) -> float:
    """CDRs/s one worker applies (both stages) from a backlog, its start included."""
    env = environment(broker, store, "probe", parts)
    create(env, parts)
    sim.produce(
        records(0, probe, 1), env["DIALWATCH_KAFKA"], env["DIALWATCH_CDR_TOPIC"], parts, BATCH
    )
    fleet = Fleet(env, logs / "probe")
    fleet.logs.mkdir()
    client = redis.Redis.from_url(env["DIALWATCH_REDIS"])
    fleet.start()
    try:
        deadline = time.monotonic() + 120
        while not sum(applied(client, env["DIALWATCH_KEY_PREFIX"], parts).values()):
            if time.monotonic() > deadline:
                raise SystemExit("the capacity probe's worker applied nothing within 120 s")
            time.sleep(0.1)
        started = time.monotonic()  # its first batch stored: start-up left out
        if not wait_caught_up(client, env, parts, 600):
            raise SystemExit("the capacity probe did not catch up within 600 s")
        return probe / (time.monotonic() - started - 2)  # caught_up's own 2 s check
    finally:
        fleet.stop()
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--factor", type=float, default=5.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--probe", type=int, default=30_000)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--rss-bound-mb", type=float, default=768.0)
    args = parser.parse_args(argv)
    parts = args.partitions
    logs = Path(tempfile.mkdtemp(prefix="dialwatch-overload-"))
    broker, store = start_broker(), start_redis()
    try:
        cap = capacity(broker, store, parts, args.probe, logs)
        rate = cap * args.factor
        total = int(rate * args.minutes * 60)
        print(f"capacity: {cap:,.0f} CDRs/s; producing {total:,} at {rate:,.0f}/s", flush=True)
        env = environment(broker, store, "over", parts)
        create(env, parts)
        fleet = Fleet(env, logs)
        worker = fleet.start()
        client = redis.Redis.from_url(store.address)
        run, done = Run(), threading.Event()

        messages = encoded(total, 2, parts)

        def produce() -> None:
            try:
                send_paced(messages, broker.address, env["DIALWATCH_CDR_TOPIC"], rate, run)
            finally:
                done.set()

        begun = time.monotonic()
        threading.Thread(target=produce, daemon=True).start()
        topic = env["DIALWATCH_CDR_TOPIC"]
        while not done.is_set():
            run.samples.append(sample(worker, client, topic, run, begun))
            time.sleep(args.sample_s)
        produced_s = time.monotonic() - begun
        finished = False
        deadline = time.monotonic() + 40 * args.minutes * 60
        while time.monotonic() < deadline:
            run.samples.append(sample(worker, client, topic, run, begun))
            if caught_up(client, env["DIALWATCH_KAFKA"], stages(env), parts):
                finished = True
                break
            time.sleep(args.sample_s)
        caught_s = time.monotonic() - begun
        fleet.stop()
        accounted = finished and verify(env)
        over = [s for s in run.samples if s.at_s <= produced_s]
        half = len(over) // 2
        first_peak = max((s.rss_kb for s in over[:half]), default=0)
        second_peak = max((s.rss_kb for s in over[half:]), default=0)
        peak = max(run.samples, key=lambda s: s.rss_kb)
        lag_peak = max((s.metrics_lag or 0 for s in run.samples), default=0)
        health_seen = any(s.health_lag for s in run.samples)
        for s in run.samples[:: max(1, len(run.samples) // 12)]:
            print(
                f"  {s.at_s:7.1f} s  produced {s.produced:>9,}  rss {s.rss_kb / 1024:6.0f} MB  "
                f"redis {s.redis_mb:6.1f} MB  lag (metrics) {s.metrics_lag}  "
                f"lag (/health) {s.health_lag}"
            )
        bounded = peak.rss_kb <= args.rss_bound_mb * 1024
        achieved = total / produced_s
        print(
            f"overload: {total:,} CDRs in {produced_s:.0f} s, {achieved:,.0f} CDRs/s "
            f"({achieved / cap:.1f}x capacity; asked {args.factor:g}x)"
        )
        print(f"peak worker RSS: {peak.rss_kb / 1024:.0f} MB at {peak.at_s:.0f} s")
        print(
            f"RSS peak, first / second half of the overload: {first_peak / 1024:.0f} / "
            f"{second_peak / 1024:.0f} MB; within {args.rss_bound_mb:g} MB: {bounded}"
        )
        print(f"peak state lag: {lag_peak:,} messages; /health showed the lag: {health_seen}")
        print(f"caught up: {finished}, {caught_s - produced_s:.0f} s after the input stopped")
        print(f"ALL-RECORDS-ACCOUNTED: {accounted}")
        print(f"worker logs: {logs}")
        return 0 if accounted and finished and health_seen and bounded else 1
    finally:
        broker.stop()
        store.stop()


if __name__ == "__main__":
    raise SystemExit(main())
