"""``dialwatch verify``: recount the input independently and compare it with a run's state.

The recount reads the raw input again (the CDR topic from its beginning, every partition, or
CDR files) and tallies each caller's calls per 1-minute and per 10-minute bucket with its own
small code: only parsing (``streams.cdr``) and the spoofing rule (``streams.observe``) are
shared with the engine, because they are the input contract. It then reads the caller stage's
state from Redis (``{prefix}:{p<N>}:n:<number>`` blobs and ``{prefix}:{p<N>}:meta``), decodes
it with ``streams.state.blob.from_blobs`` and compares, per partition and caller:

* the partition meta: last applied offset and newest start_time;
* every bucket the state holds, and every recounted bucket within the retained range (short
  buckets within 60 min of the number's newest call, long ones within 24 h);
* the number's newest call, and the ids it remembers for de-duplication (``seen``);
* numbers missing from Redis (an error unless their key plausibly expired by TTL, which is
  reported apart) and numbers in Redis without an accepted call in the input.

With ``--alerts`` it also reads the alert topic: the same alert_id twice is an error.

Admission is re-implemented here, not imported: per partition, in partition order, a record
older than the newest start_time admitted so far minus ``allowed_lateness_s`` is too late, and
one more than ``max_future_skew_s`` ahead of the clock is in the future. Files are read as
``dialwatch scan`` replays them: one partition (0), all files' records sorted by start_time
(stable), offsets counted from 0 over the records that parsed.

Callee numbers are never kept, so they cannot be printed; differences name callers only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import orjson
from kafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]
from redis.exceptions import RedisError

from config.numbering import NumberingPlan, plan_from_setting
from config.settings import Settings
from streams.cdr import CDR, Reject, decode_message
from streams.files import read_records
from streams.observe import is_spoofed
from streams.state.base import NumberState
from streams.state.blob import from_blobs

HEADLINE = "ALL-RECORDS-ACCOUNTED"
MAX_LISTED = 20
FILE_PARTITION = 0  # dialwatch scan keeps its state in partition 0
SHORT_HORIZON_S = 3_600  # short buckets the caller state keeps behind a number's newest call
LONG_HORIZON_S = 86_400  # long buckets likewise
EXPIRED = "expired"  # the one kind of Difference that is not an error
MGET_CHUNK = 1000


class VerifyError(Exception):
    """The input or the state could not be read at all."""


@dataclass(frozen=True, slots=True)
class Rules:
    """What the recount needs of the run's settings."""

    plan: NumberingPlan  # the run's numbering plan: CDRs are read as the worker read them
    bucket_s: int = 60
    long_bucket_s: int = 600
    lateness_s: int = 1800
    future_skew_s: int = 300
    trunks: tuple[str, ...] = ("intl-",)
    short_horizon_s: int = SHORT_HORIZON_S
    long_horizon_s: int = LONG_HORIZON_S
    now_ms: int | None = None  # the clock of the "future" rule; None: the time of the recount
    tz: tzinfo | None = None  # local times without an offset are read here (DIALWATCH_TIMEZONE)

    @classmethod
    def from_settings(cls, settings: Settings, now_ms: int | None = None) -> Rules:
        return cls(
            plan=plan_from_setting(settings.numbering_plan),
            bucket_s=settings.bucket_s,
            long_bucket_s=settings.long_bucket_s,
            lateness_s=settings.allowed_lateness_s,
            future_skew_s=settings.max_future_skew_s,
            trunks=settings.international_trunks,
            now_ms=now_ms,
            tz=ZoneInfo(settings.timezone),
        )

    @property
    def ttl_ms(self) -> int:
        """How long a number's key outlives its last write: the longest window, the lateness
        and one long bucket (as the store sets it for the default policy)."""
        return (self.long_horizon_s + self.lateness_s + self.long_bucket_s) * 1000


@dataclass(slots=True)
class Calls:
    """One caller's accepted calls on one partition."""

    short: Counter[int] = field(default_factory=Counter)  # 1-minute bucket -> calls
    long: Counter[int] = field(default_factory=Counter)  # 10-minute bucket -> calls
    ids: dict[str, int] = field(default_factory=dict)  # cdr_id -> start_ms
    newest_ms: int = 0
    last_offset: int = -1  # offset of its last accepted call


@dataclass(slots=True)
class PartitionCount:
    newest_ms: int = 0  # newest admitted start_time, as the partition meta should hold it
    last_offset: int = -1  # last offset holding a record, as the meta should hold it
    numbers: dict[str, Calls] = field(default_factory=dict)


