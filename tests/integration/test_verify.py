"""``dialwatch verify``: the independent recount, compare(), and runs against real services.

The unit tests need no services: the recount is checked on hand-made records, and compare() on
the state the real engine leaves in the in-process store. The e2e tests run ``dialwatch scan``
into Redis, and the Faust worker on the real broker, then the verify command as a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
import redis

from config.numbering import CHINA
from config.policy import load_policy
from config.settings import Settings
from streams.cdr import CDR, Reject, parse_record
from streams.cli import main
from streams.engine import Engine
from streams.items import CALLER_KINDS, id_hash
from streams.state.base import NumberState
from streams.state.blob import from_blobs, windows_blob
from streams.state.memory import MemoryStore
from streams.tools import simulate as sim
from streams.tools.fleet import worker_env
from streams.tools.simulate import default_start
from streams.tools.verify import (
    EXPIRED,
    HEADLINE,
    AlertCount,
    Difference,
    Meta,
    Recount,
    Rules,
    Stored,
    _id_hash,
    compare,
)
from streams.topics import partition_for
from tests.factories import T0

NOW_MS = (T0 + 30 * 86_400) * 1000
RULES = Rules(CHINA, now_ms=NOW_MS)
PARTITIONS = 4
START = default_start(Settings())
# The in-process engine runs on the fixed clock NOW_MS, so its traffic starts at a fixed time
# two days before it (09:00 local), never at "yesterday" of the wall clock.
ENGINE_START = datetime.fromtimestamp(T0 + 28 * 86_400, ZoneInfo(Settings().timezone))
A, B, C = "13800000001", "13800000002", "13800000003"


def rec(cdr_id: str, caller: str, at_s: float, **extra: object) -> dict[str, object]:
    return {
        "cdr_id": cdr_id,
        "caller": caller,
        "callee": "13911112222",
        "start_time": datetime.fromtimestamp(T0 + at_s, UTC).isoformat(),
        "duration_s": 0,
        "answered": False,
        **extra,
    }


def recount_of(items: list[tuple[int, dict[str, object]]], rules: Rules = RULES) -> Recount:
    """Records as (partition, dict), offsets numbered per partition in the order given."""
    recount = Recount(rules)
    offsets: Counter[int] = Counter()
    for partition, doc in items:
        recount.add(partition, offsets[partition], parse_record(doc, CHINA))
        offsets[partition] += 1
    return recount


def calls_of(recount: Recount) -> dict[tuple[int, str], int]:
    return {
        (p, n): sum(c.short.values())
        for p, part in recount.partitions.items()
        for n, c in part.numbers.items()
    }


@dataclass(frozen=True)
class Case:
    name: str
    items: list[tuple[int, dict[str, object]]]
    calls: dict[tuple[int, str], int]
    duplicates: int = 0
    spoofed: int = 0
    rejected: dict[str, int] | None = None


CASES = [
    Case(
        "duplicate ids are counted once per caller",
        [
            (0, rec("x1", A, 0)),
            (0, rec("x1", A, 0)),
            (0, rec("x2", A, 30)),
            (0, rec("x2", A, 30)),
            (0, rec("x1", B, 0)),  # the same id for another caller is another call
        ],
        {(0, A): 2, (0, B): 1},
        duplicates=2,
    ),
    Case(
        "spoofed calls are not their caller's",
        [
            (0, rec("s1", A, 0, attestation="C")),
            (0, rec("s2", A, 10, attestation=" c ")),
            (0, rec("s3", A, 20, ingress_trunk="intl-7")),  # domestic caller, foreign trunk
            (0, rec("s4", "+442079460000", 30, ingress_trunk="intl-7")),  # foreign: genuine
            (0, rec("s5", A, 40, attestation="A")),
        ],
        {(0, "00442079460000"): 1, (0, A): 1},
        spoofed=3,
    ),
    Case(
        "too late against the partition's newest call, lateness inclusive",
        [
            (0, rec("t1", A, 3600)),
            (0, rec("t2", B, 1800)),  # exactly the allowed lateness behind: admitted
            (0, rec("t3", B, 1799)),  # one second more: too late
            (0, rec("t4", C, 0, attestation="C")),  # spoofed and too late: rejected as late
            (0, rec("t5", C, 9000, attestation="C")),  # a spoofed call moves nothing on
            (0, rec("t6", C, 1900)),
            (0, rec("t7", B, 1799)),  # a too-late record did not move the newest either
        ],
        {(0, A): 1, (0, B): 1, (0, C): 1},
        spoofed=1,
        rejected={"too_late": 3},
    ),
    Case(
        "lateness is per partition",
        [(0, rec("p1", A, 7200)), (1, rec("p2", B, 0)), (0, rec("p3", C, 0))],
        {(0, A): 1, (1, B): 1},
        rejected={"too_late": 1},
    ),
    Case(
        "a too-late duplicate is too late, not a duplicate",
        [(0, rec("d1", A, 0)), (0, rec("d2", A, 4000)), (0, rec("d1", A, 0))],
        {(0, A): 2},
        rejected={"too_late": 1},
    ),
    Case(
        "rejects and future records are counted by reason, never as calls",
        [
            (0, {"cdr_id": "r1", "caller": A}),
            (0, rec("r2", "not a number", 0)),
            (0, rec("r3", A, 0, duration_s=-5)),
            (0, rec("r4", A, (NOW_MS // 1000 - T0) + 3600)),  # an hour ahead of the clock
            (0, rec("r5", A, 0)),
        ],
        {(0, A): 1},
        rejected={"missing_field": 1, "bad_number": 1, "bad_duration": 1, "future": 1},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_recount(case: Case) -> None:
    recount = recount_of(case.items)
    assert calls_of(recount) == case.calls
    assert recount.read == len(case.items)
    assert recount.duplicates == case.duplicates
    assert recount.spoofed == case.spoofed
    assert dict(recount.rejected) == (case.rejected or {})
    assert recount.accepted == sum(case.calls.values())


def test_recount_buckets() -> None:
    recount = recount_of([(0, rec(f"b{i}", A, i * 45)) for i in range(20)])  # 15 min
    calls = recount.partitions[0].numbers[A]
    assert sum(calls.short.values()) == sum(calls.long.values()) == 20
    assert len(calls.short) == 15  # one-minute buckets hold one or two calls
    assert set(calls.long) == {(T0 * 1000 + t) // 600_000 for t in (0, 855_000)}
    assert calls.newest_ms == (T0 + 19 * 45) * 1000


def test_id_hash_is_the_stored_one() -> None:
    for cdr_id in ("sim7-000000001", "x", "ü-42" * 20):
        assert _id_hash(cdr_id) == id_hash(cdr_id)


# --- compare() on the state the real engine leaves behind --------------------------------


async def engine_state(
    items: list[tuple[int, CDR | Reject]], batch: int = 37
) -> tuple[Stored, Recount]:
    """Run the caller engine (in-process store) and the recount over the same partitioned
    input; return the engine's state as verify would read it from Redis, and the recount."""
    engine = Engine(
        Settings(), load_policy(Settings().policy_file), MemoryStore(), clock_ms=lambda: NOW_MS
    )
    assert engine.kinds == CALLER_KINDS
    recount = Recount(RULES)
    by_partition: dict[int, list[tuple[int, CDR | Reject]]] = {}
    for partition, r in items:
        part = by_partition.setdefault(partition, [])
        part.append((len(part), r))
        recount.add(partition, len(part) - 1, r)
    for partition, part in by_partition.items():
        for i in range(0, len(part), batch):
            await engine.process(partition, part[i : i + batch])
    store = engine.store
    assert isinstance(store, MemoryStore)
    stored = Stored(
        numbers={k: from_blobs(v, None) for k, v in store._windows.items()},
        meta={p: Meta(m.offset, m.newest_ms) for p, m in store._meta.items()},
    )
    return stored, recount


