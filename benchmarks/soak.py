"""A bounded soak: does memory stay flat once the windows are full, for a steady stream?

    python -m benchmarks.soak [--minutes 10] [--subscribers 20000] [--days 2] [--partitions 4]
                              [--kafka HOST:PORT] [--redis URL] [--json PATH] [--sample-s 10]
                              [--bulk-diallers N]

One broker (Tansu) and one redis-server are started on free loopback ports unless --kafka and
--redis name existing ones (benchmarks.throughput.services), and the real worker
(``python -m streams worker``, Redis store, both stages) runs as a subprocess on its own topics,
app id and key prefix (benchmarks.throughput.WorkerRun), logging to a temporary directory.

The traffic is ``streams.tools.simulate``'s steady population (--subscribers normal subscribers
and a few bulk diallers, no near miss) over --days of event time ending about now, sorted by
start_time. It is produced in real time, compressed: --days of event time go by in --minutes of
wall time, so every record is already in the past when it is sent (the worker rejects records
from the future). Messages are JSON arrays of about 200 CDRs whose callers share one partition
(``streams.tools.simulate.batch_by_partition``).

Every --sample-s seconds one line is printed: wall seconds, the event time reached (day and
hour since the start of the traffic), CDRs produced, CDRs the worker counted
(``dialwatch_cdrs_total`` on its /metrics) and the lag between the two, the worker's VmRSS,
Redis ``used_memory`` and ``DBSIZE``. Two diagnostics go with them: the distinct subjects (caller
numbers, callees, blocks) in the traffic so far, and how many of them were seen within their
window key's TTL in event time, i.e. the keys Redis would hold if its TTLs ran on event time.

The windows are full once event time is past the longest window key TTL (the longest window, the
allowed lateness and one long bucket: ``Engine.window_ttl_ms()``, 24 h 40 min by default). Over
the samples after that, the worker RSS, Redis used_memory and the Redis key count each get their
first, last, min, max and growth (last - first) / first; the verdict is FLAT if each grew less
than 10 %, else GROWING and which. Once everything is sent, the command waits (120 s at most)
until the worker has counted every CDR.

Redis TTLs run on wall time. With days compressed into minutes, the worker runs with
``DIALWATCH_KEY_TTL_SCALE`` = 1 / the compression, so a window key lives as long in event time
as it would in production (``--wall-ttl`` keeps production lifetimes: then no key expires during
the run and the key count follows every subject seen; compare it with the live-subject column).

The exit code is 0 whatever the verdict, 1 when the worker died or did not catch up (its log
tail is printed, numbers masked), 130 on Ctrl-C. The services and the worker are stopped in
every case.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import redis as redis_py
from kafka import KafkaProducer  # type: ignore[import-untyped, unused-ignore]

from benchmarks.throughput import WorkerRun, _tail, flow_started, machine, services
from config.numbering import CHINA
from config.settings import Settings
from streams.cdr import CDR, parse_record
from streams.factory import build_engines
from streams.items import CALLER_KINDS, store_key
from streams.observe import caller_obs, derived_obs
from streams.tools import simulate as sim
from streams.topics import create_topics

BATCH = 200  # CDRs per message
GROWTH_LIMIT = 0.10  # FLAT: each figure grew less than this over the filled phase
READY_S = 120.0  # for the worker to join its group and seek its partitions
CATCH_UP_S = 120.0  # for the worker to count every CDR once everything is sent
EARLY_S = 0.02  # a record may go this much ahead of its paced wall time (fewer sleeps)
FIGURES = (
    ("worker_rss_kb", "worker RSS"),
    ("redis_used_memory", "Redis used_memory"),
    ("redis_keys", "Redis keys"),
)
_NUMBER = re.compile(r"(?<!\d)\+?\d{7,15}(?!\d)")


def masked(text: str) -> str:
    """``text`` with anything that looks like a phone number replaced."""
    return _NUMBER.sub("<number>", text)


# --------------------------------------------------------------------------- traffic


@dataclass(frozen=True)
class Traffic:
    """The records in start_time order, and what pacing and the diagnostics need of them."""

    records: list[dict[str, object]]
    start_ms: list[int]  # event time of each record, epoch ms
    # cdr_id -> (event time, epoch ms; the store keys of the subjects the record observes)
    index: dict[str, tuple[int, tuple[str, ...]]]
    origin_ms: int  # the traffic's start
    speed: float  # event seconds per wall second


def window_ttls_ms(settings: Settings) -> tuple[int, int]:
    """(stage 1, stage 2) window key TTLs of the worker's engines (built here over memory)."""
    caller, derived = build_engines(settings.with_(redis=None))
    return caller.window_ttl_ms(), derived.window_ttl_ms()


