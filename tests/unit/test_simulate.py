from __future__ import annotations

import bisect
import csv
import gzip
import io
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner  # type: ignore[import-untyped, unused-ignore]

from streams.tools.simulate import (
    BULK_DIALLER,
    CDR_FIELDS,
    NEAR_MISS,
    NEAR_MISS_BURST,
    NEAR_MISS_PER_DAY,
    NEAR_MISS_PER_HOUR,
    Label,
    SimSpec,
    batch_by_partition,
    delivery_order,
    generate,
    produce,
    write_csv,
    write_jsonl,
    write_labels,
)
from streams.topics import partition_for

START = datetime(2026, 11, 28, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
SPEC = SimSpec(start=START)
Records = list[dict[str, object]]


@pytest.fixture(scope="module")
def generated() -> tuple[Records, list[Label]]:
    return generate(SPEC)


def epoch(record: dict[str, object]) -> float:
    return datetime.fromisoformat(str(record["start_time"])).timestamp()


def times_of(records: Records, number: str) -> list[float]:
    return sorted(epoch(r) for r in records if r["caller"] == number)


def max_in_span(times: list[float], span_s: float) -> int:
    """Most calls in any closed interval of ``span_s`` seconds."""
    return max(bisect.bisect_right(times, t + span_s) - i for i, t in enumerate(times))


def numbers(labels: list[Label], role: str) -> list[str]:
    return [label.number for label in labels if label.role == role]


def test_same_spec_gives_identical_output(tmp_path: Path) -> None:
    spec = replace(SPEC, late_fraction=0.05)
    a_records, a_labels = generate(spec)
    b_records, b_labels = generate(spec)
    assert a_labels == b_labels
    write_jsonl(tmp_path / "a.jsonl.gz", a_records)
    write_jsonl(tmp_path / "b.jsonl.gz", b_records)
    write_csv(tmp_path / "a.csv", a_records)
    write_csv(tmp_path / "b.csv", b_records)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_seed_changes_output() -> None:
    a, _ = generate(replace(SPEC, subscribers=50))
    b, _ = generate(replace(SPEC, subscribers=50, seed=8))
    assert [r["caller"] for r in a] != [r["caller"] for r in b]


def test_records_follow_the_contract(generated: tuple[Records, list[Label]]) -> None:
    records, _ = generated
    ids = set()
    for r in records:
        assert set(r) == set(CDR_FIELDS)
        assert isinstance(r["cdr_id"], str)
        ids.add(r["cdr_id"])
        for field in ("caller", "callee"):
            value = r[field]
            assert isinstance(value, str) and value.isdigit()
        start = datetime.fromisoformat(str(r["start_time"]))
        assert start.utcoffset() == timedelta(hours=8)
        assert START <= start < START + timedelta(hours=SPEC.hours)
        assert type(r["duration_s"]) is int and r["duration_s"] >= 0
        assert type(r["answered"]) is bool
        assert r["direction"] == "outgoing"
        if r["answered"]:
            assert r["release_cause"] == 16 and r["duration_s"] > 0
        else:
            assert r["release_cause"] in {1, 17, 18, 19, 21} and r["duration_s"] == 0
    assert len(ids) == len(records)
    assert [epoch(r) for r in records] == sorted(epoch(r) for r in records)


def test_numbers_look_right(generated: tuple[Records, list[Label]]) -> None:
    records, labels = generated
    bulk = numbers(labels, BULK_DIALLER)
    near = numbers(labels, NEAR_MISS)
    assert len(bulk) == SPEC.bulk_diallers and len(near) == SPEC.near_miss
    assert len(bulk[0]) == 8 and bulk[0].startswith("95")
    assert all(len(n) == 11 and n[:3] in {"170", "171"} for n in bulk[1:])
    special = set(bulk) | set(near)
    normal = {str(r["caller"]) for r in records} - special
    assert len(normal) > 0.8 * SPEC.subscribers
    for number in normal | set(near):
        assert len(number) == 11 and number[:2] in {"13", "15", "18", "17"}
    assert any(n[:3] in {"170", "171"} for n in normal)
    assert all(str(r["callee"]) not in special for r in records)


def test_normal_traffic_volume_and_mix(generated: tuple[Records, list[Label]]) -> None:
    records, labels = generated
    special = {label.number for label in labels}
    normal = [r for r in records if r["caller"] not in special]
    expected = SPEC.subscribers * SPEC.calls_per_day * SPEC.hours / 24
    assert 0.85 * expected < len(normal) < 1.15 * expected
    answered = [r for r in normal if r["answered"]]
    assert 0.70 < len(answered) / len(normal) < 0.80
    assert all(10 <= int(str(r["duration_s"])) <= 600 for r in answered)
    # Family and friends: most active callers ring some number more than once.
    pairs = Counter((r["caller"], r["callee"]) for r in normal)
    assert sum(1 for count in pairs.values() if count >= 3) > 50


def test_bulk_diallers_keep_the_rate(generated: tuple[Records, list[Label]]) -> None:
    records, labels = generated
    period_start = START.timestamp()
    period_end = period_start + SPEC.hours * 3600
    for number in numbers(labels, BULK_DIALLER):
        calls = [r for r in records if r["caller"] == number]
        expected = SPEC.bulk_rate * SPEC.hours * 3600 / SPEC.bulk_period_s
        assert abs(len(calls) - expected) <= 2
        assert len({r["callee"] for r in calls}) == len(calls)
        answered = sum(1 for r in calls if r["answered"])
        assert 0.10 < answered / len(calls) < 0.20
        assert all(3 <= int(str(r["duration_s"])) <= 40 for r in calls if r["answered"])
        causes = Counter(r["release_cause"] for r in calls)
        assert 0.01 < causes[1] / len(calls) < 0.08
        times = times_of(records, number)
        assert max_in_span(times, 2399) >= 250
        # Every full 40-minute window [a, a + 2400) holds at least 250 calls. The count only
        # drops when a passes a call, so checking a = 0 and a = just after each call suffices.
        for a in [period_start, *(t + 1 for t in times)]:
            if a + 2400 > period_end:
                break
            count = bisect.bisect_left(times, a + 2400) - bisect.bisect_left(times, a)
            assert count >= 250


def most_in_buckets(times: list[float], buckets: int, width_s: int = 60) -> int:
    """Most calls in ``buckets`` consecutive buckets: what the engine's windows count."""
    counts = Counter(int(t // width_s) for t in times)
    return max(sum(counts[b] for b in range(e - buckets + 1, e + 1)) for e in counts)


def test_near_miss_stays_just_under_every_intercepting_level(
    generated: tuple[Records, list[Label]],
) -> None:
    records, labels = generated
    for number in numbers(labels, NEAR_MISS):
        times = times_of(records, number)
        assert most_in_buckets(times, 5) == NEAR_MISS_BURST == 21  # bulk dialling: 22 in 5m
        assert most_in_buckets(times, 60) == NEAR_MISS_PER_HOUR == 29  # robocall: 30 in 1h
        assert len(times) <= NEAR_MISS_PER_DAY == 249  # quota: 250 in 24h
        calls = [r for r in records if r["caller"] == number]
        dialled = [r for r in calls if not r["answered"] or int(str(r["duration_s"])) <= 40]
        assert len({r["callee"] for r in dialled}) == len(dialled)  # a dialler's fresh callees


def test_a_full_day_near_miss_comes_to_just_under_the_daily_quota() -> None:
    records, labels = generate(replace(SPEC, hours=12, subscribers=20, calls_per_day=200))
    for number in numbers(labels, NEAR_MISS):
        times = times_of(records, number)
        assert 232 <= len(times) <= NEAR_MISS_PER_DAY
        assert most_in_buckets(times, 144, 600) == len(times)
        assert most_in_buckets(times, 5) <= NEAR_MISS_BURST
        assert most_in_buckets(times, 60) <= NEAR_MISS_PER_HOUR


@pytest.mark.parametrize("hours", [0.5, 1.0, 2.0])
def test_near_miss_in_short_periods(hours: float) -> None:
    records, labels = generate(replace(SPEC, hours=hours, subscribers=20, calls_per_day=200))
    for number in numbers(labels, NEAR_MISS):
        times = times_of(records, number)
        assert most_in_buckets(times, 5) == NEAR_MISS_BURST
        assert most_in_buckets(times, 60) <= NEAR_MISS_PER_HOUR


def test_special_traffic_leaves_normal_traffic_unchanged() -> None:
    base = replace(SPEC, subscribers=200)
    plain, _ = generate(replace(base, bulk_diallers=0, near_miss=0))
    full, labels = generate(base)
    special = {label.number for label in labels}
    strip = [{k: v for k, v in r.items() if k != "cdr_id"} for r in plain]
    assert strip == [
        {k: v for k, v in r.items() if k != "cdr_id"} for r in full if r["caller"] not in special
    ]


def test_late_delivery() -> None:
    spec = replace(SPEC, late_fraction=0.1, max_late_s=600)
    late, _ = generate(spec)
    on_time, _ = generate(replace(spec, late_fraction=0.0))
    assert sorted(late, key=lambda r: str(r["cdr_id"])) == on_time
    assert late != on_time

    newest = float("-inf")
    behind = []
    for r in late:
        newest = max(newest, epoch(r))
        behind.append(newest - epoch(r))
    assert max(behind) <= spec.max_late_s
    assert max(behind) > 60
    # A late record is overtaken by everything that starts within its delay, so it shows up
    # behind; on-time records hardly ever are.
    share_behind = sum(1 for b in behind if b > 0) / len(late)
    assert 0.05 < share_behind < 0.2


def test_delivery_order_without_lateness_sorts_by_start() -> None:
    records, _ = generate(replace(SPEC, subscribers=100))
    shuffled = records[::-1]
    ordered = delivery_order(shuffled, replace(SPEC, late_fraction=0.0))
    assert [epoch(r) for r in ordered] == sorted(epoch(r) for r in records)


def test_spec_validation() -> None:
    with pytest.raises(ValueError):
        SimSpec(start=datetime(2026, 11, 28, 9))
    with pytest.raises(ValueError):
        replace(SPEC, late_fraction=1.5)
    with pytest.raises(ValueError):
        replace(SPEC, subscribers=-1)


def test_start_time_honours_the_zone_across_dst() -> None:
    start = datetime(2026, 3, 8, 0, 0, tzinfo=ZoneInfo("America/New_York"))
    records, _ = generate(SimSpec(start=start, hours=6, subscribers=50, near_miss=0))
    offsets = {datetime.fromisoformat(str(r["start_time"])).utcoffset() for r in records}
    assert offsets == {timedelta(hours=-5), timedelta(hours=-4)}
    stamps = [epoch(r) for r in records]
    assert min(stamps) >= start.timestamp() and max(stamps) < start.timestamp() + 6 * 3600


class FakeCluster:
    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"cdrs"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


@pytest.mark.parametrize("partitions", [1, 3, 8, 12])
@pytest.mark.parametrize("key", [b"13800138000", b"95512345", b"17012345678", b"", b"a"])
def test_partition_for_matches_kafka_python(key: bytes, partitions: int) -> None:
    expected = DefaultPartitioner().partition("cdrs", key, key, None, None, FakeCluster(partitions))
    assert partition_for(key, partitions) == expected


def counting(records: list[dict[str, object]], pulled: list[int]) -> Iterator[dict[str, object]]:
    for record in records:
        pulled[0] += 1
        yield record


@settings(max_examples=200, deadline=None)
@given(
    callers=st.lists(st.sampled_from([f"1380013800{d}" for d in range(10)]), max_size=120),
    partitions=st.integers(1, 6),
    max_batch=st.integers(1, 12),
    max_lag=st.none() | st.integers(0, 30),
)
def test_batch_by_partition(
    callers: list[str], partitions: int, max_batch: int, max_lag: int | None
) -> None:
    records: list[dict[str, object]] = [{"i": i, "caller": c} for i, c in enumerate(callers)]
    pulled = [0]
    lag = 2 * max_batch * partitions if max_lag is None else max_lag
    seen: list[dict[str, object]] = []
    by_partition: dict[int, list[int]] = defaultdict(list)
    for partition, batch in batch_by_partition(
        counting(records, pulled), partitions, max_batch, max_lag=max_lag
    ):
        assert 1 <= len(batch) <= max_batch
        for record in batch:
            assert partition_for(str(record["caller"]).encode(), partitions) == partition
            # Nothing waits for more than `lag` further records (except the final flush).
            if pulled[0] < len(records):
                assert pulled[0] - 1 - int(str(record["i"])) <= lag
        by_partition[partition].extend(int(str(r["i"])) for r in batch)
        seen.extend(batch)
    assert sorted(seen, key=lambda r: int(str(r["i"]))) == records
    for indexes in by_partition.values():
        assert indexes == sorted(indexes)
    per_caller = defaultdict(list)
    for record in seen:
        per_caller[record["caller"]].append(record["i"])
    assert all(ix == sorted(ix) for ix in per_caller.values())  # type: ignore[type-var]


def test_batch_by_partition_fills_batches() -> None:
    records, _ = generate(replace(SPEC, bulk_diallers=0, near_miss=0))
    batches = list(batch_by_partition(records, 4, 50))
    assert sum(len(b) for _, b in batches) == len(records)
    assert sum(1 for _, b in batches if len(b) == 50) >= 0.9 * len(records) / 50


def read_csv_records(text: str) -> list[dict[str, object]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    records: list[dict[str, object]] = []
    for row in rows:
        record: dict[str, object] = {k: v for k, v in row.items() if v != ""}
        record["duration_s"] = int(row["duration_s"])
        assert row["answered"] in {"true", "false"}
        record["answered"] = row["answered"] == "true"
        if "release_cause" in record:
            record["release_cause"] = int(row["release_cause"])
        records.append(record)
    return records


def test_csv_round_trip(tmp_path: Path, generated: tuple[Records, list[Label]]) -> None:
    records, _ = generated
    path = tmp_path / "cdrs.csv"
    assert write_csv(path, records) == len(records)
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(CDR_FIELDS)
    assert read_csv_records(text) == records


def test_csv_leaves_missing_optional_fields_empty(tmp_path: Path) -> None:
    record: dict[str, object] = {
        "cdr_id": "x-1",
        "caller": "13800138000",
        "callee": "13900139000",
        "start_time": "2026-11-28T09:00:05+08:00",
        "duration_s": 0,
        "answered": False,
    }
    path = tmp_path / "one.csv.gz"
    assert write_csv(path, [record]) == 1
    text = gzip.decompress(path.read_bytes()).decode()
    assert text.splitlines()[1] == "x-1,13800138000,13900139000,2026-11-28T09:00:05+08:00,0,false,,"
    assert read_csv_records(text) == [record]


@pytest.mark.parametrize("name", ["cdrs.jsonl", "cdrs.jsonl.gz"])
def test_jsonl_round_trip(
    tmp_path: Path, name: str, generated: tuple[Records, list[Label]]
) -> None:
    records, _ = generated
    path = tmp_path / name
    assert write_jsonl(str(path), records) == len(records)
    data = path.read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    assert [orjson.loads(line) for line in data.splitlines()] == records


def test_jsonl_to_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    records, _ = generate(replace(SPEC, subscribers=5, bulk_diallers=0, near_miss=0))
    assert write_jsonl("-", records) == len(records)
    out = capsysbinary.readouterr().out
    assert [orjson.loads(line) for line in out.splitlines()] == records


def test_labels_file(tmp_path: Path, generated: tuple[Records, list[Label]]) -> None:
    _, labels = generated
    path = tmp_path / "labels.csv"
    assert write_labels(path, labels) == len(labels)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [Label(row["number"], row["role"]) for row in rows] == labels
    assert {row["role"] for row in rows} == {BULK_DIALLER, NEAR_MISS}


def test_fixed_offset_start() -> None:
    start = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
    records, _ = generate(SimSpec(start=start, hours=1, subscribers=10))
    assert all(str(r["start_time"]).endswith("+00:00") for r in records)


class FakeFuture:
    def add_errback(self, callback: Any) -> FakeFuture:
        return self


class FakeProducer:
    instances: ClassVar[list[FakeProducer]] = []

    def __init__(self, **config: object) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes, bytes | None, int]] = []
        self.flushed = self.closed = False
        FakeProducer.instances.append(self)

    def send(self, topic: str, value: bytes, key: bytes | None = None, partition: int = -1) -> Any:
        self.sent.append((topic, value, key, partition))
        return FakeFuture()

    def flush(self) -> None:
        self.flushed = True

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("batch_size", [1, 7])
def test_produce_shapes_messages(monkeypatch: pytest.MonkeyPatch, batch_size: int) -> None:
    """No broker: checks what produce hands to KafkaProducer."""
    records, _ = generate(replace(SPEC, subscribers=40, hours=1))
    monkeypatch.setattr("streams.tools.simulate.KafkaProducer", FakeProducer)
    FakeProducer.instances.clear()
    assert produce(records, "broker:9092", "cdrs", 8, batch_size) == len(records)
    (producer,) = FakeProducer.instances
    assert producer.config["bootstrap_servers"] == "broker:9092"
    assert producer.flushed and producer.closed
    received: list[dict[str, object]] = []
    for topic, value, key, partition in producer.sent:
        assert topic == "cdrs"
        decoded = orjson.loads(value)
        batch = [decoded] if batch_size == 1 else decoded
        assert 1 <= len(batch) <= batch_size
        if batch_size == 1:
            assert key == str(decoded["caller"]).encode()
        else:
            assert key is None
        for record in batch:
            assert partition == partition_for(str(record["caller"]).encode(), 8)
        received.extend(batch)
    assert sorted(received, key=lambda r: str(r["cdr_id"])) == records


def test_each_role_reaches_the_levels_it_is_meant_to(tmp_path: Path) -> None:
    """Bulk diallers are intercepted; the near miss gets no alert at all (README, simulate)."""
    import asyncio

    from config.settings import Settings
    from streams.factory import build_engines
    from streams.scan import scan

    records, labels = generate(replace(SPEC, hours=12, subscribers=300))
    path = tmp_path / "cdrs.jsonl"
    write_jsonl(path, records)
    engine, derived = build_engines(Settings(), None)
    out = io.StringIO()
    asyncio.run(scan(engine, [str(path)], out, io.StringIO(), derived=derived))
    alerts = [orjson.loads(line) for line in out.getvalue().splitlines()]
    by_number: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for a in alerts:
        by_number[str(a["number"])].add((str(a["detector"]), str(a["action"])))
    for number in numbers(labels, BULK_DIALLER):
        assert ("bulk_dialling", "intercept") in by_number[number]
    for number in numbers(labels, NEAR_MISS):
        assert by_number.get(number) is None, by_number[number]
        assert len(times_of(records, number)) >= 232  # a dialler's day, just under the quota