def late_traffic() -> list[tuple[int, CDR | Reject]]:
    """Simulated traffic delivered late and out of order (some beyond the allowed lateness),
    with repeated ids and a few rejects, keyed to partitions as the producer does."""
    spec = sim.SimSpec(
        start=ENGINE_START, seed=5, hours=3, subscribers=300, bulk_diallers=1,
        late_fraction=0.2, max_late_s=2400,
    )  # fmt: skip
    records, _ = sim.generate(spec)
    records = records + records[::97] + [{"cdr_id": "bad", "caller": A}]
    out: list[tuple[int, CDR | Reject]] = []
    for doc in records:
        partition = partition_for(str(doc["caller"]).encode(), PARTITIONS)
        out.append((partition, parse_record(doc, CHINA)))
    return out


async def test_compare_passes_on_the_engines_own_state() -> None:
    stored, recount = await engine_state(late_traffic())
    assert recount.rejected["too_late"] > 0 and recount.duplicates > 0
    tally: Counter[str] = Counter()
    assert compare(recount, stored, tally) == []
    assert tally["numbers"] == recount.numbers() == len(stored.numbers)
    assert tally["buckets"] > tally["numbers"]


def _busiest(stored: Stored) -> tuple[int, str]:
    return max(stored.numbers, key=lambda k: sum(v[0] for v in stored.numbers[k].short.values()))


def _last_written(stored: Stored, recount: Recount) -> tuple[int, str]:
    part = recount.partitions[0]
    number = max(part.numbers, key=lambda n: part.numbers[n].last_offset)
    return 0, number


def drop_bucket(stored: Stored, recount: Recount) -> tuple[int, str]:
    key = _busiest(stored)
    state = stored.numbers[key]
    del state.short[max(state.short)]
    return key