def parsed(record: Mapping[str, object]) -> CDR:
    cdr = parse_record(record, CHINA)
    if not isinstance(cdr, CDR):
        raise ValueError(f"the simulator wrote an invalid record: {cdr.reason}")
    return cdr


def subject_keys(cdr: CDR, trunks: tuple[str, ...]) -> tuple[str, ...]:
    """The store keys of the subjects one CDR is an observation of (both stages)."""
    observations = [caller_obs(cdr, trunks, CHINA), *derived_obs([cdr], trunks, 0, CHINA)]
    return tuple(store_key(o.kind, o.subject) for o in observations if o is not None)


def make_traffic(args: argparse.Namespace, settings: Settings) -> Traffic:
    """--days of a steady population ending now (in the worker's time zone), sorted."""
    start = (datetime.now(ZoneInfo(settings.timezone)) - timedelta(days=args.days)).replace(
        microsecond=0
    )
    spec = sim.SimSpec(
        start=start,
        hours=24 * args.days,
        subscribers=args.subscribers,
        bulk_diallers=bulk_diallers(args),
        near_miss=0,
    )
    generated, _ = sim.generate(spec)
    timed = sorted(((parsed(r), r) for r in generated), key=_start_ms)
    trunks = settings.international_trunks
    return Traffic(
        records=[r for _, r in timed],
        start_ms=[cdr.start_ms for cdr, _ in timed],
        index={cdr.cdr_id: (cdr.start_ms, subject_keys(cdr, trunks)) for cdr, _ in timed},
        origin_ms=int(start.timestamp() * 1000),
        speed=args.days * 86400 / (args.minutes * 60),
    )


def _start_ms(item: tuple[CDR, dict[str, object]]) -> int:
    return item[0].start_ms


def bulk_diallers(args: argparse.Namespace) -> int:
    """--bulk-diallers, else one per 10,000 subscribers (at least one)."""
    if args.bulk_diallers is not None:
        return int(args.bulk_diallers)
    return max(1, round(int(args.subscribers) / 10_000))


# --------------------------------------------------------------------------- producing


@dataclass
class Progress:
    """What the producer thread has sent; read by the sampler under ``lock``."""

    produced: int = 0
    event_ms: int = 0  # newest start_time sent
    done: bool = False
    error: BaseException | None = None
    last_seen: dict[str, int] = field(default_factory=dict)  # store key -> newest event ms
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self, batch: Iterable[Mapping[str, object]], traffic: Traffic) -> None:
        with self.lock:
            for record in batch:
                at, keys = traffic.index[str(record["cdr_id"])]
                for key in keys:
                    self.last_seen[key] = at
                self.event_ms = max(self.event_ms, at)
                self.produced += 1

    def subjects(self, ttls_ms: tuple[int, int]) -> tuple[int, int, int, int]:
        """(produced, event ms, subjects seen, subjects seen within their key's TTL)."""
        with self.lock:
            front = self.event_ms
            live = sum(
                1
                for key, at in self.last_seen.items()
                if at >= front - ttls_ms[0 if _stage_one(key) else 1]
            )
            return self.produced, front, len(self.last_seen), live


def _stage_one(key: str) -> bool:
    kind, sep, _ = key.partition(":")
    return not sep or kind in CALLER_KINDS


def paced(traffic: Traffic, t0: float, stop: threading.Event) -> Iterator[dict[str, object]]:
    """The records, each no earlier than its event time compressed onto the wall clock."""
    for at, record in zip(traffic.start_ms, traffic.records, strict=True):
        ahead = t0 + (at - traffic.origin_ms) / 1000 / traffic.speed - time.monotonic()
        if (ahead > EARLY_S and stop.wait(ahead)) or stop.is_set():
            return
        yield record


