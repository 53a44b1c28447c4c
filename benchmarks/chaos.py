"""The chaos loop (issue 17 item 4): faults from a seeded plan while workers consume a steady
stream, then the results compared with a fault-free worker run of the same stream.

``python -m benchmarks.chaos --minutes N --seed S [--partitions 4]`` starts a Tansu broker and a
redis-server with an AOF (fsync always), runs one worker over the scenario produced at a steady
pace over N minutes (the fault-free reference: its alert ids), then the same messages again at
the same pace to fresh topics and key prefix, consumed by two workers, while a scheduler
applies, at random times drawn from the seed, one of: SIGKILL a worker and restart it, SIGTERM
a worker and restart it, freeze Redis (SIGSTOP, then SIGCONT), freeze the broker, restart Redis
from its AOF, add a worker (at most three). At the end it prints the number of faults of each
kind, the longest detection gap (stage 1's stored offsets not moving while input was pending),
the worst alert latency (from the moment a record at or after the alert's event time was in
Kafka until the alert was on the alert topic) and whether ``dialwatch verify`` printed
ALL-RECORDS-ACCOUNTED, the alert ids equal the reference's and no id appears twice. Exit 0 only
when all three hold. Replay a run with the same ``--seed`` (and ``--minutes``).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import redis
from kafka import KafkaConsumer

from config.settings import Settings
from streams.tools import simulate as sim
from streams.tools.fleet import Fleet, applied, caught_up, read_topic, repeated_ids
from streams.tools.scenario import ScenarioSpec, generate_scenario
from streams.tools.services import Service, free_port, start_broker, start_redis
from streams.tools.simulate import default_start
from streams.topics import create_topics

KINDS = ("sigkill", "sigterm", "freeze_redis", "freeze_broker", "restart_redis", "add_worker")
BATCH = 100  # records per produced message
CHUNK = 200  # records per paced produce call (the latency clock's resolution)
MAX_WORKERS = 3
CATCH_UP_S = 300.0


@dataclass(frozen=True)
class Fault:
    at_s: float  # seconds after the stream starts
    kind: str
    hold_s: float  # freezes: how long; restarts: the pause before the new worker starts


def plan(seed: int, minutes: float) -> list[Fault]:
    """The faults of a run: one every 6-16 s from 12 s in until 15 s before the stream ends."""
    rng = random.Random(seed)
    faults, at = [], 12.0
    while at < minutes * 60 - 15:
        faults.append(Fault(round(at, 1), rng.choice(KINDS), round(rng.uniform(2, 7), 1)))
        at += rng.uniform(6, 16)
    return faults


def environment(broker: Service, store: Service, name: str, partitions: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALWATCH_")}
    return env | {
        "DIALWATCH_KAFKA": broker.address,
        "DIALWATCH_REDIS": store.address,
        "DIALWATCH_APP_ID": f"dialwatch-{name}",
        "DIALWATCH_KEY_PREFIX": name,
        "DIALWATCH_TOPIC_PARTITIONS": str(partitions),
        "DIALWATCH_CDR_TOPIC": f"cdrs-{name}",
        "DIALWATCH_ALERT_TOPIC": f"alerts-{name}",
        "DIALWATCH_DEAD_LETTER_TOPIC": f"dead-{name}",
        "DIALWATCH_DERIVED_TOPIC": f"derived-{name}",
        "DIALWATCH_REPARTITION_TOPIC": f"repartition-{name}",
        "DIALWATCH_COMPLAINT_TOPIC": f"complaints-{name}",
        "DIALWATCH_FEED_TOPIC": f"feed-{name}",
    }


def create(env: dict[str, str], partitions: int) -> None:
    create_topics(
        env["DIALWATCH_KAFKA"],
        {
            env["DIALWATCH_CDR_TOPIC"]: partitions,
            env["DIALWATCH_DERIVED_TOPIC"]: partitions,
            env["DIALWATCH_REPARTITION_TOPIC"]: partitions,
            env["DIALWATCH_COMPLAINT_TOPIC"]: partitions,
            env["DIALWATCH_ALERT_TOPIC"]: 1,
            env["DIALWATCH_DEAD_LETTER_TOPIC"]: 1,
        },
    )


def stages(env: dict[str, str]) -> list[tuple[str, str]]:
    prefix = env["DIALWATCH_KEY_PREFIX"]
    return [(env["DIALWATCH_CDR_TOPIC"], prefix), (env["DIALWATCH_DERIVED_TOPIC"], f"{prefix}:x")]


def wait_caught_up(
    client: redis.Redis, env: dict[str, str], fleet: Fleet, partitions: int, timeout_s: float
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not fleet.live():
            fleet.start()  # every worker died (it is logged): the run goes on with a new one
        try:
            if caught_up(client, env["DIALWATCH_KAFKA"], stages(env), partitions):
                return True
        except (redis.RedisError, OSError):
            pass
        time.sleep(1)
    return False


def verify(env: dict[str, str]) -> bool:
    done = subprocess.run(
        [
            sys.executable, "-m", "streams", "verify",
            "--topic", env["DIALWATCH_CDR_TOPIC"],
            "--alerts", env["DIALWATCH_ALERT_TOPIC"],
            "--redis", env["DIALWATCH_REDIS"],
            "--prefix", env["DIALWATCH_KEY_PREFIX"],
        ],
        capture_output=True, env=env, timeout=300, text=True,
    )  # fmt: skip
    output = done.stdout + done.stderr
    ok = done.returncode == 0 and "ALL-RECORDS-ACCOUNTED" in output
    if not ok:
        print(output[-3000:], file=sys.stderr)
    return ok


def epoch_s(iso: object) -> float:
    return datetime.fromisoformat(str(iso)).timestamp()


@dataclass
class Watch:
    """What is observed from outside while the faults run."""

    produced: list[tuple[float, float]] = field(default_factory=list)  # (newest start, wall)
    first_seen: dict[str, float] = field(default_factory=dict)  # alert id -> wall time
    event_s: dict[str, float] = field(default_factory=dict)  # alert id -> its event time
    longest_gap_s: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)

    def latency(self, alert_id: str) -> float | None:
        """From the first moment a record at or after the alert's event time was in Kafka."""
        event, seen = self.event_s[alert_id], self.first_seen[alert_id]
        for newest, wall in self.produced:
            if newest >= event:
                return seen - wall
        return None