def add_call(stored: Stored, recount: Recount) -> tuple[int, str]:
    key = _busiest(stored)
    state = stored.numbers[key]
    state.long[min(state.long)][0] += 1
    return key


def drop_number(stored: Stored, recount: Recount) -> tuple[int, str]:
    key = _last_written(stored, recount)
    del stored.numbers[key]
    return key


def forget_ids(stored: Stored, recount: Recount) -> tuple[int, str]:
    key = _last_written(stored, recount)
    stored.numbers[key].seen.clear()
    return key


def add_number(stored: Stored, recount: Recount) -> tuple[int, str]:
    key = (1, "13999999999")
    stored.numbers[key] = NumberState(newest_ms=T0 * 1000, short={1: [1]}, long={1: [1]})
    return key


def offset_behind(stored: Stored, recount: Recount) -> tuple[int, str]:
    stored.meta[2] = replace(stored.meta[2], offset=stored.meta[2].offset - 1)
    return 2, ""


@pytest.mark.parametrize(
    ("corrupt", "kind"),
    [
        (drop_bucket, "missing_bucket"),
        (add_call, "bucket"),
        (drop_number, "missing_number"),
        (forget_ids, "seen"),
        (add_number, "unexpected_number"),
        (offset_behind, "offset"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
async def test_compare_finds(corrupt: object, kind: str) -> None:
    stored, recount = await engine_state(late_traffic())
    assert callable(corrupt)
    partition, number = corrupt(stored, recount)
    diffs = compare(recount, stored)
    assert [(d.kind, d.partition) for d in diffs] == [(kind, partition)], diffs
    assert diffs[0].number == (number or None)
    assert diffs[0].is_error


async def test_expired_keys_are_reported_apart() -> None:
    """A number quiet for longer than the key TTL (in event time) may be gone from Redis; one
    written after a number still present may not."""
    quiet = [(0, rec(f"q{i}", A, i * 60)) for i in range(5)]
    later = [(0, rec(f"l{i}", n, 27 * 3600 + i)) for i, n in enumerate((B, C))]
    stored, recount = await engine_state([(p, parse_record(d, CHINA)) for p, d in quiet + later])
    assert compare(recount, stored) == []
    del stored.numbers[(0, A)]
    [diff] = compare(recount, stored)
    assert (diff.kind, diff.number, diff.is_error) == (EXPIRED, A, False)
    del stored.numbers[(0, C)]  # written last: B, still there, was written before it
    kinds = {d.number: d.kind for d in compare(recount, stored)}
    assert kinds == {A: EXPIRED, C: "missing_number"}


def test_alert_count() -> None:
    alerts = AlertCount()
    for doc in (
        {"alert_id": "a1", "detector": "robocall", "action": "intercept"},
        {"alert_id": "a2", "detector": "robocall", "action": "intercept"},
        {"alert_id": "a1", "detector": "robocall", "action": "intercept"},
        {"detector": "robocall"},
    ):
        alerts.add(orjson.dumps(doc))
    alerts.add(b"{not json")
    assert (alerts.total, len(alerts.ids), alerts.malformed) == (5, 2, 2)
    assert alerts.by_kind == {"robocall/intercept": 3}
    assert [d.kind for d in alerts.differences()] == ["duplicate_alert", "bad_alert"]
    assert "a1 published 2 times" in alerts.differences()[0].detail


@pytest.mark.parametrize(
    "args",
    [["verify", "--redis", "redis://127.0.0.1:1"], ["verify", __file__, "--topic", "t"]],
    ids=["no-input", "both-inputs"],
)
def test_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert "either --topic or FILES" in capsys.readouterr().err


def test_difference_text() -> None:
    d = Difference("bucket", "short bucket x: state 2 calls, recount 1", 3, A)
    assert " ".join(str(d).split()) == f"bucket p3 {A}: short bucket x: state 2 calls, recount 1"
    alert = Difference("duplicate_alert", "alert_id ab published 2 times")
    assert " ".join(str(alert).split()) == "duplicate_alert alert_id ab published 2 times"


# --- real components ---------------------------------------------------------------------


def verify_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", "verify", *args],
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        timeout=240,
    )


def summary(stdout: str) -> dict[str, int]:
    """The summary figures: label -> number."""
    out = {}
    for line in stdout.splitlines()[1:]:
        *label, figure = line.split()
        if figure.replace(",", "").isdigit():
            out[" ".join(label)] = int(figure.replace(",", ""))
    return out


def callees(records: list[dict[str, object]]) -> set[str]:
    return {str(r["callee"]) for r in records}


@pytest.mark.e2e
def test_scan_state_verifies_and_a_corrupt_bucket_is_named(
    tmp_path: Path, redis_url: str, unique: str
) -> None:
    # Delivered out of order, some beyond the allowed lateness: scan replays files sorted by
    # start_time, so it accepts them all, and verify must read the files the same way.
    spec = sim.SimSpec(
        start=START, seed=3, hours=2, subscribers=300, bulk_diallers=1,
        late_fraction=0.2, max_late_s=2400,
    )  # fmt: skip
    records, labels = sim.generate(spec)
    repeats = [dict(r) for r in records[50:450:20]]  # the same cdr_ids delivered again
    records = records[:300] + repeats + records[300:]
    path = tmp_path / "cdrs.jsonl"
    sim.write_jsonl(path, records)
    prefix = f"v{unique}"
    env = {**os.environ, "DIALWATCH_KEY_PREFIX": prefix}
    subprocess.run(
        [sys.executable, "-m", "streams", "scan", str(path), "--redis", redis_url],
        capture_output=True,
        env=env,
        check=True,
    )
    done = verify_cli(str(path), "--redis", redis_url, "--prefix", prefix)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(HEADLINE + "\n")
    figures = summary(done.stdout)
    assert figures["records read"] == len(records)
    assert figures["duplicates"] == len(repeats)
    assert figures["accepted"] == len(records) - len(repeats)  # nothing too late
    assert figures["numbers compared"] == figures["numbers in input"] > 100
    assert not any(c in done.stdout for c in callees(records))

    dialler = labels[0].number
    client = redis.Redis.from_url(redis_url)
    key = f"{prefix}:{{p0}}:n:{dialler}"
    blob = client.get(key)
    assert isinstance(blob, bytes)
    state = from_blobs(blob, None)
    bucket = sorted(state.short)[len(state.short) // 2]
    state.short[bucket][0] -= 1
    client.set(key, windows_blob(state), keepttl=True)
    client.close()

    done = verify_cli(str(path), "--redis", redis_url, "--prefix", prefix)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("DIFFERENCES: 1\n")
    [line] = [ln for ln in done.stdout.splitlines() if dialler in ln]
    assert line.split()[:3] == ["bucket", "p0", f"{dialler}:"]
    assert not any(c in done.stdout for c in callees(records))


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    web_port: int
    log: Path

    def processed(self) -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5)
        total = 0.0
        for line in body.read().decode().splitlines():
            if line.startswith("dialwatch_cdrs_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture
def worker(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> Iterator[Worker]:
    """The Faust worker with its own topics, group and key prefix (as in test_e2e.py)."""
    env = worker_env(kafka_bootstrap, redis_url, unique, PARTITIONS)
    web_port = int(env["DIALWATCH_WEB_PORT"])
    log = tmp_path / "worker.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    yield Worker(proc, env, web_port, log)
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until_processed(worker: Worker, expected: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    seen = 0.0
    while time.monotonic() < deadline:
        assert worker.proc.poll() is None, worker.log.read_text()[-3000:]
        try:
            seen = worker.processed()
        except OSError:
            seen = 0.0
        if seen >= expected:
            return
        time.sleep(0.25)
    raise AssertionError(f"worker processed {seen} of {expected}\n{worker.log.read_text()[-3000:]}")


@pytest.mark.e2e
def test_worker_state_verifies_from_the_topic(worker: Worker, kafka_bootstrap: str) -> None:
    spec = sim.SimSpec(
        start=START, seed=3, hours=2, subscribers=300, bulk_diallers=1,
        late_fraction=0.2, max_late_s=2400,
    )  # fmt: skip
    records, _ = sim.generate(spec)
    records = [*records, *records[::50], {"cdr_id": "bad-1", "caller": A}]
    topic = worker.env["DIALWATCH_CDR_TOPIC"]
    sim.produce(records, kafka_bootstrap, topic, PARTITIONS, batch_size=40)
    wait_until_processed(worker, len(records))
    alerts = worker.env["DIALWATCH_ALERT_TOPIC"]
    env = {**worker.env, "DIALWATCH_REDIS": ""}  # --redis given explicitly
    prefix = worker.env["DIALWATCH_KEY_PREFIX"]
    args = ("--topic", topic, "--alerts", alerts, "--redis", worker.env["DIALWATCH_REDIS"])
    done = verify_cli(*args, "--prefix", prefix, "--wait", "30", env=env)
    assert done.returncode == 0, done.stdout + done.stderr + worker.log.read_text()[-3000:]
    assert done.stdout.startswith(HEADLINE + "\n")
    figures = summary(done.stdout)
    assert figures["records read"] == len(records)
    assert figures["rejected too_late"] > 0  # the admission rule was exercised
    assert figures["rejected missing_field"] == 1
    assert figures["duplicates"] > 0
    assert figures["distinct alert ids"] == figures["alerts"] > 0
    assert figures["alerts bulk_dialling/intercept"] >= 1
    assert not any(c in done.stdout for c in callees(records[:-1]))