def produce_paced(
    traffic: Traffic,
    kafka: str,
    topic: str,
    partitions: int,
    progress: Progress,
    t0: float,
    stop: threading.Event,
) -> None:
    """Send the paced records as batches by caller partition (as ``simulate.produce`` does with
    ``batch_size > 1``), counting each batch once handed to the producer."""
    producer = KafkaProducer(bootstrap_servers=kafka, linger_ms=5, acks="all")
    errors: list[BaseException] = []
    try:
        batches = sim.batch_by_partition(paced(traffic, t0, stop), partitions, BATCH)
        for partition, batch in batches:
            future = producer.send(topic, value=orjson.dumps(batch), partition=partition)
            future.add_errback(errors.append)
            progress.sent(batch, traffic)
            if errors:
                raise RuntimeError("a Kafka message failed") from errors[0]
        producer.flush()
    finally:
        producer.close(timeout=10)
    if errors:
        raise RuntimeError(f"{len(errors)} Kafka messages failed") from errors[0]


def start_producer(
    traffic: Traffic, kafka: str, topic: str, partitions: int, stop: threading.Event
) -> Progress:
    """Run ``produce_paced`` in a daemon thread from now; its outcome lands in the Progress."""
    progress = Progress()
    t0 = time.monotonic()

    def run() -> None:
        try:
            produce_paced(traffic, kafka, topic, partitions, progress, t0, stop)
        except BaseException as exc:
            progress.error = exc
        finally:
            progress.done = True

    threading.Thread(target=run, name="soak-producer", daemon=True).start()
    return progress


# --------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class Sample:
    wall_s: float
    event_h: float  # event time reached, hours since the start of the traffic
    produced: int
    applied: int  # dialwatch_cdrs_total, every result
    worker_rss_kb: int
    redis_used_memory: int
    redis_keys: int
    subjects: int  # distinct subjects in the traffic sent so far
    live_subjects: int  # of which seen within their window key's TTL in event time
    filled: bool  # event time past the longest window key TTL

    @property
    def lag(self) -> int:
        return self.produced - self.applied

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lag": self.lag}


def vm_rss_kb(pid: int) -> int:
    """VmRSS of a running process, in KiB (0 when the kernel does not say)."""
    with open(f"/proc/{pid}/status") as fh:
        for row in fh:
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    return 0


@dataclass
class Sampler:
    worker: WorkerRun
    redis: redis_py.Redis
    progress: Progress
    traffic: Traffic
    ttls_ms: tuple[int, int]
    t0: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)

    def take(self) -> Sample:
        produced, event_ms, subjects, live = self.progress.subjects(self.ttls_ms)
        applied = self.worker.counts()[0]
        memory = self.redis.info("memory")
        event_h = max(0, event_ms - self.traffic.origin_ms) / 3_600_000
        sample = Sample(
            wall_s=round(time.monotonic() - self.t0, 1),
            event_h=round(event_h, 3),
            produced=produced,
            applied=applied,
            worker_rss_kb=vm_rss_kb(self.worker.proc.pid),
            redis_used_memory=int(memory["used_memory"]),
            redis_keys=int(self.redis.dbsize()),
            subjects=subjects,
            live_subjects=live,
            filled=event_h * 3_600_000 > max(self.ttls_ms),
        )
        self.samples.append(sample)
        print(line(sample), flush=True)
        return sample


def watch(sampler: Sampler, sample_s: float) -> bool:
    """Sample every ``sample_s`` while the producer runs, then until the worker has counted
    everything (CATCH_UP_S at most), ending with one last sample. Whether it caught up."""
    progress, worker = sampler.progress, sampler.worker
    next_at = sampler.t0 + sample_s
    deadline: float | None = None
    while True:
        worker.alive()
        if progress.error is not None:
            raise RuntimeError(f"producing failed: {progress.error!r}") from progress.error
        now = time.monotonic()
        if progress.done and deadline is None:
            deadline = now + CATCH_UP_S
        if deadline is not None and (worker.counts()[0] >= progress.produced or now > deadline):
            last = sampler.take()
            return last.applied >= last.produced
        if now >= next_at:
            sampler.take()
            next_at += sample_s
        time.sleep(0.25)


