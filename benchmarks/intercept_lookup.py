"""A switch's interception lookup under full worker load (README "Interception").

    python -m benchmarks.intercept_lookup [--cdrs N] [--json FILE]

Starts Tansu and two redis-servers, produces N scenario-like CDRs (JSON arrays of 500) and runs
``dialwatch worker`` over them twice: with the list on the worker's own Redis, then on its own
Redis (``DIALWATCH_INTERCEPT_REDIS``). Meanwhile a switch-like client does one pipelined
``EXISTS icpt:<caller>`` + ``HEXISTS prot:<callee> <caller>`` per call, every 2 ms, against the
Redis that holds the list, and also idle before the worker starts. A third phase, ``apart``,
stands for the list's Redis on a host of its own, as the README recommends for production: the
broker, the worker's Redis and the worker are pinned to CPU 0, the list's Redis and the switch
to CPU 1 (on this 2-core machine the worker otherwise takes the cores the switch's lookups wait
for). Prints the lookups' p50, p99 and maximum round trip per phase.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import redis

from benchmarks.probes import percentiles
from config.settings import Settings
from streams.tools import services
from streams.tools import simulate as sim
from streams.tools.simulate import default_start
from streams.topics import create_topics

PARTITIONS = 4
PREFIX = "bench"


def lookups(url: str, stop: threading.Event, samples: list[float]) -> None:
    client = redis.Redis.from_url(url)
    rng = random.Random(3)
    base = f"{PREFIX}:{{il}}"
    try:
        while not stop.is_set():
            caller = f"13{rng.randrange(10**9):09d}"
            callee = f"13{rng.randrange(10**9):09d}"
            started = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            pipe.exists(f"{base}:icpt:{caller}")
            pipe.hexists(f"{base}:prot:{callee}", caller)
            pipe.execute()
            samples.append(time.perf_counter() - started)
            time.sleep(0.002)
    finally:
        client.close()


def probe(url: str, seconds: float) -> dict[str, float]:
    stop, samples = threading.Event(), list[float]()
    thread = threading.Thread(target=lookups, args=(url, stop, samples))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return {"count": len(samples), **percentiles(samples)}


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` (threads started later inherit it) onto ``cpus``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


def caught_up(main: redis.Redis, prefix: str, ends: dict[int, int]) -> bool:
    for p, end in ends.items():
        off = main.hget(f"{prefix}:{{p{p}}}:meta", "off")
        if off is None or int(off) + 1 < end:
            return False
    return True


def phase(
    name: str,
    bootstrap: str,
    main_url: str,
    list_url: str | None,
    records: list[Any],
    log: Path,
    worker_cpus: set[int] | None = None,
) -> dict[str, Any]:
    tag = f"{name}-{random.getrandbits(24):x}"
    topic = f"cdrs-{tag}"
    create_topics(bootstrap, {topic: PARTITIONS, f"alerts-{tag}": 1})
    sim.produce(records, bootstrap, topic, PARTITIONS, batch_size=500)
    env = {
        **os.environ,
        "DIALWATCH_KAFKA": bootstrap,
        "DIALWATCH_REDIS": main_url,
        "DIALWATCH_CDR_TOPIC": topic,
        "DIALWATCH_ALERT_TOPIC": f"alerts-{tag}",
        "DIALWATCH_DEAD_LETTER_TOPIC": f"dead-{tag}",
        "DIALWATCH_DERIVED_TOPIC": f"derived-{tag}",
        "DIALWATCH_REPARTITION_TOPIC": f"repartition-{tag}",
        "DIALWATCH_COMPLAINT_TOPIC": f"complaints-{tag}",
        "DIALWATCH_AUDIT_TOPIC": f"audit-{tag}",
        "DIALWATCH_INTERCEPTION_TOPIC": f"icpt-{tag}",
        "DIALWATCH_APP_ID": f"bench-{tag}",
        "DIALWATCH_KEY_PREFIX": PREFIX if list_url is None else f"{PREFIX}-{tag}",
        "DIALWATCH_TOPIC_PARTITIONS": str(PARTITIONS),
        "DIALWATCH_WEB_PORT": str(services.free_port()),
        "DIALWATCH_FETCH_MAX_WAIT_MS": "10",
        "DIALWATCH_LOG_LEVEL": "warning",
    }
    if list_url is not None:
        # The list keeps the switch's prefix on its own Redis; the window state another.
        env["DIALWATCH_INTERCEPT_REDIS"] = list_url
    prefix = env["DIALWATCH_KEY_PREFIX"]
    target = list_url or main_url
    main = redis.Redis.from_url(main_url)
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    ends = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    consumer.close()
    stop, samples = threading.Event(), list[float]()
    with log.open("ab") as fh:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"], env=env, stdout=fh, stderr=fh
        )
    if worker_cpus is not None:
        pin(worker.pid, worker_cpus)
    started = time.monotonic()
    try:
        while main.hget(f"{prefix}:{{p0}}:meta", "off") is None:  # the first batch applied
            assert worker.poll() is None, log.read_text()[-2000:]
            time.sleep(0.05)
        thread = threading.Thread(target=lookups, args=(target, stop, samples))
        thread.start()
        while not caught_up(main, prefix, ends):
            assert worker.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() - started < 900
            time.sleep(0.2)
        stop.set()
        thread.join()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    busy = time.monotonic() - started
    listed = len(list(redis.Redis.from_url(target).scan_iter(f"{prefix}:{{il}}:icpt:*")))
    return {
        "phase": name,
        "worker_s": round(busy, 1),
        "listed": listed,
        "lookups": {"count": len(samples), **percentiles(samples)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdrs", type=int, default=200_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    spec = sim.SimSpec(
        start=default_start(Settings()), seed=7, hours=8, subscribers=20_000, bulk_diallers=20
    )
    records, _ = sim.generate(spec)
    records = records[: args.cdrs]
    broker, main_redis, list_redis = (
        services.start_broker(),
        services.start_redis(),
        services.start_redis(),
    )
    log = Path("/tmp") / f"intercept-lookup-{os.getpid()}.log"
    try:
        out: dict[str, Any] = {"cdrs": len(records), "idle": probe(main_redis.address, 5)}
        out["shared"] = phase("shared", broker.address, main_redis.address, None, records, log)
        out["own"] = phase(
            "own", broker.address, main_redis.address, list_redis.address, records, log
        )
        everything = os.sched_getaffinity(0)
        if len(everything) >= 2:
            pin(broker.proc.pid, {0})
            pin(main_redis.proc.pid, {0})
            pin(list_redis.proc.pid, {1})
            pin(os.getpid(), {1})
            try:
                out["apart"] = phase(
                    "apart",
                    broker.address,
                    main_redis.address,
                    list_redis.address,
                    records,
                    log,
                    worker_cpus={0},
                )
            finally:
                for pid in (broker.proc.pid, main_redis.proc.pid, list_redis.proc.pid):
                    pin(pid, everything)
                pin(os.getpid(), everything)
    finally:
        for service in (broker, main_redis, list_redis):
            service.stop()
    text = orjson.dumps(out, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