def watch_alerts(kafka: str, topic: str, watch: Watch) -> None:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", consumer_timeout_ms=500
    )
    try:
        while not watch.stop.is_set():
            for message in consumer:
                alert = orjson.loads(message.value)
                alert_id = str(alert["alert_id"])
                if alert_id not in watch.first_seen:
                    watch.first_seen[alert_id] = time.time()
                    watch.event_s[alert_id] = epoch_s(alert["event_time"])
    except Exception as exc:  # the broker frozen or gone at the end: the watch ends
        print(f"alert watch ended ({type(exc).__name__})", file=sys.stderr)
    finally:
        consumer.close()


def watch_progress(
    url: str, prefix: str, partitions: int, watch: Watch, busy: Callable[[], bool]
) -> None:
    """The longest time stage 1's stored offsets stood still while input was pending."""
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    last_total, since = -1, time.monotonic()
    while not watch.stop.is_set():
        try:
            total = sum(applied(client, prefix, partitions).values())
        except (redis.RedisError, OSError):
            total = last_total
        now = time.monotonic()
        if total != last_total or not busy():
            last_total, since = total, now
        watch.longest_gap_s = max(watch.longest_gap_s, now - since)
        time.sleep(0.25)


def reference_ids(
    broker: Service,
    store: Service,
    records: list[dict[str, object]],
    partitions: int,
    logs: Path,
    rate: float,
) -> dict[str, str] | None:
    """The fault-free run's alert ids, with their detectors."""
    env = environment(broker, store, "ref", partitions)
    create(env, partitions)
    fleet = Fleet(env, logs / "reference")
    fleet.logs.mkdir()
    fleet.start()
    # The same messages at the same pace as the chaos run's: a burst gives other stage-2 ids
    # (docs/recovery.md, "Chaos loop").
    for i in range(0, len(records), CHUNK):
        chunk = records[i : i + CHUNK]
        topic = env["DIALWATCH_CDR_TOPIC"]
        sim.produce(chunk, broker.address, topic, partitions, BATCH, rate_per_s=rate)
    client = redis.Redis.from_url(store.address)
    try:
        if not wait_caught_up(client, env, fleet, partitions, CATCH_UP_S):
            print("the fault-free reference run did not catch up", file=sys.stderr)
            return None
    finally:
        fleet.stop()
        client.close()
    alerts = read_topic(broker.address, env["DIALWATCH_ALERT_TOPIC"])
    if repeated_ids(alerts):
        print("the fault-free reference run repeated alert ids", file=sys.stderr)
        return None
    (logs / "reference-alerts.jsonl").write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in alerts))
    return {str(a["alert_id"]): str(a["detector"]) for a in alerts}