def wait_ready(worker: WorkerRun) -> None:
    """Until the worker has joined and sought its partitions (its log says so)."""
    deadline = time.monotonic() + READY_S
    while flow_started(worker.log) is None:
        worker.alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker was not consuming after {READY_S:.0f} s")
        time.sleep(0.2)


# --------------------------------------------------------------------------- report


def event_label(hours: float) -> str:
    """Day (from 1) and hour:minute into it, since the start of the traffic."""
    minutes = round(hours * 60)
    return f"d{minutes // 1440 + 1} {minutes % 1440 // 60:02d}:{minutes % 60:02d}"


COLUMNS = (
    f"{'wall s':>7} {'event':>9} {'produced':>10} {'applied':>10} {'lag':>7} "
    f"{'RSS MB':>7} {'Redis MB':>8} {'keys':>9} {'subjects':>9} {'live':>8}"
)


def line(s: Sample) -> str:
    return (
        f"{s.wall_s:>7.0f} {event_label(s.event_h):>8}{'*' if s.filled else ' '} "
        f"{s.produced:>10,} {s.applied:>10,} {s.lag:>7,} {s.worker_rss_kb / 1024:>7.1f} "
        f"{s.redis_used_memory / 2**20:>8.1f} {s.redis_keys:>9,} {s.subjects:>9,} "
        f"{s.live_subjects:>8,}"
    )


def table(samples: list[Sample]) -> str:
    return "\n".join([COLUMNS, "-" * len(COLUMNS), *(line(s) for s in samples)])


def growth(values: list[int]) -> dict[str, Any]:
    first, last = values[0], values[-1]
    return {
        "first": first,
        "last": last,
        "min": min(values),
        "max": max(values),
        "growth": round((last - first) / first, 4) if first > 0 else None,
    }


def verdict(samples: list[Sample], filled_from_h: float) -> dict[str, Any]:
    """FLAT / GROWING over the samples taken after the windows filled."""
    filled = [s for s in samples if s.filled]
    doc: dict[str, Any] = {"filled_from_event_h": round(filled_from_h, 3)}
    doc["filled_samples"] = len(filled)
    if len(filled) < 2:
        doc["verdict"] = "UNDECIDED: fewer than 2 samples after the windows filled"
        return doc
    doc["figures"] = {name: growth([getattr(s, name) for s in filled]) for name, _ in FIGURES}
    growing = [
        label
        for name, label in FIGURES
        if doc["figures"][name]["growth"] is None or doc["figures"][name]["growth"] >= GROWTH_LIMIT
    ]
    doc["verdict"] = "FLAT" if not growing else "GROWING: " + ", ".join(growing)
    return doc


def _unit(name: str, value: int) -> str:
    if name == "worker_rss_kb":
        return f"{value / 1024:.1f} MB"
    if name == "redis_used_memory":
        return f"{value / 2**20:.1f} MB"
    return f"{value:,}"


def summary(doc: dict[str, Any], samples: list[Sample]) -> str:
    lines = [
        f"filled phase: event time past {doc['filled_from_event_h']:.2f} h "
        f"(marked *), {doc['filled_samples']} samples"
    ]
    for name, label in FIGURES:
        g = doc.get("figures", {}).get(name)
        if g is None:
            continue
        pct = "n/a" if g["growth"] is None else f"{g['growth']:+.1%}"
        lines.append(
            f"{label:18} first {_unit(name, g['first']):>11}  last {_unit(name, g['last']):>11}"
            f"  min {_unit(name, g['min']):>11}  max {_unit(name, g['max']):>11}  growth {pct}"
        )
    lines.append(doc["verdict"])
    if samples:
        worst = max(samples, key=lambda s: s.lag)
        last = samples[-1]
        lines.append(
            f"kept up: largest lag {worst.lag:,} at {worst.wall_s:.0f} s; at the end "
            f"{last.applied:,} of {last.produced:,} CDRs counted"
            + ("" if last.applied >= last.produced else " (NOT caught up)")
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="wall time of the stream")
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--days", type=float, default=2.0, help="event time of the stream")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--kafka", help="bootstrap servers of an existing broker")
    parser.add_argument("--redis", help="URL of an existing Redis")
    parser.add_argument("--json", type=Path, help="write the samples and verdict here")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--bulk-diallers", type=int, help="default: one per 10,000 subscribers")
    parser.add_argument(
        "--wall-ttl", action="store_true", help="keep production key lifetimes (wall clock)"
    )
    args = parser.parse_args(argv)
    if min(args.minutes, args.days, args.sample_s) <= 0 or args.partitions < 1:
        parser.error("--minutes, --days, --sample-s and --partitions must be positive")
    if args.subscribers < 1:
        parser.error("--subscribers must be positive")
    return args


