"""Hostile input, end to end: the real worker, broker and Redis, one produce, many assertions.

Between a few hundred good CDRs from a handful of callers, interleaved on every partition of the
CDR topic, go one message per hostile case (malformed JSON, wrong types, missing fields, absurd
values, huge strings, invalid UTF-8, deep nesting, non-objects, a mixed array, an exact duplicate)
and a sudden flood of 3,000 calls in a minute from one number. Then:

* every rejected record is counted under exactly its reason, the good ones exactly as accepted
  (per caller too, read back from Redis), the duplicate as ``duplicate``;
* the dead-letter topic holds exactly one message per rejected record, with its reason and the
  original message bytes (the whole message for a record from an array);
* the flood is counted exactly and intercepted, and nobody else is;
* ``dialwatch verify`` accounts for every record;
* no input number or string reaches the worker's log, the metrics, or a Redis key name;
* the worker is still running.
"""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer

from config.numbering import CHINA
from streams.cdr import CDR, decode_message
from streams.observe import derived_obs
from streams.state.blob import from_blobs
from streams.tools.verify import HEADLINE
from streams.topics import partition_for
from tests.integration.test_e2e import (
    PARTITIONS,
    START,
    Worker,
    intercepted,
    published_alerts,
    wait_until_processed,
    worker,  # noqa: F401  (the fixture)
)

pytestmark = pytest.mark.e2e

T0 = START.astimezone(UTC)
GOOD_CALLERS_PER_PARTITION = 2
GOOD_CALLS = 40  # per good caller, one every 30 s: 20 minutes, all answered, no detector fires
FLOOD_CALLS = 3000  # in one minute
FLOOD_ARRAY = 500  # records per flood message
BIG = 880_000  # a string field that keeps its message under DEAD_LETTER_MAX_BYTES (900,000)
HUGE = 960_000  # a message above it, still under the producers' 1 MB requests: cut, not lost
DEAD_LETTER_MAX_BYTES = 900_000
BIG_DIGITS = "9081726354"  # repeated: a distinctive digit string, never a real number


def iso(at: datetime) -> str:
    return at.isoformat()


@dataclass
class Plan:
    """What was sent and what each part of it must become."""

    messages: list[tuple[int, bytes | None, bytes]] = field(default_factory=list)
    records: int = 0  # records the worker must count (an empty array holds none)
    accepted: Counter[str] = field(default_factory=Counter)  # caller -> accepted calls
    reasons: Counter[str] = field(default_factory=Counter)  # reason -> rejected records
    dead: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # (sha, reason, part)
    dead_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # sha -> (sent, full)
    duplicates: int = 0
    numbers: set[str] = field(default_factory=set)  # every phone number in the input
    rejected_numbers: set[str] = field(default_factory=set)  # numbers only in rejected records
    markers: list[str] = field(default_factory=list)  # input strings that must go nowhere
    hostile: list[tuple[int, bytes | None, bytes]] = field(default_factory=list)
    good: list[str] = field(default_factory=list)  # the good callers
    flood: str = ""  # the flooding number
    letters: str = ""  # a caller number with a letter in it


