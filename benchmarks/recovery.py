"""Recovery after a SIGKILL, measured from outside with the shipped consumer-group settings.

``python -m benchmarks.recovery [--partitions 4] [--seed 10]`` starts a Tansu broker and a
redis-server (streams.tools.services), two workers in one group with no DIALWATCH_SESSION_* /
_HEARTBEAT_* / _REBALANCE_* override, and a steady stream on every CDR partition. It kills one
worker with SIGKILL and prints how long until every partition's stored state offset (Redis: the
detection's progress) and its committed offset (the broker: the group's position) moved again;
then it kills the last worker, starts a new one at once (a supervisor's restart) and prints
the same. The issue-17 targets are 10 s and 15 s. Exit 0 when both are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import redis
from kafka import KafkaConsumer, TopicPartition

from config.settings import Settings
from streams.tools import simulate as sim
from streams.tools.scenario import ScenarioSpec, generate_scenario
from streams.tools.services import free_port, start_broker, start_redis
from streams.tools.simulate import default_start
from streams.topics import create_topics

WITH_PEER_S, ALONE_S = 10.0, 15.0
GIVE_UP_S = 40.0


class Fleet:
    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.procs: list[tuple[subprocess.Popen[bytes], int, Path]] = []

    def start(self) -> tuple[subprocess.Popen[bytes], int, Path]:
        port, log = free_port(), self.tmp / f"worker-{len(self.procs) + 1}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker"],
                env={**self.env, "DIALWATCH_WEB_PORT": str(port)},
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        self.procs.append((proc, port, log))
        return proc, port, log

    def stop(self) -> None:
        for proc, _, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def applied(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    found = re.search(r'^dialwatch_cdrs_total\{result="accepted"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def committed(kafka: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) or -1 for p in range(partitions)}
    finally:
        consumer.close()


def stored(client: redis.Redis, prefix: str, partitions: int) -> dict[int, int]:
    out = {}
    for p in range(partitions):
        off = client.hget(f"{prefix}:{{p{p}}}:meta", "off")
        out[p] = int(off) if off is not None else -1
    return out


def recovery(
    kafka: str, client: redis.Redis, env: dict[str, str], partitions: int, killed_at: float
) -> dict[str, float | None]:
    """Seconds from the kill until every partition's stored and committed offsets moved."""
    group, prefix, topic = env["DIALWATCH_APP_ID"], env["DIALWATCH_KEY_PREFIX"], "cdrs"
    before = {
        "stored": stored(client, prefix, partitions),
        "committed": committed(kafka, group, topic, partitions),
    }
    took: dict[str, float | None] = {}
    while len(took) < 2 and time.monotonic() - killed_at < GIVE_UP_S:
        now = {
            "stored": stored(client, prefix, partitions),
            "committed": committed(kafka, group, topic, partitions),
        }
        for name in ("stored", "committed"):
            if name not in took and all(now[name][p] > before[name][p] for p in range(partitions)):
                took[name] = time.monotonic() - killed_at
        time.sleep(0.2)
    return {name: took.get(name) for name in ("stored", "committed")}


def show(what: str, took: dict[str, float | None]) -> str:
    parts = [
        f"{k} {v:.1f} s" if v is not None else f"{k} > {GIVE_UP_S:.0f} s" for k, v in took.items()
    ]
    return f"{what}: " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args(argv)
    parts = args.partitions
    scenario = generate_scenario(
        ScenarioSpec(
            start=default_start(Settings()), seed=args.seed, subscribers=400, hours=4, scale=0.1
        )
    )
    broker, store = start_broker(), start_redis()
    tmp = Path(tempfile.mkdtemp(prefix="dialwatch-recovery-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALWATCH_")}
    env |= {
        "DIALWATCH_KAFKA": broker.address,
        "DIALWATCH_REDIS": store.address,
        "DIALWATCH_APP_ID": "dialwatch-recovery",
        "DIALWATCH_KEY_PREFIX": "rc",
        "DIALWATCH_TOPIC_PARTITIONS": str(parts),
        "DIALWATCH_FETCH_MAX_WAIT_MS": "10",
    }
    defaults = Settings()
    create_topics(
        broker.address,
        {
            defaults.cdr_topic: parts,
            defaults.derived_topic: parts,
            defaults.repartition_topic: parts,
            defaults.complaint_topic: parts,
            defaults.alert_topic: 1,
            defaults.dead_letter_topic: 1,
        },
    )
    fleet, stop = Fleet(env, tmp), threading.Event()
    client = redis.Redis.from_url(store.address)

    def produce() -> None:
        while not stop.is_set():
            for i in range(0, len(scenario.records), 2000):
                if stop.is_set():
                    return
                chunk = scenario.records[i : i + 2000]
                sim.produce(chunk, broker.address, defaults.cdr_topic, parts, 100, rate_per_s=600)

    producer = threading.Thread(target=produce, daemon=True)
    try:
        first, second = fleet.start(), fleet.start()
        producer.start()
        deadline = time.monotonic() + 120
        while not (applied(first[1]) > 0 and applied(second[1]) > 0):
            if time.monotonic() > deadline:
                print("the two workers did not both start applying within 120 s", file=sys.stderr)
                return 1
            time.sleep(0.5)
        time.sleep(5)  # both steady
        killed_at = time.monotonic()
        first[0].kill()
        first[0].wait()
        with_peer = recovery(broker.address, client, env, parts, killed_at)
        print(show("SIGKILL with a peer alive", with_peer), flush=True)
        if None in with_peer.values():
            second[0].send_signal(signal.SIGUSR2)  # the worker logs every await chain
            time.sleep(3)
        time.sleep(5)
        killed_at = time.monotonic()
        second[0].kill()
        second[0].wait()
        fleet.start()
        alone = recovery(broker.address, client, env, parts, killed_at)
        print(show("SIGKILL of the lone worker, restarted at once", alone), flush=True)
        if None in alone.values():
            fleet.procs[-1][0].send_signal(signal.SIGUSR2)  # the worker logs every await chain
            time.sleep(3)
    finally:
        stop.set()
        producer.join(timeout=30)
        fleet.stop()
        client.close()
        broker.stop()
        store.stop()
    print(f"worker logs: {tmp}")
    met = all(v is not None and v <= WITH_PEER_S for v in with_peer.values()) and all(
        v is not None and v <= ALONE_S for v in alone.values()
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