def soak(
    args: argparse.Namespace, traffic: Traffic, ttls_ms: tuple[int, int], samples: list[Sample]
) -> None:
    """Services, worker and paced producer, sampled into ``samples`` until the worker caught
    up. Raises RuntimeError (log tail included) if the worker died or fell behind for good."""
    stop = threading.Event()
    run = uuid.uuid4().hex[:8]
    with (
        tempfile.TemporaryDirectory(prefix="dialwatch-soak-") as tmp,
        services(args) as (kafka, redis_url, _),
    ):
        workdir = Path(tmp)
        allowlist = workdir / "allowlist.txt"
        allowlist.write_text("")
        topic = f"soak-{run}-cdrs"
        create_topics(kafka, {topic: args.partitions})
        scaled = {} if args.wall_ttl else {"DIALWATCH_KEY_TTL_SCALE": f"{1 / traffic.speed:.9f}"}
        worker = WorkerRun(
            kafka, redis_url, topic, args.partitions, allowlist, workdir, "worker", scaled
        )
        client = redis_py.Redis.from_url(redis_url)
        try:
            wait_ready(worker)
            print(f"worker ready; producing for {args.minutes:g} min", file=sys.stderr)
            progress = start_producer(traffic, kafka, topic, args.partitions, stop)
            sampler = Sampler(worker, client, progress, traffic, ttls_ms, samples=samples)
            print(COLUMNS, flush=True)
            if not watch(sampler, args.sample_s):
                raise RuntimeError(
                    f"the worker did not catch up within {CATCH_UP_S:.0f} s: {_tail(worker.log)}"
                )
        finally:
            stop.set()
            worker.stop()
            client.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_env()
    ttls_ms = window_ttls_ms(settings)
    began = time.perf_counter()
    traffic = make_traffic(args, settings)
    subjects = {key for _, keys in traffic.index.values() for key in keys}
    print(
        f"{len(traffic.records):,} records ({len(subjects):,} subjects) generated in "
        f"{time.perf_counter() - began:.1f} s; event time runs x{traffic.speed:,.0f}",
        file=sys.stderr,
    )
    report: dict[str, Any] = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(
            ["python -m benchmarks.soak", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": machine(),
        "loadavg_before": round(os.getloadavg()[0], 2),
        "settings": {
            **{k: v for k, v in vars(args).items() if k not in ("json", "kafka", "redis")},
            "bulk_diallers": bulk_diallers(args),
            "batch": BATCH,
            "window_ttl_ms": list(ttls_ms),
        },
        "records": len(traffic.records),
    }
    failure: str | None = None
    samples: list[Sample] = []
    try:
        soak(args, traffic, ttls_ms, samples)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the worker died, fell behind, or a service failed
        failure = masked(f"{type(exc).__name__}: {exc}")
    doc = verdict(samples, max(ttls_ms) / 3_600_000)
    print(table(samples))
    print(summary(doc, samples))
    report.update(
        loadavg_after=round(os.getloadavg()[0], 2),
        samples=[s.as_dict() for s in samples],
        produced=samples[-1].produced if samples else 0,
        applied=samples[-1].applied if samples else 0,
        caught_up=bool(samples) and samples[-1].applied >= samples[-1].produced,
        error=failure,
        **doc,
    )
    if args.json:
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    if failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
