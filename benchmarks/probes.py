"""Latency probes for ``benchmarks.throughput``, each run as its own process.

    python -m benchmarks.probes redis-get URL
    python -m benchmarks.probes alert-latency BOOTSTRAP CDR_TOPIC ALERT_TOPIC PARTITIONS RATE N
    python -m benchmarks.probes worker FETCH_WAIT_MS

The alert consumer asks for a 5 ms fetch wait so that reading the alert adds little.

``redis-get``: another Redis client that GETs one key every 10 ms until SIGTERM, then prints
one JSON object with the count and the median, p99 and maximum round trip in milliseconds.

``alert-latency``: produces live traffic at RATE CDRs a second for as long as it takes to plant
N bulk diallers (normal calls from a pool of 200,000 callers, event time now, one CDR per
message keyed and partitioned by caller like ``streams.tools.simulate.produce``). Each dialler sends
21 unanswered calls to distinct numbers, then 0.5 s later the 22nd, which crosses the 5-minute
``bulk_dialling`` threshold (22). The latency of a dialler is from just before its 22nd CDR is
handed to the producer (no linger) to the moment its alert is read from ALERT_TOPIC. Prints one
JSON object with the latencies' median, p99 and maximum in milliseconds and how many alerts
never came (within 30 s of the last send).

``worker``: ``dialwatch worker`` (settings from DIALWATCH_* as usual) whose Kafka consumers ask
for FETCH_WAIT_MS instead of Faust's fixed 1,500 ms fetch wait. A diagnostic, to tell the
broker's long-poll from dialwatch's own latency.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

DIALLER_CALLS = 22  # bulk_dialling, critical: 22 calls in 5 minutes (class factor 1: mobile)


def percentiles(values: list[float]) -> dict[str, float]:
    """Median, p99 (nearest rank) and maximum, in milliseconds, of values in seconds."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]

    return {
        "p50_ms": round(rank(0.5) * 1000, 3),
        "p99_ms": round(rank(0.99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def redis_get(url: str) -> int:
    import orjson
    import redis

    client = redis.Redis.from_url(url)
    key = f"bench-probe-{random.getrandbits(40):x}"
    client.set(key, b"x" * 64)
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    samples: list[float] = []
    try:
        while not stop:
            started = time.perf_counter()
            client.get(key)
            samples.append(time.perf_counter() - started)
            time.sleep(0.01)
    finally:
        client.delete(key)
        client.close()
    sys.stdout.write(orjson.dumps({"count": len(samples), **percentiles(samples)}).decode())
    sys.stdout.write("\n")
    return 0


def _record(caller: str, callee: str, n: int, at: float, answered: bool) -> dict[str, object]:
    return {
        "cdr_id": f"lat-{caller}-{n}",
        "caller": caller,
        "callee": callee,
        "start_time": datetime.fromtimestamp(int(at), UTC).isoformat(),
        "duration_s": 40 if answered else 0,
        "answered": answered,
        "release_cause": 16 if answered else 19,
        "direction": "outgoing",
    }


def _mobile(rng: random.Random) -> str:
    return f"13{rng.randrange(5, 10)}{rng.randrange(100_000_000):08d}"


async def _alert_latency(
    bootstrap: str, cdr_topic: str, alert_topic: str, partitions: int, rate: float, diallers: int
) -> dict[str, Any]:
    import asyncio

    import orjson
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from streams.topics import partition_for

    rng = random.Random(20261128)
    pool = [_mobile(rng) for _ in range(200_000)]
    dialler_numbers: list[str] = []
    seen = set(pool)
    while len(dialler_numbers) < diallers:
        number = f"138{rng.randrange(100_000_000):08d}"
        if number not in seen:
            seen.add(number)
            dialler_numbers.append(number)

    # A short fetch wait: a broker may hold a fetch for its whole max wait even when data
    # arrives (Tansu does), which would add up to aiokafka's default 500 ms to every reading.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5
    )
    await consumer.start()
    tp = TopicPartition(alert_topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    await consumer.position(tp)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
    await producer.start()

    crossing_sent: dict[str, float] = {}
    alerted: dict[str, float] = {}
    sent = 0

    async def send(record: dict[str, object]) -> None:
        nonlocal sent
        key = str(record["caller"]).encode()
        await producer.send(
            cdr_topic, orjson.dumps(record), key=key, partition=partition_for(key, partitions)
        )
        sent += 1

    async def read_alerts() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for messages in batches.values():
                for message in messages:
                    alert = orjson.loads(message.value)
                    number = alert.get("number")
                    if number in crossing_sent and number not in alerted:
                        alerted[number] = now

    reader = asyncio.create_task(read_alerts())
    t_start = time.time()
    # Dialler calls count towards the rate: N diallers of 22 calls, spread over the run.
    dialler_share = 0.2
    inject_every = DIALLER_CALLS / (rate * dialler_share)
    started = time.monotonic()
    next_dialler = started + 2.0  # two seconds of plain traffic first
    pending: list[tuple[float, str, int]] = []  # (when, caller, calls so far)
    planted = 0
    try:
        while planted < diallers or pending:
            now = time.monotonic()
            target = int((now - started) * rate)
            if now >= next_dialler and planted < diallers:
                caller = dialler_numbers[planted]
                planted += 1
                next_dialler += inject_every
                for n in range(DIALLER_CALLS - 1):
                    await send(_record(caller, _mobile(rng), n, time.time(), False))
                pending.append((now + 0.5, caller, DIALLER_CALLS - 1))
            for item in [p for p in pending if p[0] <= now]:
                pending.remove(item)
                _, caller, n = item
                record = _record(caller, _mobile(rng), n, time.time(), False)
                crossing_sent[caller] = time.time()
                await send(record)
            while sent < target:
                answered = rng.random() < 0.75
                await send(_record(rng.choice(pool), _mobile(rng), sent, time.time(), answered))
            await asyncio.sleep(0.005)
        await producer.flush()
        t_end = time.time()
        deadline = time.monotonic() + 30
        while len(alerted) < len(crossing_sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    # In planting order: if the last quarter is much slower than the first, the worker was
    # falling behind (a growing backlog), not merely slow.
    latencies = [alerted[n] - crossing_sent[n] for n in crossing_sent if n in alerted]
    quarter = max(1, len(latencies) // 4)
    drift = {
        "p50_first_quarter_ms": percentiles(latencies[:quarter]).get("p50_ms"),
        "p50_last_quarter_ms": percentiles(latencies[-quarter:]).get("p50_ms"),
    }
    seconds = t_end - t_start
    return {
        "rate_target": round(rate, 1),
        "rate_sent": round(sent / seconds, 1),
        "cdrs_sent": sent,
        "diallers": len(crossing_sent),
        "alerts": len(latencies),
        "missing": len(crossing_sent) - len(latencies),
        "t_start": t_start,
        "t_end": t_end,
        **percentiles(latencies),
        **drift,
    }


def alert_latency(argv: list[str]) -> int:
    import asyncio

    import orjson

    bootstrap, cdr_topic, alert_topic = argv[0], argv[1], argv[2]
    partitions, rate, diallers = int(argv[3]), float(argv[4]), int(argv[5])
    doc = asyncio.run(_alert_latency(bootstrap, cdr_topic, alert_topic, partitions, rate, diallers))
    sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    return 0


def worker(fetch_wait_ms: int) -> int:
    """``dialwatch worker`` with ``DIALWATCH_FETCH_MAX_WAIT_MS`` set to ``fetch_wait_ms``.

    faust-streaming 0.15 passes a fixed fetch_max_wait_ms=1500; a broker that holds each fetch
    for its whole max wait (Tansu does) then adds up to 1.5 s to every hop.
    """
    from streams.cli import main as cli

    os.environ["DIALWATCH_FETCH_MAX_WAIT_MS"] = str(fetch_wait_ms)
    return cli(["worker"])


def main(argv: list[str]) -> int:
    if argv[:1] == ["redis-get"] and len(argv) == 2:
        return redis_get(argv[1])
    if argv[:1] == ["alert-latency"] and len(argv) == 7:
        return alert_latency(argv[1:])
    if argv[:1] == ["worker"] and len(argv) == 2:
        return worker(int(argv[1]))
    sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