class Chaos:
    """Applies the faults to a fleet and the two services."""

    def __init__(self, fleet: Fleet, broker: Service, store: Service, aof: list[str], seed: int):
        self.fleet, self.broker, self.store, self.aof = fleet, broker, store, aof
        self.rng = random.Random(seed + 1)
        self.done: Counter[str] = Counter()

    def apply(self, fault: Fault) -> None:
        live = self.fleet.live()
        kind = fault.kind
        if kind == "add_worker" and len(live) >= MAX_WORKERS:
            kind = "sigterm"  # three already: one leaves and comes back instead
        if kind in ("sigkill", "sigterm"):
            victim = self.rng.choice(live)
            if kind == "sigkill":
                victim.kill()
            else:
                victim.stop(timeout_s=40)
            time.sleep(fault.hold_s / 3)
            self.fleet.start()
        elif kind == "add_worker":
            self.fleet.start()
        elif kind in ("freeze_redis", "freeze_broker"):
            service = self.store if kind == "freeze_redis" else self.broker
            os.kill(service.proc.pid, signal.SIGSTOP)
            try:
                time.sleep(fault.hold_s)
            finally:
                os.kill(service.proc.pid, signal.SIGCONT)
        elif kind == "restart_redis":
            client = redis.Redis.from_url(self.store.address)
            try:
                client.shutdown()  # the AOF (fsync always) is complete on SHUTDOWN
            except redis.ConnectionError:
                pass
            finally:
                client.close()
            self.store.proc.wait(timeout=30)
            time.sleep(fault.hold_s / 3)
            self.store.stop()  # its temporary directory only: the data live in the AOF's
            self.store = start_redis(self.store.port, self.aof)
        self.done[kind] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--no-faults",
        action="store_true",
        help="two workers and no fault: two fault-free worker runs must give the same ids",
    )
    args = parser.parse_args(argv)
    parts, faults = args.partitions, [] if args.no_faults else plan(args.seed, args.minutes)
    print(f"chaos: seed {args.seed}, {args.minutes:g} minutes, {len(faults)} faults", flush=True)
    hours = max(4, round(2 * args.minutes))
    scenario = generate_scenario(
        ScenarioSpec(
            # Whole days earlier for a long run: every record before now (a record past the
            # clock is rejected as "future" at whatever moment it is read: timing-dependent).
            start=default_start(Settings()) - timedelta(days=hours // 24),
            seed=10,
            subscribers=800,
            hours=hours,
            scale=0.1,
        )
    )
    records = scenario.records
    logs = Path(tempfile.mkdtemp(prefix="dialwatch-chaos-"))
    data = logs / "redis-data"
    data.mkdir()
    aof = ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(data)]
    broker, store = start_broker(), start_redis(free_port(), aof)
    # The reference runs at the same time, on a broker and a Redis of its own (the faults do
    # not reach it): the same messages at the same pace, one worker.
    ref_broker, ref_store = start_broker(), start_redis()
    chaos: Chaos | None = None
    got: list[dict[str, str] | None] = []
    rate = len(records) / (args.minutes * 60)
    started = time.monotonic()
    ref_thread = threading.Thread(
        target=lambda: got.append(reference_ids(ref_broker, ref_store, records, parts, logs, rate)),
        daemon=True,
    )
    try:
        ref_thread.start()
        env = environment(broker, store, f"chaos{args.seed}", parts)
        create(env, parts)
        fleet = Fleet(env, logs)
        fleet.start(), fleet.start()
        watch = Watch()
        producing = threading.Event()
        producing.set()

        def produce() -> None:
            newest = 0.0
            for i in range(0, len(records), CHUNK):
                chunk = records[i : i + CHUNK]
                sim.produce(
                    chunk, broker.address, env["DIALWATCH_CDR_TOPIC"], parts, BATCH, rate_per_s=rate
                )
                newest = max([newest, *(epoch_s(r["start_time"]) for r in chunk)])
                watch.produced.append((newest, time.time()))
            producing.clear()

        threads = [
            threading.Thread(target=produce, daemon=True),
            threading.Thread(
                target=watch_alerts,
                args=(broker.address, env["DIALWATCH_ALERT_TOPIC"], watch),
                daemon=True,
            ),
            threading.Thread(
                target=watch_progress,
                args=(store.address, env["DIALWATCH_KEY_PREFIX"], parts, watch, producing.is_set),
                daemon=True,
            ),
        ]
        for thread in threads:
            thread.start()
        chaos = Chaos(fleet, broker, store, aof, args.seed)
        begun = time.monotonic()
        for fault in faults:
            time.sleep(max(0.0, begun + fault.at_s - time.monotonic()))
            print(
                f"  {time.monotonic() - begun:6.1f} s  {fault.kind} ({fault.hold_s} s)", flush=True
            )
            chaos.apply(fault)
        threads[0].join()
        client = redis.Redis.from_url(chaos.store.address)
        finished = wait_caught_up(client, env, fleet, parts, CATCH_UP_S)
        client.close()
        time.sleep(2)
        watch.stop.set()
        for thread in threads[1:]:
            thread.join(timeout=10)
        fleet.stop()
        ref_thread.join(timeout=CATCH_UP_S + args.minutes * 60)
        reference = got[0] if got else None
        print(f"reference run: {len(reference or ())} alerts in {time.monotonic() - started:.0f} s")
        if reference is None:
            return 1
        alerts = read_topic(broker.address, env["DIALWATCH_ALERT_TOPIC"])
        (logs / "chaos-alerts.jsonl").write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in alerts))
        ids = {str(a["alert_id"]) for a in alerts}
        repeats = repeated_ids(alerts)
        accounted = finished and verify(env | {"DIALWATCH_REDIS": chaos.store.address})
        latencies = [lat for i in watch.first_seen if (lat := watch.latency(i)) is not None]
        print("faults: " + ", ".join(f"{k} {chaos.done[k]}" for k in KINDS))
        print(f"caught up after the stream: {finished}")
        print(f"longest detection gap: {watch.longest_gap_s:.1f} s")
        print(
            f"worst alert latency: {max(latencies, default=0.0):.1f} s over {len(latencies)} alerts"
        )
        print(f"ALL-RECORDS-ACCOUNTED: {accounted}")
        print(
            f"alert ids equal the fault-free run's: {ids == set(reference)} "
            f"({len(ids)} vs {len(reference)}; only here {len(ids - set(reference))}, "
            f"only there {len(set(reference) - ids)})"
        )
        differing = Counter(
            str(a["detector"]) for a in alerts if str(a["alert_id"]) not in reference
        ) + Counter(d for i, d in reference.items() if i not in ids)
        if differing:
            print(f"differing ids by detector: {dict(differing)}")
        print(f"ids published twice: {len(repeats)}")
        print(f"worker logs: {logs}")
        return 0 if accounted and ids == set(reference) and not repeats else 1
    finally:
        if chaos is not None:
            chaos.fleet.stop()
            store = chaos.store
        broker.stop()
        store.stop()
        ref_broker.stop()
        ref_store.stop()


if __name__ == "__main__":
    raise SystemExit(main())
