"""Results do not depend on how producers group records into messages or write the key (issue
12, item 2): the same labelled stream, in event-time order, through the real worker as keyed
single messages, partition-aligned arrays, unkeyed arrays of consecutive records and keys in
mixed written forms, raises the same stage-1 alerts (same ids) and intercepts the same numbers.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from config.numbering import CHINA
from config.settings import Settings
from streams.cdr import CDR, parse_records
from streams.observe import derived_obs
from streams.state.base import Changes, PartitionMeta, StaleOffset
from streams.state.redis import RedisStore
from streams.tools import simulate as sim
from streams.tools.evaluate import evaluate
from streams.tools.scenario import generate_scenario
from streams.topics import partition_for
from tests.integration.test_e2e import (
    PARTITIONS,
    SCENARIO,
    Worker,
    intercepted,
    published_alerts,
    start_worker,
    stop_worker,
    wait_until_processed,
)

pytestmark = pytest.mark.e2e
Records = list[dict[str, object]]
ARRAY = 500  # records per unkeyed message: consecutive records, as a file is shipped
MOBILE = re.compile(r"1\d{10}")
STAGE_2 = frozenset({"call_bombing", "coordinated_block", "spoofed_identity"})


# The paced variant waits for two hops (CDR topic, repartition topic) per message: short fetch
# waits keep it quick.
QUICK_HOPS = {"DIALWATCH_FETCH_MAX_WAIT_MS": "50", "DIALWATCH_BATCH_WITHIN_S": "0.05"}


def in_event_order(records: Records) -> Records:
    return sorted(records, key=lambda r: datetime.fromisoformat(str(r["start_time"])))


def plus86(caller: object) -> str:
    """The caller as another switch writes it (E.164 with a plus), for mobile numbers."""
    text = str(caller)
    return "+86" + text if MOBILE.fullmatch(text) else text


def one_switch_per_caller(records: Records) -> Records:
    """Half the callers (by a hash) always written +86...: their raw keys hash elsewhere."""
    return [
        {**r, "caller": plus86(r["caller"])} if zlib.crc32(str(r["caller"]).encode()) % 2 else r
        for r in records
    ]


def every_other_record(records: Records) -> Records:
    """Each caller written in both forms, alternately: one caller, two raw keys."""
    return [{**r, "caller": plus86(r["caller"])} if i % 2 else r for i, r in enumerate(records)]


def ticks(records: Records, forms: bool = False) -> Records:
    """Traffic going on after the stream, so every partition's watermark passes every episode
    (each closes with its ``cleared`` alert, whatever partition the last messages hit): one
    call of a quiet number per (source, target) partition pair, two hours after the end,
    sources first. ``forms``: a pair's caller is written +86... when that form's raw key
    hashes to the source (a keyed producer then sends it there), else as normalised."""
    end = max(datetime.fromisoformat(str(r["start_time"])) for r in records)
    at = (end + timedelta(hours=2)).isoformat()
    callers: dict[tuple[int, int], str] = {}
    n = 0
    while len(callers) < PARTITIONS**2:
        number = f"1990{n:07d}"
        n += 1
        target = partition_for(number.encode(), PARTITIONS)
        written = "+86" + number
        raw = partition_for(written.encode(), PARTITIONS) if forms else target
        pair = (raw, target)
        if pair not in callers and raw != target:
            callers[pair] = written
        for source in range(PARTITIONS):  # without forms: any source, as an array sends it
            if not forms and (source, target) not in callers:
                callers[(source, target)] = number
                break
        if forms and (target, target) not in callers:
            callers[(target, target)] = number
    return [
        {
            "cdr_id": f"tick-{source}-{target}",
            "caller": callers[(source, target)],
            "callee": "13700000000",
            "start_time": at,
            "duration_s": 60,
            "answered": True,
        }
        for source in range(PARTITIONS)
        for target in range(PARTITIONS)
    ]


def send_keyed(records: Records, bootstrap: str, topic: str, forms: bool = False) -> Iterator[int]:
    """One message per record, keyed by the caller as written (Kafka's partitioner)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    tick = ticks(records, forms)
    try:
        for r in [*records, *tick]:
            producer.send(topic, key=str(r["caller"]).encode(), value=orjson.dumps(r))
        producer.flush()
    finally:
        producer.close()
    yield len(records) + len(tick)


def send_arrays(records: Records, bootstrap: str, topic: str) -> Iterator[int]:
    """Arrays of ``ARRAY`` consecutive records without a key, each on a partition picked as
    a keyless producer would (spread, seeded here so a failure can be replayed). Yields the
    records sent so far after each array."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    rng = random.Random(7)
    tick = ticks(records)
    tick_arrays = [tick[i : i + PARTITIONS] for i in range(0, len(tick), PARTITIONS)]
    try:
        for i in range(0, len(records), ARRAY):
            batch = records[i : i + ARRAY]
            producer.send(topic, value=orjson.dumps(batch), partition=rng.randrange(PARTITIONS))
            producer.flush()
            yield i + len(batch)
        for source, batch in enumerate(tick_arrays):
            producer.send(topic, value=orjson.dumps(batch), partition=source)
        producer.flush()
    finally:
        producer.close()
    yield len(records) + sum(map(len, tick_arrays))


def send_keyed_forms(records: Records, bootstrap: str, topic: str) -> Iterator[int]:
    return send_keyed(records, bootstrap, topic, forms=True)


def send_aligned(records: Records, bootstrap: str, topic: str) -> Iterator[int]:
    tick = ticks(records)
    yield sim.produce([*records, *tick], bootstrap, topic, PARTITIONS, batch_size=ARRAY)


Sender = Callable[[Records, str, str], Iterator[int]]
# name -> (how the stream is written, how it is sent, paced: each message applied before the
# next is sent, so every caller's records reach its state in event-time order)
VARIANTS: dict[str, tuple[Callable[[Records], Records], Sender, bool]] = {
    "keyed-single": (lambda rs: rs, send_keyed, False),
    "aligned-arrays": (lambda rs: rs, send_aligned, False),
    "unkeyed-arrays": (lambda rs: rs, send_arrays, True),
    "mixed-key-forms": (one_switch_per_caller, send_keyed_forms, False),
    "unkeyed-arrays-burst-both-forms": (every_other_record, send_arrays, False),
}


def stage1(alerts: list[dict[str, object]]) -> list[tuple[str, ...]]:
    """Stage 1's alerts, id first: callers' own alerts (stage 2 names callees, blocks, trunks
    and the members it intercepts)."""
    return sorted(
        tuple(str(a[k]) for k in ("alert_id", "number", "detector", "state", "event_time"))
        for a in alerts
        if a["subject"] == "number" and a["detector"] not in STAGE_2
    )


def scanned(worker: Worker, records: Records, tmp_path: Path) -> list[dict[str, object]]:
    """The reference: ``dialwatch scan`` over the stream in event-time order, one partition."""
    path = tmp_path / "stream.jsonl"
    sim.write_jsonl(path, [*records, *ticks(records)])
    done = subprocess.run(
        [sys.executable, "-m", "streams", "scan", str(path)],
        capture_output=True,
        env={**worker.env, "DIALWATCH_REDIS": ""},
        check=True,
    )
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def run(worker: Worker, bootstrap: str, variant: str) -> tuple[list[dict[str, object]], Records]:
    write, send, paced = VARIANTS[variant]
    records = in_event_order(generate_scenario(SCENARIO).records)
    total = 0
    for sent in send(write(records), bootstrap, worker.env["DIALWATCH_CDR_TOPIC"]):
        total = sent
        if paced:
            wait_until_processed(worker, sent)
    wait_until_processed(worker, total)
    cdrs = [r for r in parse_records([*records, *ticks(records)], CHINA) if isinstance(r, CDR)]
    observed = len(derived_obs(cdrs, Settings().international_trunks, 0, CHINA))
    wait_until_processed(worker, observed, metric="dialwatch_derived_observations_total")
    return published_alerts(worker), records


@dataclass(frozen=True)
class Result:
    alerts: list[dict[str, object]]
    records: Records
    counted: float  # dialwatch_cdrs_total accepted + to_trunk
    moved: float  # dialwatch_repartitioned_cdrs_total
    took: float
    reference: list[dict[str, object]]  # scan's


@pytest.fixture(scope="module")
def results(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Result]]]:
    """Every variant side by side, each with its own worker, topics, group and key prefix;
    each test takes its variant's result (or its error)."""
    workers: list[Worker] = []

    def one(variant: str) -> Result:
        tmp = tmp_path_factory.mktemp(variant)
        worker = start_worker(kafka_bootstrap, redis_url, uuid.uuid4().hex[:10], tmp, **QUICK_HOPS)
        workers.append(worker)
        started = time.monotonic()
        alerts, records = run(worker, kafka_bootstrap, variant)
        took = time.monotonic() - started
        counted = sum(
            worker.metric("dialwatch_cdrs_total", f'{{result="{r}"}}')
            for r in ("accepted", "to_trunk")
        )
        moved = worker.metric("dialwatch_repartitioned_cdrs_total")
        return Result(alerts, records, counted, moved, took, scanned(worker, records, tmp))

    pool = ThreadPoolExecutor(len(VARIANTS))
    try:
        yield {variant: pool.submit(one, variant) for variant in VARIANTS}
    finally:
        pool.shutdown(wait=True)
        for worker in workers:
            stop_worker(worker)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_grouping_and_key_form_do_not_change_the_results(
    results: dict[str, Future[Result]], variant: str
) -> None:
    done = results[variant].result(timeout=280)
    alerts, records, counted, moved = done.alerts, done.records, done.counted, done.moved
    scenario = generate_scenario(SCENARIO)
    report = evaluate(
        records,
        scenario.labels,
        alerts,
        Settings().pseudonym_key.encode(),
        allowlist=scenario.allowlist,
    )
    assert report.false_intercepts == ()
    for pattern in report.patterns:
        assert pattern.detected == pattern.labelled, (variant, pattern)
    assert counted == len(records) + PARTITIONS**2  # each CDR applied once, wherever it arrived
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    if variant in ("keyed-single", "aligned-arrays"):
        assert moved == 0  # the fast path: no extra hop
    else:
        assert moved > 0
    print(
        f"{variant}: {counted:.0f} CDRs, {moved:.0f} re-keyed, {len(alerts)} alerts,"
        f" {done.took:.1f} s"
    )

    reference = done.reference
    assert intercepted(alerts) == intercepted(reference)
    if variant != "unkeyed-arrays-burst-both-forms":
        # Every caller's records reached its state in event-time order: the same alerts.
        got, want = stage1(alerts), stage1(reference)
        assert got == want, (sorted(set(want) - set(got)), sorted(set(got) - set(want)))


async def test_redis_fences_each_input_on_both_offsets(redis_url: str, unique: str) -> None:
    """write.lua: a batch of either input applies only if neither stored offset moved since it
    was read, and a stage-1 meta keeps both."""
    store = RedisStore.from_url(
        redis_url, prefix=f"rk{unique}", window_ttl_ms=60_000, partition_ttl_ms=60_000
    )
    try:
        await store.write(0, -1, Changes(PartitionMeta(4, 1000, ((0, 1000),)), {}, {}))
        await store.write(0, 4, Changes(PartitionMeta(4, 2000, ((0, 1000), (1, 2000)), 7), {}, {}))
        assert await store.load_meta(0) == PartitionMeta(4, 2000, ((0, 1000), (1, 2000)), 7)
        with pytest.raises(StaleOffset):  # computed before the re-keyed batch was written
            await store.write(0, 4, Changes(PartitionMeta(5, 2000), {}, {}))
        with pytest.raises(StaleOffset):  # a repartition batch read at an older roff
            await store.write(
                0, 4, Changes(PartitionMeta(4, 2000, (), 9), {}, {}, expected_rekeyed=3)
            )
        await store.write(0, 4, Changes(PartitionMeta(5, 2000, (), 7), {}, {}, expected_rekeyed=7))
        assert (await store.load_meta(0)).offset == 5
    finally:
        await store.close()