def sha(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def build() -> Plan:
    rng = random.Random(20261129)
    plan = Plan()
    used: set[str] = set()

    def fresh(prefix: str, digits: int) -> str:
        while True:
            number = prefix + "".join(rng.choice("0123456789") for _ in range(digits))
            if number not in used:
                used.add(number)
                return number

    def callee() -> str:
        number = fresh("15", 9)
        plan.numbers.add(number)
        return number

    def rec(cid: str, caller: object, at: datetime, /, **over: object) -> dict[str, object]:
        doc: dict[str, object] = {
            "cdr_id": cid,
            "caller": caller,
            "callee": callee(),
            "start_time": iso(at),
            "duration_s": 120,
            "answered": True,
        }
        doc.update(over)
        return doc

    # Good callers: two per partition, each in its own 100-number block.
    good: list[str] = []
    per_partition: Counter[int] = Counter()
    blocks: set[str] = set()
    while len(good) < GOOD_CALLERS_PER_PARTITION * PARTITIONS:
        number = fresh("139", 8)
        p = partition_for(number.encode(), PARTITIONS)
        if per_partition[p] < GOOD_CALLERS_PER_PARTITION and number[:-2] not in blocks:
            per_partition[p] += 1
            blocks.add(number[:-2])
            good.append(number)
    plan.numbers.update(good)
    flood = fresh("135", 8)
    plan.numbers.add(flood)

    def part(number: str) -> int:
        return partition_for(number.encode(), PARTITIONS)

    good_msgs: list[tuple[datetime, int, bytes, bytes]] = []
    for c, caller in enumerate(good):
        for i in range(GOOD_CALLS):
            at = T0 + timedelta(seconds=i * 30 + c * 3)
            doc = rec(f"g-{caller}-{i}", caller, at, duration_s=60 + (i * 37) % 240)
            good_msgs.append((at, part(caller), caller.encode(), orjson.dumps(doc)))
            plan.accepted[caller] += 1
            plan.records += 1
    good_msgs.sort(key=lambda m: m[0])

    def hostile(value: bytes, reasons: list[str], p: int) -> None:
        """One message and its records' reject reasons (each dead-lettered with the whole
        message, cut at DEAD_LETTER_MAX_BYTES)."""
        plan.hostile.append((p, None, value))
        for reason in reasons:
            plan.reasons[reason] += 1
            plan.records += 1
            full = value
            cut = full[:DEAD_LETTER_MAX_BYTES]
            plan.dead[(sha(cut), reason, p)] += 1
            plan.dead_sizes[sha(cut)] = (len(cut), len(full))

    def victim() -> str:
        """A valid caller seen only in one rejected record: it must never reach any state."""
        number = fresh("136", 8)
        plan.numbers.add(number)
        plan.rejected_numbers.add(number)
        return number

    def bad(reason: str, **over: object) -> None:
        caller = victim()
        doc = rec(f"h-{len(plan.hostile)}", caller, T0 + timedelta(minutes=5), **over)
        if isinstance(doc["callee"], str) and doc["callee"].isdigit():
            plan.rejected_numbers.add(doc["callee"])
        hostile(orjson.dumps(doc), [reason], part(caller))

    spread = iter(range(10_000))

    def anywhere() -> int:
        return next(spread) % PARTITIONS

    # Malformed JSON and bytes that are no JSON document at all.
    hostile(b'{"cdr_id": "h-m", "caller": "13611112222", "callee": ', ["malformed_json"], 0)
    plan.numbers.add("13611112222")
    hostile(b"\xff\xfe", ["malformed_json"], anywhere())
    text = rec("h-utf8", "13622223333", T0)
    raw = orjson.dumps(text).replace(b'"h-utf8"', b'"h-\xc3\x28\xff"')
    plan.numbers.add("13622223333")
    hostile(raw, ["malformed_json"], anywhere())
    hostile(b"[" * 100_000 + b"]" * 100_000, ["malformed_json"], anywhere())
    hostile(b"", ["malformed_json"], anywhere())
    hostile(b'{"cdr_id": "h-nan", "duration_s": NaN}', ["malformed_json"], anywhere())
    # Not an object.
    hostile(b"null", ["not_an_object"], anywhere())
    hostile(b"3", ["not_an_object"], anywhere())
    hostile(b'"13633334444"', ["not_an_object"], anywhere())
    plan.numbers.add("13633334444")
    hostile(b"[]", [], anywhere())  # an empty array: no record, nothing to count or dead-letter
    # Missing fields.
    hostile(orjson.dumps({"cdr_id": "h-mf", "caller": victim()}), ["missing_field"], 1)
    bad("missing_field", callee=None)
    bad("missing_field", start_time=None)
    # Wrong types and numbers with letters.
    bad("bad_duration", duration_s="abc")
    bad("bad_duration", duration_s="12a")
    bad("bad_type", answered=3)
    bad("bad_type", answered="maybe")
    bad("bad_type", release_cause=999)
    bad("bad_type", direction="d" * 65)
    bad("bad_id", cdr_id="")
    bad("bad_id", cdr_id={"id": 1})
    bad("bad_id", cdr_id="i" * 129)
    letters = "1361234567O"  # the letter O, not a zero
    for wrong in (13612345678.5, True, ["13612345678"], letters, "+86 136 1234 ABCD"):
        doc = rec(f"h-{len(plan.hostile)}", wrong, T0)
        plan.rejected_numbers.add(str(doc["callee"]))
        hostile(orjson.dumps(doc), ["bad_number"], anywhere())
    bad("bad_number", callee="1391234567X")
    # Absurd values.
    bad("bad_duration", duration_s=-5)
    bad("bad_duration", duration_s=10**9)
    bad("bad_duration", duration_s=1e300)
    bad("bad_time", start_time="1970-01-01T00:00:00+00:00")
    bad("bad_time", start_time=0)
    bad("bad_time", start_time="2999-06-01T00:00:00+00:00")
    bad("bad_time", start_time="yesterday at noon")
    # a local time (no offset) is legal, read in DIALWATCH_TIMEZONE: this one is long past
    bad("too_late", start_time="2026-01-01T00:00:00")
    bad("bad_time", start_time="1700000000abc")
    bad("future", start_time="2090-01-01T00:00:00+00:00")
    bad("too_late", start_time=iso(T0 - timedelta(hours=2)))
    # Deep nesting inside a field, and huge strings.
    for depth, reason in ((1000, "bad_number"), (5000, "malformed_json")):
        caller = victim()
        doc = rec(f"h-deep-{depth}", caller, T0)
        plan.rejected_numbers.add(str(doc["callee"]))
        deep = b'{"a":' * depth + b'"13612345678"' + b"}" * depth
        value = orjson.dumps(doc).replace(f'"{caller}"'.encode(), deep)
        hostile(value, [reason], part(caller))  # orjson reads at most 1024 levels
    big_caller = (BIG_DIGITS * (BIG // len(BIG_DIGITS) + 1))[:BIG]
    plan.markers.append(big_caller[:40])
    doc = rec("h-big", big_caller, T0)
    plan.rejected_numbers.add(str(doc["callee"]))
    hostile(orjson.dumps(doc), ["bad_number"], anywhere())
    huge_caller = (BIG_DIGITS * (HUGE // len(BIG_DIGITS) + 1))[:HUGE]
    doc = rec("h-huge", huge_caller, T0)
    plan.rejected_numbers.add(str(doc["callee"]))
    hostile(orjson.dumps(doc), ["bad_number"], anywhere())
    big_id = "HOSTILE-ID-" + "x" * BIG
    plan.markers.append("HOSTILE-ID-")
    bad("bad_id", cdr_id=big_id)

    # Good records in hostile clothing: they count for their (good) caller.
    host = good[0]
    mixed = [
        rec("a-1", host, T0 + timedelta(seconds=601)),
        {"cdr_id": "a-2", "caller": host},
        None,
        rec("a-3", host, T0 + timedelta(seconds=602)),
        rec("a-4", letters, T0 + timedelta(seconds=603)),
        [rec("a-5", host, T0 + timedelta(seconds=604))],
    ]
    plan.rejected_numbers.add(str(mixed[4]["callee"]))  # type: ignore[index]
    plan.rejected_numbers.add(str(mixed[5][0]["callee"]))  # type: ignore[index]
    plan.accepted[host] += 2
    plan.records += 2
    hostile(
        orjson.dumps(mixed),
        ["missing_field", "not_an_object", "bad_number", "not_an_object"],
        part(host),
    )
    as_int = good[1]
    doc = rec("i-1", int(as_int), T0 + timedelta(seconds=605))
    plan.hostile.append((part(as_int), as_int.encode(), orjson.dumps(doc)))
    plan.accepted[as_int] += 1  # an integer caller is a documented form: normalised, accepted
    plan.records += 1
    fat = good[2]
    note = "NOTE-" + "z" * 100_000
    plan.markers.append("NOTE-")
    doc = rec("n-1", fat, T0 + timedelta(seconds=606), note=note)  # unknown fields are ignored
    plan.hostile.append((part(fat), fat.encode(), orjson.dumps(doc)))
    plan.accepted[fat] += 1
    plan.records += 1

    # The flood: 3,000 calls in one minute, mostly unanswered, as arrays on its partition.
    flood_at = T0 + timedelta(minutes=10)
    calls = [
        rec(
            f"f-{i}",
            flood,
            flood_at + timedelta(seconds=i * 60 / FLOOD_CALLS),
            answered=i % 5 == 0,
            duration_s=3 if i % 5 == 0 else 0,
        )
        for i in range(FLOOD_CALLS)
    ]
    flood_msgs = [
        (part(flood), None, orjson.dumps(calls[i : i + FLOOD_ARRAY]))
        for i in range(0, FLOOD_CALLS, FLOOD_ARRAY)
    ]
    plan.accepted[flood] += FLOOD_CALLS
    plan.records += FLOOD_CALLS

    # Interleave: a third of the good records first (every partition has seen good records, so
    # the too-late record is too late), then one hostile message, or a flood array, after every
    # few good ones, then the rest, then an exact duplicate of a good record.
    first = len(good_msgs) // 3
    out: list[tuple[int, bytes | None, bytes]] = [(p, k, v) for _, p, k, v in good_msgs[:first]]
    extra = plan.hostile + flood_msgs
    rng.shuffle(extra)
    rest = [(p, k, v) for _, p, k, v in good_msgs[first:]]
    step = max(1, len(rest) // (len(extra) + 1))
    for i, message in enumerate(extra):
        out.extend(rest[i * step : (i + 1) * step])
        out.append(message)
    out.extend(rest[len(extra) * step :])
    _, p, k, v = good_msgs[len(good_msgs) // 2]
    out.append((p, k, v))
    plan.duplicates = 1
    plan.records += 1
    # A message that holds no record still moves its partition's offset on: as the last
    # message of a partition, it must not make the state look ahead of the input.
    out.append((part(flood), None, b"[]"))
    plan.messages = out
    plan.good, plan.flood, plan.letters = good, flood, letters
    return plan


def produce(bootstrap: str, topic: str, messages: list[tuple[int, bytes | None, bytes]]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=5,
        acks="all",
        max_in_flight_requests_per_connection=1,
    )
    try:
        futures = [
            producer.send(topic, key=key, value=value, partition=p) for p, key, value in messages
        ]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)
    finally:
        producer.close()


def dead_letters(bootstrap: str, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=4000
    )
    try:
        return [(m.value or b"", dict(m.headers)) for m in consumer]
    finally:
        consumer.close()


def metrics_text(running: Worker) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{running.web_port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def derived_expected(plan: Plan) -> int:
    """Derived observations stage 2 must count: one per subject of each CDR stage 1 admits.
    The parsed hostile records ("h-" ids: in the future, too late) are rejected by stage 1
    and never forwarded."""
    per_partition: dict[int, list[CDR]] = {}
    for p, _, value in plan.messages:
        for rec in decode_message(value, CHINA):
            if isinstance(rec, CDR) and not rec.cdr_id.startswith("h-"):
                per_partition.setdefault(p, []).append(rec)
    return sum(len(derived_obs(cdrs, ("intl-",), p, CHINA)) for p, cdrs in per_partition.items())


class Checks:
    """Every expectation of the one run, reported together (a failure names all of them)."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def equal(self, what: str, got: object, want: object) -> None:
        if got != want:
            self.failed.append(f"{what}: got {got!r}, want {want!r}")

    def true(self, what: str, ok: bool) -> None:
        if not ok:
            self.failed.append(what)


def test_hostile_input_is_rejected_counted_dead_lettered_and_leaks_nowhere(
    worker: Worker,  # noqa: F811
    kafka_bootstrap: str,
    redis_url: str,
) -> None:
    plan = build()
    flood, letters = plan.flood, plan.letters
    topic = worker.env["DIALWATCH_CDR_TOPIC"]
    produce(kafka_bootstrap, topic, plan.messages)
    wait_until_processed(worker, plan.records, timeout_s=180)
    wait_until_processed(
        worker,
        derived_expected(plan),
        timeout_s=180,
        metric="dialwatch_derived_observations_total",
    )
    check = Checks()

    # Counted: each reason exactly, the good records exactly, the duplicate once.
    accepted = sum(plan.accepted.values())
    for result, want in (
        ("accepted", accepted),
        ("duplicate", plan.duplicates),
        ("rejected", sum(plan.reasons.values())),
        ("to_trunk", 0),
    ):
        got = worker.metric("dialwatch_cdrs_total", f'{{result="{result}"}}')
        check.equal(f"dialwatch_cdrs_total{{result={result}}}", got, want)
    text = metrics_text(worker)
    counted = {
        reason: float(n)
        for reason, n in re.findall(
            r'^dialwatch_rejected_cdrs_total\{reason="(\w+)"\} (\S+)$', text, re.MULTILINE
        )
    }
    want_counts = {reason: float(n) for reason, n in plan.reasons.items()}
    for reason in sorted(set(counted) | set(want_counts)):
        check.equal(
            f"dialwatch_rejected_cdrs_total{{reason={reason}}}",
            counted.get(reason, 0.0),
            want_counts.get(reason, 0.0),
        )

    # Dead letters: one per rejected record, from the CDR topic, with its reason and the
    # original bytes (the whole message for a record from an array; cut at 900,000 bytes
    # with a "truncated" header giving the original length).
    dead = dead_letters(kafka_bootstrap, worker.env["DIALWATCH_DEAD_LETTER_TOPIC"])
    got_dead: Counter[tuple[str, str, int]] = Counter()
    foreign: Counter[tuple[str, str, int]] = Counter()
    for value, headers in dead:
        source = headers.get("source", b"").decode()
        src_topic, _, rest = source.partition("/")
        src_partition, _, src_offset = rest.partition("/")
        reason = headers.get("reason", b"").decode()
        if src_topic != topic:
            foreign[(reason, src_topic, len(value))] += 1
            continue
        check.true(
            f"dead letter source {source!r}", src_partition.isdigit() and src_offset.isdigit()
        )
        got_dead[(sha(value), reason, int(src_partition or -1))] += 1
        sent, full = plan.dead_sizes.get(sha(value), (len(value), len(value)))
        check.equal(
            f"dead letter ({reason}, {len(value)} bytes) truncated header",
            headers.get("truncated"),
            str(full).encode() if full > sent else None,
        )
        detail = headers.get("detail", b"").decode(errors="replace")
        check.true(f"dead letter detail is short: {detail[:100]!r}", 0 < len(detail) <= 200)
        check.true(
            f"dead letter detail quotes no number: {detail!r}",
            not any(n in detail for n in plan.numbers),
        )
    check.equal("dead letters from other topics (reason, topic, bytes)", dict(foreign), {})
    missing = plan.dead - got_dead
    extra = got_dead - plan.dead
    check.equal(
        "dead letters missing (reason, partition, size)",
        sorted((r, p, plan.dead_sizes[h][0], n) for (h, r, p), n in missing.items()),
        [],
    )
    check.equal(
        "unexpected CDR dead letters (reason, partition)",
        sorted((r, p, n) for (_, r, p), n in extra.items()),
        [],
    )

    # The flood: counted exactly and intercepted; nobody else intercepted; every good
    # caller's calls counted exactly (short and long windows, from the Redis state).
    alerts = published_alerts(worker)
    check.equal("intercepted numbers", intercepted(alerts), [flood])
    prefix = worker.env["DIALWATCH_KEY_PREFIX"]
    client = redis.Redis.from_url(redis_url)
    try:
        for number, calls in sorted(plan.accepted.items()):
            p = partition_for(number.encode(), PARTITIONS)
            blob = client.get(f"{prefix}:{{p{p}}}:n:{number}")
            if blob is None:
                check.true(f"no state for caller {number}", False)
                continue
            state = from_blobs(bytes(blob), None)  # type: ignore[arg-type]
            check.equal(
                f"long-window calls of {number}", sum(v[0] for v in state.long.values()), calls
            )
            check.equal(
                f"short-window calls of {number}", sum(v[0] for v in state.short.values()), calls
            )
        keys = [bytes(k) for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    finally:
        client.close()

    # Nothing from the input reaches a Redis key name unvalidated or unbounded.
    check.true("the worker wrote Redis keys", len(keys) > len(plan.accepted))
    for key in keys:
        name = key.decode("ascii", errors="replace")
        check.true(f"key of {len(key)} bytes: {name[:150]!r}", len(key) < 120)
        check.true(f"key not printable ASCII: {name[:150]!r}", key.isascii() and name.isprintable())
        check.true(
            f"key holds a bad number: {name!r}", letters not in name and "1391234567X" not in name
        )
        check.true(
            f"key holds an input string: {name[:150]!r}", not any(m in name for m in plan.markers)
        )
        check.true(
            f"key holds a number only rejected records had: {name!r}",
            not any(n in name for n in plan.rejected_numbers),
        )

    # dialwatch verify recounts the topic and finds the state and alerts consistent.
    env = {**worker.env, "DIALWATCH_REDIS": ""}
    done = subprocess.run(
        [
            sys.executable, "-m", "streams", "verify", "--topic", topic,
            "--alerts", worker.env["DIALWATCH_ALERT_TOPIC"],
            "--redis", worker.env["DIALWATCH_REDIS"], "--prefix", prefix, "--wait", "30",
        ],
        capture_output=True, text=True, env=env, timeout=240,
    )  # fmt: skip
    check.true(f"verify:\n{done.stdout}{done.stderr[-2000:]}", done.returncode == 0)
    check.true(f"verify headline: {done.stdout[:200]!r}", done.stdout.startswith(HEADLINE + "\n"))
    figures = {
        " ".join(label): int(figure.replace(",", ""))
        for *label, figure in (line.split() for line in done.stdout.splitlines()[1:])
        if figure.replace(",", "").isdigit()
    }
    check.equal("verify: accepted", figures.get("accepted"), accepted)
    check.equal("verify: duplicates", figures.get("duplicates"), plan.duplicates)
    for reason, n in sorted(plan.reasons.items()):
        check.equal(f"verify: rejected {reason}", figures.get(f"rejected {reason}"), n)

    # Nor a log line or a metric.
    log = worker.log.read_text(errors="replace")
    check.true("the worker logged", "dialwatch" in log)
    for number in sorted(plan.numbers | {letters, "1391234567X"}):
        check.true(f"number {number} in the worker log", number not in log)
        check.true(f"number {number} in /metrics", number not in text)
    for marker in plan.markers:
        check.true(f"input string {marker!r} in the log or /metrics", marker not in log + text)
    check.true(f"a traceback in the worker log:\n{log[-3000:]}", "Traceback" not in log)
    labels = re.findall(r'="((?:[^"\\]|\\.)*)"', text)
    check.true("/metrics has labelled series", len(labels) > 10)
    for value in labels:
        check.true(f"metric label value of {len(value)} chars: {value[:100]!r}", len(value) <= 64)

    check.true(f"the worker stopped:\n{log[-3000:]}", worker.proc.poll() is None)
    assert not check.failed, "\n".join(check.failed)