@dataclass(slots=True)
class Recount:
    """The independent tally. Feed records with :meth:`add`, partition by partition in order."""

    rules: Rules
    partitions: dict[int, PartitionCount] = field(default_factory=dict)
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    spoofed: int = 0  # counted for their trunk, not their caller
    rejected: Counter[str] = field(default_factory=Counter)
    now_ms: int = 0

    def __post_init__(self) -> None:
        self.now_ms = self.rules.now_ms if self.rules.now_ms is not None else _now_ms()

    def advance(self, partition: int, offset: int) -> PartitionCount:
        """The partition's count, its last offset moved to ``offset`` if that is later."""
        part = self.partitions.get(partition)
        if part is None:
            part = self.partitions[partition] = PartitionCount()
        part.last_offset = max(part.last_offset, offset)
        return part

    def add(self, partition: int, offset: int, rec: CDR | Reject) -> None:
        self.read += 1
        part = self.advance(partition, offset)
        if isinstance(rec, Reject):
            self.rejected[rec.reason] += 1
            return
        start = rec.start_ms
        if start > self.now_ms + self.rules.future_skew_s * 1000:
            self.rejected["future"] += 1
            return
        if start < part.newest_ms - self.rules.lateness_s * 1000:
            self.rejected["too_late"] += 1
            return
        if is_spoofed(rec, self.rules.trunks, self.rules.plan):
            self.spoofed += 1
            return
        part.newest_ms = max(part.newest_ms, start)
        calls = part.numbers.get(rec.caller)
        if calls is None:
            calls = part.numbers[rec.caller] = Calls()
        if rec.cdr_id in calls.ids:
            self.duplicates += 1
            return
        calls.ids[rec.cdr_id] = start
        calls.short[start // (self.rules.bucket_s * 1000)] += 1
        calls.long[start // (self.rules.long_bucket_s * 1000)] += 1
        calls.newest_ms = max(calls.newest_ms, start)
        calls.last_offset = offset
        self.accepted += 1

    def numbers(self) -> int:
        return sum(len(p.numbers) for p in self.partitions.values())


@dataclass(frozen=True, slots=True)
class Meta:
    offset: int
    newest_ms: int


@dataclass(slots=True)
class Stored:
    """The caller stage's state as read from Redis."""

    numbers: dict[tuple[int, str], NumberState] = field(default_factory=dict)
    meta: dict[int, Meta] = field(default_factory=dict)
    undecodable: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Difference:
    kind: str
    detail: str
    partition: int | None = None
    number: str | None = None  # a caller; callees never appear

    @property
    def is_error(self) -> bool:
        return self.kind != EXPIRED

    def __str__(self) -> str:
        where = "" if self.partition is None else f"p{self.partition}"
        if self.number is not None:
            where = f"{where} {self.number}".strip()
        return f"{self.kind:<18} {where + ': ' if where else ''}{self.detail}"


def compare(recount: Recount, state: Stored, tally: Counter[str] | None = None) -> list[Difference]:
    """Every difference between the recount and the stored state (expired keys included, as
    non-errors). ``tally`` receives "numbers" and "buckets" compared."""
    tally = Counter() if tally is None else tally
    diffs: list[Difference] = []
    rules = recount.rules
    by_partition: dict[int, dict[str, NumberState]] = {}
    for (p, number), st in state.numbers.items():
        by_partition.setdefault(p, {})[number] = st
    for p, number in state.undecodable:
        diffs.append(Difference("undecodable", "the window blob does not decode", p, number))
    partitions = sorted(set(recount.partitions) | set(by_partition) | set(state.meta))
    for p in partitions:
        counted = recount.partitions.get(p)
        stored = by_partition.get(p, {})
        meta = state.meta.get(p)
        if counted is None:
            diffs.append(
                Difference(
                    "unexpected_state",
                    f"state for a partition the input does not have ({len(stored)} numbers)",
                    p,
                )
            )
            continue
        if meta is None:
            if counted.last_offset >= 0:  # else nothing was ever applied: no meta either
                diffs.append(Difference("meta_missing", "no partition meta in Redis", p))
        else:
            if meta.offset != counted.last_offset:
                diffs.append(
                    Difference(
                        "offset",
                        f"state reflects offset {meta.offset}, input ends at {counted.last_offset}",
                        p,
                    )
                )
            if meta.newest_ms != counted.newest_ms:
                diffs.append(
                    Difference(
                        "partition_newest",
                        f"state {_when(meta.newest_ms)}, recount {_when(counted.newest_ms)}",
                        p,
                    )
                )
        # Writes to a partition happen in offset order and every write sets the full TTL, so
        # keys can only have expired for numbers whose last call came before every kept one's.
        first_kept = min(
            (c.last_offset for n, c in counted.numbers.items() if n in stored), default=None
        )
        for number in sorted(counted.numbers):
            calls = counted.numbers[number]
            kept = stored.get(number)
            if kept is None:
                diffs.append(_absent(p, number, calls, counted, meta, first_kept, rules))
                continue
            tally["numbers"] += 1
            diffs += _compare_number(p, number, calls, kept, counted.newest_ms, rules, tally)
        for number in sorted(set(stored) - set(counted.numbers)):
            diffs.append(
                Difference(
                    "unexpected_number", "in Redis without an accepted call in the input", p, number
                )
            )
    return diffs


def _absent(
    p: int,
    number: str,
    calls: Calls,
    counted: PartitionCount,
    meta: Meta | None,
    first_kept: int | None,
    rules: Rules,
) -> Difference:
    calls_n = sum(calls.short.values())
    detail = f"{calls_n} accepted calls, newest {_when(calls.newest_ms)}, no key in Redis"
    expired = (
        meta is not None
        and (first_kept is None or calls.last_offset < first_kept)
        and calls.newest_ms < counted.newest_ms - rules.ttl_ms
    )
    if expired:
        return Difference(EXPIRED, detail + " (key expired by TTL)", p, number)
    return Difference("missing_number", detail, p, number)


def _compare_number(
    p: int,
    number: str,
    calls: Calls,
    st: NumberState,
    partition_newest_ms: int,
    rules: Rules,
    tally: Counter[str],
) -> list[Difference]:
    diffs: list[Difference] = []
    if st.newest_ms != calls.newest_ms:
        diffs.append(
            Difference(
                "newest",
                f"newest call: state {_when(st.newest_ms)}, recount {_when(calls.newest_ms)}",
                p,
                number,
            )
        )
    for name, have, want, width_s, horizon_s in (
        ("short", st.short, calls.short, rules.bucket_s, rules.short_horizon_s),
        ("long", st.long, calls.long, rules.long_bucket_s, rules.long_horizon_s),
    ):
        top = calls.newest_ms // (width_s * 1000)
        low = top - horizon_s // width_s  # retained: low < bucket <= top
        for bucket in sorted(set(have) | {b for b in want if b > low}):
            tally["buckets"] += 1
            got = have[bucket][0] if bucket in have else 0
            expected = want.get(bucket, 0)
            if got != expected:
                kind = "bucket" if bucket in have else "missing_bucket"
                diffs.append(
                    Difference(
                        kind,
                        f"{name} bucket {_when(bucket * width_s * 1000)}: "
                        f"state {got} calls, recount {expected}",
                        p,
                        number,
                    )
                )
    hashes = {_id_hash(cdr_id): start for cdr_id, start in calls.ids.items()}
    unknown = sum(1 for h, start in st.seen.items() if hashes.get(h) != start)
    if unknown:
        diffs.append(
            Difference(
                "seen",
                f"{unknown} remembered ids are not among its accepted calls",
                p,
                number,
            )
        )
    # The state forgets an id only once it is older than the lateness horizon behind the
    # partition's newest call, so the ids after that must all be remembered.
    floor = partition_newest_ms - rules.lateness_s * 1000
    forgotten = sum(1 for h, start in hashes.items() if start >= floor and h not in st.seen)
    if forgotten:
        diffs.append(
            Difference(
                "seen",
                f"{forgotten} recent accepted ids are not remembered for de-duplication",
                p,
                number,
            )
        )
    return diffs


def _id_hash(cdr_id: str) -> int:
    """The id hash the stored ``seen`` map is keyed by (the blob format)."""
    return int.from_bytes(hashlib.blake2b(cdr_id.encode(), digest_size=8).digest()) >> 1


def _when(ms: int) -> str:
    if ms <= 0:
        return "none"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- reading the input ---------------------------------------------------------------------


def recount_files(paths: Iterable[str], rules: Rules) -> Recount:
    """The files as ``dialwatch scan`` replays them: one partition, sorted by start_time."""
    recount = Recount(rules)
    records: list[CDR] = []
    for path in paths:
        for rec in read_records(path, rules.plan, rules.tz):
            if isinstance(rec, Reject):
                recount.add(FILE_PARTITION, -1, rec)
            else:
                records.append(rec)
    records.sort(key=lambda r: r.start_ms)
    for offset, rec in enumerate(records):
        recount.add(FILE_PARTITION, offset, rec)
    return recount


def recount_topic(
    bootstrap: str, topic: str, rules: Rules, kafka_options: dict[str, Any] | None = None
) -> Recount:
    recount = Recount(rules)
    for partition, offset, value in consume(bootstrap, topic, kafka_options):
        records = decode_message(value, rules.plan, rules.tz)
        for rec in records:
            recount.add(partition, offset, rec)
        if not records:  # e.g. []: no record, but the state reflects its offset
            recount.advance(partition, offset)
    return recount


def consume(
    bootstrap: str,
    topic: str,
    kafka_options: dict[str, Any] | None = None,
    idle_timeout_s: float = 30.0,
    settle_s: float = 2.0,
) -> Iterator[tuple[int, int, bytes | None]]:
    """(partition, offset, value) of every message of ``topic``, each partition in offset
    order; no consumer group, nothing committed.

    Reading stops once every partition is past the end offset the broker reported at the start
    and nothing more has arrived for ``settle_s``: some brokers (Tansu) report the base offset
    of the last record batch as the end, which is too early.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **(kafka_options or {}),
    )
    try:
        deadline = time.monotonic() + idle_timeout_s
        parts = consumer.partitions_for_topic(topic)
        while not parts:
            if time.monotonic() > deadline:
                raise VerifyError(f"topic {topic} not found")
            time.sleep(0.2)
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        left = set(tps)
        last_data = time.monotonic()
        while True:
            polled = consumer.poll(timeout_ms=200)
            now = time.monotonic()
            if polled:
                last_data = now
            for tp, messages in polled.items():
                for m in messages:
                    yield tp.partition, m.offset, m.value
            left = {tp for tp in left if consumer.position(tp) < end[tp]}
            if not left and now - last_data >= settle_s:
                return
            if left and now - last_data > idle_timeout_s:
                behind = ", ".join(f"p{tp.partition}" for tp in sorted(left))
                raise VerifyError(f"topic {topic}: could not read {behind} to the end")
    finally:
        consumer.close()


@dataclass(slots=True)
class AlertCount:
    total: int = 0
    ids: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)  # "detector/action" -> alerts
    malformed: int = 0

    def add(self, value: bytes | None) -> None:
        self.total += 1
        try:
            doc = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("alert_id"), str):
            self.malformed += 1
            return
        self.ids[doc["alert_id"]] += 1
        self.by_kind[f"{doc.get('detector')}/{doc.get('action')}"] += 1

    def differences(self) -> list[Difference]:
        diffs = [
            Difference("duplicate_alert", f"alert_id {alert_id} published {n} times")
            for alert_id, n in sorted(self.ids.items())
            if n > 1
        ]
        if self.malformed:
            diffs.append(Difference("bad_alert", f"{self.malformed} alerts without an alert_id"))
        return diffs


def count_alerts(
    bootstrap: str, topic: str, kafka_options: dict[str, Any] | None = None
) -> AlertCount:
    alerts = AlertCount()
    for _, _, value in consume(bootstrap, topic, kafka_options):
        alerts.add(value)
    return alerts


# --- reading the state ---------------------------------------------------------------------


def _glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


async def read_state(client: Any, prefix: str) -> Stored:
    """The caller stage's number blobs and partition metas under ``prefix`` (stage 2's keys,
    under ``{prefix}:x:``, do not match)."""
    pattern = _glob_escape(prefix) + ":{p*}:*"
    key_re = re.compile(re.escape(prefix) + r":\{p(\d+)\}:(?:n:(.+)|(meta))\Z", re.DOTALL)
    number_keys: list[tuple[bytes, int, str]] = []
    meta_keys: list[tuple[bytes, int]] = []
    async for raw in client.scan_iter(match=pattern, count=1000):
        key = bytes(raw)
        m = key_re.match(key.decode("utf-8", errors="replace"))
        if m is None:
            continue
        if m.group(3):
            meta_keys.append((key, int(m.group(1))))
        else:
            number_keys.append((key, int(m.group(1)), m.group(2)))
    state = Stored()
    # One MGET per partition and chunk: a partition's keys share a hash slot, so this also
    # works on a Redis Cluster, where MGET may not span slots.
    by_partition: dict[int, list[tuple[bytes, int, str]]] = {}
    for entry in number_keys:
        by_partition.setdefault(entry[1], []).append(entry)
    chunks = [
        keys[i : i + MGET_CHUNK]
        for keys in by_partition.values()
        for i in range(0, len(keys), MGET_CHUNK)
    ]
    for chunk in chunks:
        blobs = await client.mget([k for k, _, _ in chunk])
        for (_, p, number), blob in zip(chunk, blobs, strict=True):
            if blob is None:  # expired between SCAN and MGET
                continue
            try:
                state.numbers[(p, number)] = from_blobs(bytes(blob), None)
            except (ValueError, TypeError, IndexError, KeyError):
                state.undecodable.append((p, number))
    for key, p in meta_keys:
        fields = {bytes(k): bytes(v) for k, v in (await client.hgetall(key)).items()}
        try:
            state.meta[p] = Meta(int(fields.get(b"off", b"-1")), int(fields.get(b"newest", b"0")))
        except ValueError:
            state.undecodable.append((p, "meta"))
    return state


async def read_redis(settings: Settings, url: str, prefix: str) -> Stored:
    from streams.security import redis_client

    client = redis_client(settings, url)
    try:
        return await read_state(client, prefix)
    finally:
        await client.aclose()


# --- the command ---------------------------------------------------------------------------


def run(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    """``dialwatch verify``: 0 when everything is accounted for, 1 on differences, 2 on usage
    or read errors."""
    if bool(args.topic) == bool(args.files):
        print("dialwatch verify: give either --topic or FILES", file=sys.stderr)
        return 2
    url = args.redis or settings.redis
    if not url:
        print("dialwatch verify: give --redis or set DIALWATCH_REDIS", file=sys.stderr)
        return 2
    prefix = args.prefix or settings.key_prefix
    rules = Rules.from_settings(settings)
    try:
        from streams.security import kafka_python_kwargs

        options = kafka_python_kwargs(settings)
        if args.topic:
            recount = recount_topic(settings.kafka, args.topic, rules, options)
        else:
            recount = recount_files(args.files, rules)
        alerts = count_alerts(settings.kafka, args.alerts, options) if args.alerts else None
        deadline = time.monotonic() + max(0.0, args.wait)
        while True:
            tally: Counter[str] = Counter()
            state = asyncio.run(read_redis(settings, url, prefix))
            diffs = compare(recount, state, tally)
            if not any(d.is_error for d in diffs) or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
    except (VerifyError, OSError, RedisError, KafkaError) as exc:
        print(f"dialwatch verify: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if alerts is not None:
        diffs += alerts.differences()
    return report(recount, tally, diffs, alerts, out)


def report(
    recount: Recount,
    tally: Counter[str],
    diffs: list[Difference],
    alerts: AlertCount | None,
    out: TextIO,
) -> int:
    errors = [d for d in diffs if d.is_error]
    expired = [d for d in diffs if not d.is_error]
    if errors:
        out.write(f"DIFFERENCES: {len(errors)}\n")
        for d in errors[:MAX_LISTED]:
            out.write(f"  {d}\n")
        if len(errors) > MAX_LISTED:
            out.write(f"  ... and {len(errors) - MAX_LISTED} more\n")
    else:
        out.write(HEADLINE + "\n")
    rows: list[tuple[str, int]] = [
        ("records read", recount.read),
        ("accepted", recount.accepted),
        ("duplicates", recount.duplicates),
        ("spoofed (to trunk)", recount.spoofed),
    ]
    rows += [(f"rejected {reason}", n) for reason, n in sorted(recount.rejected.items())]
    rows += [
        ("numbers in input", recount.numbers()),
        ("numbers compared", tally["numbers"]),
        ("buckets compared", tally["buckets"]),
        ("numbers expired", len(expired)),
    ]
    if alerts is not None:
        rows += [("alerts", alerts.total), ("distinct alert ids", len(alerts.ids))]
        rows += [(f"alerts {kind}", n) for kind, n in sorted(alerts.by_kind.items())]
    for label, n in rows:
        out.write(f"  {label:<40} {n:>12,}\n")
    for d in expired[:MAX_LISTED]:
        out.write(f"  {d}\n")
    out.flush()
    return 1 if errors else 0
