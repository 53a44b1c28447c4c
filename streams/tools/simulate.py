"""Deterministic synthetic CDR traffic: normal subscribers, bulk diallers and near misses.

Everything random comes from ``random.Random`` instances seeded from ``SimSpec.seed``, so one spec
always yields byte-identical records. Each part of the traffic has its own stream, so adding a bulk
dialler or a near miss leaves the normal subscribers' calls unchanged.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import partial
from pathlib import Path
from typing import IO, Final, TypeVar, cast
from zoneinfo import ZoneInfo

import orjson
from kafka import KafkaProducer  # type: ignore[import-untyped, unused-ignore]

from config.settings import Settings
from streams.errors import UsageError
from streams.topics import partition_for

NORMAL: Final = "normal"
BULK_DIALLER: Final = "bulk_dialler"
NEAR_MISS: Final = "near_miss"

CDR_FIELDS: Final = (
    "cdr_id",
    "caller",
    "callee",
    "start_time",
    "duration_s",
    "answered",
    "release_cause",
    "direction",
)

# Q.850 release causes.
NORMAL_CLEARING: Final = 16
BUSY: Final = 17
NO_USER_RESPONDING: Final = 18
NO_ANSWER: Final = 19
REJECTED: Final = 21
UNALLOCATED: Final = 1

# A near miss dials like a bulk dialler but stays just under every level that intercepts (the
# default policy, mobile class): at most 21 calls in any 5 minutes (bulk dialling: 22), 29 in
# any hour (robocall: 30) and 249 in the day (the quota: 250). One cycle of 72 minutes is a burst
# of 21 calls within 3.5 minutes, then 8 calls 6.5 minutes apart; the next burst follows 17.5
# minutes later, so that no hour holds calls of two bursts or more than 8 of the others.
NEAR_MISS_BURST: Final = 21
NEAR_MISS_PER_HOUR: Final = 29
NEAR_MISS_PER_DAY: Final = 249
_NEAR_MISS_CYCLE_S: Final = 72 * 60
_NEAR_MISS_BURST_GAP_S: Final = 10  # a burst call every 10 s, jittered by up to 5 s
_NEAR_MISS_STEADY_S: Final = (9 * 60, 390)  # first of the 8 others, then their spacing
_NEAR_MISS_CYCLES: Final = NEAR_MISS_PER_DAY // NEAR_MISS_PER_HOUR  # 8: 232 calls
# No ordinary call of a near-miss number within an hour of its dialling.
_NEAR_MISS_GUARD_S: Final = 3600

_MOBILE_PREFIXES: Final = (
    *(f"13{d}" for d in range(10)),
    *("150", "151", "152", "153", "155", "156", "157", "158", "159"),
    *(f"18{d}" for d in range(10)),
)
_MVNO_PREFIXES: Final = ("170", "171")
_MVNO_SHARE: Final = 0.04

_NORMAL_CAUSES: Final = (
    NORMAL_CLEARING,
    NO_ANSWER,
    BUSY,
    NO_USER_RESPONDING,
    REJECTED,
    UNALLOCATED,
)
_NORMAL_CUM: Final = (0.75, 0.85, 0.91, 0.96, 0.99, 1.0)
_BULK_CAUSES: Final = (NORMAL_CLEARING, NO_ANSWER, NO_USER_RESPONDING, BUSY, REJECTED, UNALLOCATED)
_BULK_CUM: Final = (0.15, 0.50, 0.72, 0.88, 0.96, 1.0)

_ACTIVITY_SIGMA: Final = 0.6

R = TypeVar("R", bound=Mapping[str, object])


@dataclass(frozen=True, slots=True)
class SimSpec:
    start: datetime
    seed: int = 7
    hours: float = 8.0
    subscribers: int = 2000
    calls_per_day: float = 10.0
    bulk_diallers: int = 2
    bulk_rate: int = 260
    bulk_period_s: int = 2400
    near_miss: int = 1
    late_fraction: float = 0.0
    max_late_s: int = 900

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")
        if not self.hours * 3600 >= 1:
            raise ValueError("hours must cover at least one second")
        for name in ("subscribers", "bulk_diallers", "near_miss", "max_late_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.calls_per_day < 0:
            raise ValueError("calls_per_day must not be negative")
        if self.bulk_rate <= 0 or self.bulk_period_s <= 0:
            raise ValueError("bulk_rate and bulk_period_s must be positive")
        if not 0.0 <= self.late_fraction <= 1.0:
            raise ValueError("late_fraction must be within [0, 1]")

    @property
    def period_s(self) -> int:
        return max(1, round(self.hours * 3600))


@dataclass(frozen=True, slots=True)
class Label:
    number: str
    role: str  # NORMAL | BULK_DIALLER | NEAR_MISS


# (offset in seconds from the start, tie-breaker, caller, callee, release cause, duration)
_Call = tuple[int, int, str, str, int, int]


def _rng(seed: int, stream: str) -> random.Random:
    # A str seed is hashed with SHA-512 by random.Random, so this is stable across processes.
    return random.Random(f"dialwatch.simulate/{seed}/{stream}")


def generate(spec: SimSpec) -> tuple[list[dict[str, object]], list[Label]]:
    """All CDRs of the simulated period in delivery order, plus labels.

    Labels list every bulk dialler and near-miss number; numbers without a label are normal.
    Bulk diallers and near misses come on top of ``spec.subscribers`` normal subscribers.
    """
    period = spec.period_s
    calls: list[_Call] = []
    taken: set[str] = set()

    rng = _rng(spec.seed, NORMAL)
    subscribers = _unique_numbers(spec.subscribers, taken, partial(_mobile, rng))
    per_subscriber = spec.calls_per_day * period / 86400
    sigma = _ACTIVITY_SIGMA
    for number in subscribers:
        activity = rng.lognormvariate(-sigma * sigma / 2, sigma)
        n_calls = _poisson(rng, per_subscriber * activity)
        if n_calls:
            contacts = _contacts(rng, number, subscribers)
            for _ in range(n_calls):
                calls.append(_normal_call(rng, number, contacts, rng.randrange(period), len(calls)))

    labels: list[Label] = []
    rng = _rng(spec.seed, BULK_DIALLER)
    for i in range(spec.bulk_diallers):
        number = _unique_numbers(1, taken, partial(_bulk_number, rng, i))[0]
        labels.append(Label(number, BULK_DIALLER))
        _bulk_calls(rng, spec, number, calls)

    rng = _rng(spec.seed, NEAR_MISS)
    near_misses = _unique_numbers(spec.near_miss, taken, partial(_mobile, rng))
    for number in near_misses:
        labels.append(Label(number, NEAR_MISS))
        _near_miss_calls(rng, spec, number, subscribers, calls)

    calls.sort()
    base = spec.start.astimezone(UTC).replace(microsecond=0)
    tz = spec.start.tzinfo
    records: list[dict[str, object]] = []
    for n, (offset, _, caller, callee, cause, duration) in enumerate(calls):
        records.append(
            {
                "cdr_id": f"sim{spec.seed}-{n:09d}",
                "caller": caller,
                "callee": callee,
                "start_time": (base + timedelta(seconds=offset))
                .astimezone(tz)
                .isoformat(timespec="seconds"),
                "duration_s": duration,
                "answered": cause == NORMAL_CLEARING,
                "release_cause": cause,
                "direction": "outgoing",
            }
        )
    return delivery_order(records, spec), labels


def delivery_order(records: Sequence[R], spec: SimSpec) -> list[R]:
    """``records`` in the order a switch would deliver them.

    A share ``spec.late_fraction`` of the records is delayed by a uniform 60..max_late_s seconds;
    the result is sorted by start_time plus delay (stable, so equal times keep their order).
    """
    return [record for _, _, record in delivery_keys(records, spec)]


def delivery_keys(
    records: Sequence[R], spec: SimSpec, stream: str = "delivery"
) -> list[tuple[float, int, R]]:
    """(arrival epoch s, index, record) of ``records``, in delivery order (``delivery_order``);
    ``stream`` names the random stream the delays are drawn from."""
    rng = _rng(spec.seed, stream)
    low = min(60, spec.max_late_s)
    keyed: list[tuple[float, int, R]] = []
    for i, record in enumerate(records):
        delay = 0
        if spec.late_fraction > 0 and rng.random() < spec.late_fraction:
            delay = rng.randint(low, spec.max_late_s)
        start = datetime.fromisoformat(str(record["start_time"])).timestamp()
        keyed.append((start + delay, i, record))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return keyed


def _mobile(rng: random.Random) -> str:
    prefixes = _MVNO_PREFIXES if rng.random() < _MVNO_SHARE else _MOBILE_PREFIXES
    return f"{rng.choice(prefixes)}{rng.randrange(100_000_000):08d}"


def _bulk_number(rng: random.Random, index: int) -> str:
    if index == 0:
        return f"95{rng.randrange(1_000_000):06d}"
    return f"{rng.choice(_MVNO_PREFIXES)}{rng.randrange(100_000_000):08d}"


def _unique_numbers(count: int, taken: set[str], draw: Callable[[], str]) -> list[str]:
    numbers: list[str] = []
    while len(numbers) < count:
        number = draw()
        if number not in taken:
            taken.add(number)
            numbers.append(number)
    return numbers


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    k = 0
    p = rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _contacts(rng: random.Random, number: str, subscribers: Sequence[str]) -> list[str]:
    """Family and friends: a few numbers, half of them other subscribers."""
    contacts: list[str] = []
    for _ in range(rng.randint(2, 6)):
        contact = rng.choice(subscribers) if rng.random() < 0.5 else _mobile(rng)
        if contact != number:
            contacts.append(contact)
    return contacts or [_mobile(rng)]


def _normal_call(
    rng: random.Random, caller: str, contacts: Sequence[str], offset: int, seq: int
) -> _Call:
    if rng.random() < 0.6:
        # Preferring the first contacts makes a few numbers clearly the most called.
        callee = rng.choice(contacts[: rng.randint(1, len(contacts))])
    else:
        callee = _mobile(rng)
    cause = rng.choices(_NORMAL_CAUSES, cum_weights=_NORMAL_CUM)[0]
    duration = 0
    if cause == NORMAL_CLEARING:
        duration = min(600, max(10, round(rng.lognormvariate(4.1, 0.9))))
    return (offset, seq, caller, callee, cause, duration)


def _dialler_call(rng: random.Random, caller: str, callee: str, offset: int, seq: int) -> _Call:
    cause = rng.choices(_BULK_CAUSES, cum_weights=_BULK_CUM)[0]
    duration = round(rng.triangular(3, 40, 8)) if cause == NORMAL_CLEARING else 0
    return (offset, seq, caller, callee, cause, duration)


def _fresh_callee(rng: random.Random, dialled: set[str]) -> str:
    # The pool (~3e9 numbers) dwarfs any simulated day, so this loop almost never repeats.
    while True:
        callee = _mobile(rng)
        if callee not in dialled:
            dialled.add(callee)
            return callee


def _bulk_calls(rng: random.Random, spec: SimSpec, number: str, calls: list[_Call]) -> None:
    """A steady ``bulk_rate`` per ``bulk_period_s`` for the whole period.

    Each call sits at a random point in the first half of its own slot, so any window of
    ``bulk_period_s`` holds at least ``bulk_rate - 1`` calls and the times stay increasing.
    """
    interval = spec.bulk_period_s / spec.bulk_rate
    phase = rng.uniform(0, interval)
    dialled: set[str] = set()
    k = 0
    while True:
        at = phase + k * interval + rng.uniform(0, interval / 2)
        if at >= spec.period_s:
            return
        calls.append(_dialler_call(rng, number, _fresh_callee(rng, dialled), int(at), len(calls)))
        k += 1


def _near_miss_calls(
    rng: random.Random,
    spec: SimSpec,
    number: str,
    subscribers: Sequence[str],
    calls: list[_Call],
) -> None:
    """Dialler-profile cycles around mid-period, just under every intercepting level; ordinary
    calls an hour or more away from them, never more than NEAR_MISS_PER_DAY calls in all."""
    period = spec.period_s
    cycles = max(1, min(_NEAR_MISS_CYCLES, period // _NEAR_MISS_CYCLE_S))
    span = min(cycles * _NEAR_MISS_CYCLE_S, period)
    centre = period / 2 + rng.uniform(-period / 8, period / 8)
    first = min(max(0, round(centre - span / 2)), period - span)
    dialled: set[str] = set()
    offsets: list[int] = []
    for cycle in range(cycles):
        base = first + cycle * _NEAR_MISS_CYCLE_S
        offsets += [
            base + k * _NEAR_MISS_BURST_GAP_S + rng.randrange(_NEAR_MISS_BURST_GAP_S // 2 + 1)
            for k in range(NEAR_MISS_BURST)
        ]
        lead, step = _NEAR_MISS_STEADY_S
        offsets += [
            base + lead + k * step + rng.randrange(-20, 21)
            for k in range(NEAR_MISS_PER_HOUR - NEAR_MISS_BURST)
        ]
    offsets = [at for at in offsets if 0 <= at < period]
    for at in offsets:
        calls.append(_dialler_call(rng, number, _fresh_callee(rng, dialled), at, len(calls)))

    # Ordinary calls are uniform over what is left of the period outside the guard band.
    quiet_from = first + span + _NEAR_MISS_GUARD_S
    quiet_until = first - _NEAR_MISS_GUARD_S
    before = max(0, quiet_until)
    after = max(0, period - quiet_from)
    n_calls = min(
        _poisson(rng, spec.calls_per_day * period / 86400), NEAR_MISS_PER_DAY - len(offsets)
    )
    if n_calls <= 0 or before + after == 0:
        return
    contacts = _contacts(rng, number, subscribers) if subscribers else [_mobile(rng)]
    for _ in range(n_calls):
        at = rng.randrange(before + after)
        if at >= before:
            at = quiet_from + (at - before)
        calls.append(_normal_call(rng, number, contacts, at, len(calls)))


@contextmanager
def _open_binary(path: Path | str) -> Iterator[IO[bytes]]:
    if str(path) == "-":
        out = sys.stdout.buffer
        yield out
        out.flush()
        return
    with open(path, "wb") as raw:
        if str(path).endswith(".gz"):
            # Like gzip -n: no name or mtime in the header, so equal records give equal bytes.
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
                yield cast(IO[bytes], gz)
        else:
            yield raw


@contextmanager
def _open_text(path: Path | str) -> Iterator[IO[str]]:
    with _open_binary(path) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        try:
            yield text
        finally:
            text.flush()
            # Detach rather than close: closing the wrapper would close stdout too.
            text.detach()


OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def output_format(path: str, given: str | None = None) -> str:
    """``csv`` or ``jsonl``: ``given`` (``--format``) wins, else the name tells (a ``.gz`` after
    the suffix compresses); stdout is JSON Lines. UsageError when neither says."""
    if given is not None:
        return given
    if path == "-":
        return "jsonl"
    suffix = Path(path.removesuffix(".gz")).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise UsageError(
            f"--out {path}: cannot tell the format from the name; name it .csv, .jsonl or"
            " .json (.gz after it to compress), or give --format csv|jsonl"
        )
    return OUTPUT_FORMATS[suffix]


def write_jsonl(path: Path | str, records: Iterable[Mapping[str, object]]) -> int:
    """One JSON object per line; ``-`` is stdout and a ``.gz`` suffix gzips. Returns the count."""
    count = 0
    with _open_binary(path) as out:
        for record in records:
            out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            count += 1
    return count


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_csv(path: Path | str, records: Iterable[Mapping[str, object]]) -> int:
    """CSV with a header of all contract fields; empty cells for missing optional fields."""
    count = 0
    with _open_text(path) as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CDR_FIELDS)
        for record in records:
            writer.writerow([_cell(record.get(name)) for name in CDR_FIELDS])
            count += 1
    return count


def write_labels(path: Path | str, labels: Iterable[Label]) -> int:
    """CSV ``number,role`` with a header row. Returns the number of labels."""
    count = 0
    with _open_text(path) as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("number", "role"))
        for label in labels:
            writer.writerow((label.number, label.role))
            count += 1
    return count


def default_start(settings: Settings) -> datetime:
    tz = ZoneInfo(settings.timezone)
    yesterday = datetime.now(tz) - timedelta(days=1)
    return yesterday.replace(hour=9, minute=0, second=0, microsecond=0)


def batch_by_partition(
    records: Iterable[R], partitions: int, max_batch: int, *, max_lag: int | None = None
) -> Iterator[tuple[int, list[R]]]:
    """Group records into batches whose callers all hash to one partition.

    Records are taken in the given order and appended to their partition's pending batch, which
    is yielded when it holds ``max_batch`` records, or once its oldest record has waited for
    ``max_lag`` further input records (default ``2 * max_batch * partitions``), so a quiet
    partition does not fall far behind the busy ones. Whatever is pending at the end is yielded
    oldest first. Within a partition, and so for each caller, the order is kept.
    """
    if partitions < 1 or max_batch < 1:
        raise ValueError("partitions and max_batch must be positive")
    lag = 2 * max_batch * partitions if max_lag is None else max_lag
    if lag < 0:
        raise ValueError("max_lag must not be negative")
    partition_of: dict[str, int] = {}
    # Insertion order is the order in which the batches were started, so the first entry is
    # always the one holding the oldest pending record.
    pending: dict[int, tuple[int, list[R]]] = {}
    for index, record in enumerate(records):
        caller = str(record["caller"])
        partition = partition_of.get(caller)
        if partition is None:
            partition = partition_of[caller] = partition_for(caller.encode(), partitions)
        entry = pending.get(partition)
        if entry is None:
            entry = pending[partition] = (index, [])
        entry[1].append(record)
        if len(entry[1]) >= max_batch:
            del pending[partition]
            yield partition, entry[1]
        while pending:
            oldest = next(iter(pending))
            started, batch = pending[oldest]
            if index - started < lag:
                break
            del pending[oldest]
            yield oldest, batch
    for partition, (_, batch) in pending.items():
        yield partition, batch


def produce(
    records: Iterable[Mapping[str, object]],
    bootstrap: str,
    topic: str,
    partitions: int,
    batch_size: int = 1,
    *,
    rate_per_s: float | None = None,
    kafka_options: Mapping[str, object] | None = None,
) -> int:
    """Send records to Kafka and return how many were sent.

    With ``batch_size == 1`` each message is one JSON object keyed by its caller, on the partition
    Kafka's default partitioner would choose; otherwise each message is a JSON array from
    ``batch_by_partition``, sent without a key to that batch's partition. ``rate_per_s`` caps the
    pace in records per second. ``kafka_options`` are extra KafkaProducer settings (TLS, SASL:
    ``streams.security.kafka_python_kwargs``).
    """
    if partitions < 1 or batch_size < 1:
        raise ValueError("partitions and batch_size must be positive")
    if rate_per_s is not None and rate_per_s <= 0:
        raise ValueError("rate_per_s must be positive")
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, acks="all", **(kafka_options or {})
    )
    errors: list[BaseException] = []
    sent = 0
    started = time.monotonic()

    def throttle() -> None:
        if rate_per_s is not None:
            ahead = sent / rate_per_s - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    try:
        if batch_size == 1:
            for record in records:
                key = str(record["caller"]).encode()
                future = producer.send(
                    topic,
                    value=orjson.dumps(record),
                    key=key,
                    partition=partition_for(key, partitions),
                )
                future.add_errback(errors.append)
                sent += 1
                throttle()
        else:
            for partition, batch in batch_by_partition(records, partitions, batch_size):
                future = producer.send(topic, value=orjson.dumps(batch), partition=partition)
                future.add_errback(errors.append)
                sent += len(batch)
                throttle()
        producer.flush()
    finally:
        producer.close()
    if errors:
        raise RuntimeError(f"{len(errors)} Kafka messages failed") from errors[0]
    return sent


def write_format(
    path: Path | str, records: Iterable[Mapping[str, object]], name: str, tz: tzinfo
) -> int:
    """Write records in a switch's format (streams.formats), local times in ``tz``; a format
    written at call end (Asterisk, FreeSWITCH CSV) comes out in call-end order."""
    from streams.formats import FORMATS, get

    fmt = FORMATS.get(name)
    if fmt is None or not fmt.writable or name == "contract":
        writable = [n for n, f in FORMATS.items() if f.writable and n != "contract"]
        raise ValueError(f"--format {name}: simulate writes contract, {', '.join(writable)}")
    with _open_text(path) as out:
        return get(name).write(out, records, tz)
