"""One day of traffic through every path gives the same alerts (issue 12 item 1).

A small labelled scenario is rewritten record by record (seeded, so the files are fixed) into
the legal written forms of every field streams/cdr.py accepts:

- ``duration_s``: an integer, ``"144"``, ``144.0``, ``"144.0"``, ``hh:mm:ss``, ``m:ss``, and
  real decimals a second below (``143.3``, ``"00:02:23.5"``). The contract rounds a duration
  up to whole seconds (README "CDR (input)"), so ``143.3`` is the 144 s call the scenario made:
  the rounding itself is exercised and the CDR stays the same.
- ``answered``: booleans, ``1/0`` (numbers and strings), ``yes/no``, ``Y/N``, ``t/f``, any case.
- ``start_time``: ISO-8601 with the zone's offset, with ``Z``, with a space for ``T``, with
  milliseconds or a sub-millisecond fraction (floored: the same millisecond), epoch seconds
  and milliseconds (numbers and strings, seconds also with a sub-millisecond fraction), and
  local wall time without a zone (read in DIALWATCH_TIMEZONE).
- ``caller`` and ``callee``: ``+86``, ``0086`` and ``86`` before a national number, spaces and
  dashes between groups, ``+`` for ``00`` before a foreign number. A form is used only when it
  normalises to what the original does (checked here), so each record is the same call.
- ``release_cause`` as a number or a string.

Required, comparing every field of an alert but the wall-clock ``detected_at`` (ids, event
times, evidence, reasons):

- scan of the multi-form contract CSV, JSON Lines and gzip JSON Lines equals scan of the plain
  contract JSON Lines;
- the worker (real broker, real Redis, 4 partitions), fed the multi-form records in event-time
  order as keyed single messages and as partition-aligned JSON arrays, publishes exactly
  scan's alerts, stage 2's (callees, blocks, trunks, a block member's own alert) included:
  stage 2 applies its observations in canonical order whatever the interleaving of the caller
  partitions (issue 17, docs/ordering.md);
- fed them in the scenario's delivery order (its late records late), it intercepts the same
  numbers.

Messages are keyed (and arrays aligned) by the caller's normalised number: re-keying records
whose raw key hashes elsewhere is issue 12 item 2 (repartitioning), tested on its own.
"""

from __future__ import annotations

import csv
import gzip
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from kafka import KafkaProducer

from config.numbering import CHINA, normalise
from config.settings import Settings
from streams.cdr import CDR, parse_records
from streams.observe import derived_obs
from streams.tools.fleet import worker_env
from streams.tools.scenario import SCENARIO_FIELDS, Scenario, ScenarioSpec, generate_scenario
from streams.tools.simulate import batch_by_partition, default_start
from streams.topics import partition_for
from tests.integration.test_e2e import Worker, published_alerts, wait_until_processed

pytestmark = pytest.mark.e2e
PARTITIONS = 4
TZ = ZoneInfo(Settings().timezone)
# Every pattern once (a few dozen alerts, stage 2 included), a few seconds per path.
SPEC = ScenarioSpec(start=default_start(Settings()), seed=5, subscribers=800, hours=6, scale=0.1)
FORM_SEED = 1212
Record = dict[str, object]


@dataclass(frozen=True)
class Day:
    scenario: Scenario
    in_order: list[Record]  # the plain contract records, by start_time
    forms: Counter[str]  # how often each written form was used
    multi: list[Record]  # in_order rewritten, record by record
    late: list[Record]  # the rewritten records in the scenario's delivery order


def _ms(record: Mapping[str, object]) -> int:
    return int(datetime.fromisoformat(str(record["start_time"])).timestamp() * 1000)


def _start(ms: int, rng: random.Random, used: Counter[str]) -> object:
    local = datetime.fromtimestamp(ms / 1000, TZ)
    utc = local.astimezone(UTC)
    s = ms // 1000
    forms: dict[str, object] = {
        "iso_offset": local.isoformat(),
        "iso_z": utc.isoformat().replace("+00:00", "Z"),
        "iso_space": local.isoformat(sep=" "),
        "iso_ms": local.isoformat(timespec="milliseconds"),
        "iso_sub_ms": utc.replace(microsecond=rng.randint(1, 999)).isoformat(),
        "epoch_s": s,
        "epoch_s_text": str(s),
        "epoch_s_fraction": f"{s}.0004",
        "epoch_ms": ms,
        "epoch_ms_text": str(ms),
        "local": local.replace(tzinfo=None).isoformat(),
        "local_space": local.replace(tzinfo=None).isoformat(sep=" "),
    }
    name = rng.choice(sorted(forms))
    used[f"start_time:{name}"] += 1
    return forms[name]


def _duration(d: int, rng: random.Random, used: Counter[str]) -> object:
    h, rest = divmod(d, 3600)
    m, sec = divmod(rest, 60)
    forms: dict[str, object] = {
        "int": d,
        "text": str(d),
        "float": float(d),
        "float_text": f"{d}.0",
        "clock": f"{h:02d}:{m:02d}:{sec:02d}",
    }
    if d < 3600:
        forms["clock_ms"] = f"{m}:{sec:02d}"
    if d > 0:  # a real fraction, rounded up to d
        tenth = rng.randint(1, 9)
        forms["decimal"] = float(f"{d - 1}.{tenth}")
        forms["decimal_text"] = f"{d - 1}.{tenth}"
        h1, rest1 = divmod(d - 1, 3600)
        m1, s1 = divmod(rest1, 60)
        forms["clock_fraction"] = f"{h1:02d}:{m1:02d}:{s1:02d}.5"
    name = rng.choice(sorted(forms))
    used[f"duration_s:{name}"] += 1
    return forms[name]


_ANSWERED: dict[bool, tuple[object, ...]] = {
    True: (True, 1, "1", "true", "TRUE", "True", "yes", "YES", "y", "Y", "t"),
    False: (False, 0, "0", "false", "FALSE", "False", "no", "No", "n", "N", "f"),
}


def _groups(digits: str, sep: str) -> str:
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


def _number(raw: str, rng: random.Random, used: Counter[str], field: str) -> str:
    canonical = normalise(raw, CHINA)
    assert canonical is not None, raw
    candidates = {
        "as_written": raw,
        "plus86": "+86" + canonical,
        "0086": "0086" + canonical,
        "86": "86" + canonical,
        "plus86_spaced": "+86 " + _groups(canonical, " "),
        "dashed": _groups(canonical, "-"),
        "spaced": " " + _groups(canonical, " ") + " ",
    }
    if canonical.startswith("00"):
        candidates["plus_foreign"] = "+" + canonical[2:]
        candidates["00_spaced"] = "00 " + _groups(canonical[2:], " ")
    legal = sorted(k for k, v in candidates.items() if normalise(v, CHINA) == canonical)
    name = rng.choice(legal)
    used[f"{field}:{name}"] += 1
    return candidates[name]


def rewrite(record: Mapping[str, object], rng: random.Random, used: Counter[str]) -> Record:
    out: Record = dict(record)
    out["start_time"] = _start(_ms(record), rng, used)
    out["duration_s"] = _duration(int(str(record["duration_s"])), rng, used)
    answered = rng.choice(_ANSWERED[bool(record["answered"])])
    used[f"answered:{answered!r}"] += 1
    out["answered"] = answered
    out["caller"] = _number(str(record["caller"]), rng, used, "caller")
    out["callee"] = _number(str(record["callee"]), rng, used, "callee")
    if record.get("release_cause") is not None and rng.random() < 0.5:
        out["release_cause"] = str(record["release_cause"])
    return out


@pytest.fixture(scope="module")
def day() -> Day:
    scenario = generate_scenario(SPEC)
    in_order = sorted(scenario.records, key=_ms)  # stable: ties keep delivery order
    rng = random.Random(FORM_SEED)
    used: Counter[str] = Counter()
    multi_of = {str(r["cdr_id"]): rewrite(r, rng, used) for r in in_order}
    multi = [multi_of[str(r["cdr_id"])] for r in in_order]
    late = [multi_of[str(r["cdr_id"])] for r in scenario.records]
    assert late != multi  # some records really are late
    # The rewrite changes no call: the parser reads every rewritten record as the original.
    assert parse_records(multi, CHINA, TZ) == parse_records(in_order, CHINA, TZ)
    return Day(scenario, in_order, used, multi, late)


def test_every_written_form_is_used(day: Day) -> None:
    fields = Counter(key.split(":")[0] for key in day.forms)
    assert fields["start_time"] == 12 and fields["duration_s"] == 9, day.forms
    assert fields["answered"] == 22 and fields["caller"] >= 8, day.forms
    assert all(count >= 5 for count in day.forms.values()), day.forms


def comparable(alerts: Sequence[Mapping[str, object]]) -> list[bytes]:
    """Every field but the wall clock, in a canonical order."""
    out = []
    for alert in alerts:
        doc = {k: v for k, v in alert.items() if k != "detected_at"}
        out.append(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
    return sorted(out)


def scan(path: Path, allowlist: Path) -> list[dict[str, object]]:
    env = {**os.environ, "DIALWATCH_REDIS": "", "DIALWATCH_TIMEZONE": str(TZ)}
    done = subprocess.run(
        [sys.executable, "-m", "streams", "scan", str(path), "--allowlist", str(allowlist)],
        capture_output=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "rejected" not in done.stderr.decode(), done.stderr.decode()
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_csv(path: Path, records: Sequence[Mapping[str, object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(SCENARIO_FIELDS)
        for record in records:
            writer.writerow([_cell(record.get(name)) for name in SCENARIO_FIELDS])


def jsonl(records: Sequence[Mapping[str, object]]) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)


@pytest.fixture(scope="module")
def files(day: Day, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("every-path")
    (folder / "allow.txt").write_text("\n".join(day.scenario.allowlist) + "\n")
    (folder / "plain.jsonl").write_bytes(jsonl(day.in_order))
    (folder / "multi.jsonl").write_bytes(jsonl(day.multi))
    (folder / "multi.jsonl.gz").write_bytes(gzip.compress(jsonl(day.multi)))
    write_csv(folder / "multi.csv", day.multi)
    return folder


@pytest.fixture(scope="module")
def reference(files: Path) -> list[dict[str, object]]:
    """scan of the plain contract JSON Lines: what every path must give."""
    alerts = scan(files / "plain.jsonl", files / "allow.txt")
    subjects = Counter(str(a["subject"]) for a in alerts)
    assert subjects["number"] >= 30 and len(subjects) == 4, subjects  # stage 2 raises too
    return alerts


@pytest.mark.parametrize("name", ["multi.csv", "multi.jsonl", "multi.jsonl.gz"])
def test_scan_of_every_file_form_gives_the_same_alerts(
    files: Path, reference: list[dict[str, object]], name: str
) -> None:
    assert comparable(scan(files / name, files / "allow.txt")) == comparable(reference)


def caller_partition(record: Mapping[str, object]) -> tuple[bytes, int]:
    key = str(normalise(str(record["caller"]), CHINA)).encode()
    return key, partition_for(key, PARTITIONS)


def send(bootstrap: str, topic: str, records: Sequence[Record], arrays: bool) -> None:
    """Keyed single messages, or JSON arrays of 200 whose callers share a partition."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    try:
        if not arrays:
            for record in records:
                key, partition = caller_partition(record)
                producer.send(topic, key=key, value=orjson.dumps(record), partition=partition)
        else:
            proxies = [
                {"caller": caller_partition(r)[0].decode(), "i": i} for i, r in enumerate(records)
            ]
            for partition, batch in batch_by_partition(proxies, PARTITIONS, 200):
                value = orjson.dumps([records[int(str(p["i"]))] for p in batch])
                producer.send(topic, value=value, partition=partition)
        producer.flush()
    finally:
        producer.close()


def run(
    worker: Worker, bootstrap: str, day: Day, records: Sequence[Record], arrays: bool
) -> list[dict[str, object]]:
    send(bootstrap, worker.env["DIALWATCH_CDR_TOPIC"], records, arrays)
    wait_until_processed(worker, len(records))
    settings = Settings(allowlist_file=None)
    cdrs = [r for r in parse_records(day.in_order, CHINA) if isinstance(r, CDR)]
    observed = len(derived_obs(cdrs, settings.international_trunks, 0, CHINA))
    wait_until_processed(worker, observed, metric="dialwatch_derived_observations_total")
    assert worker.metric("dialwatch_cdrs_total", '{result="rejected"}') == 0
    return published_alerts(worker)


@dataclass(frozen=True)
class Run:
    alerts: list[dict[str, object]]
    too_late: float  # dialwatch_rejected_cdrs_total{reason="too_late"} at the end


ORDERS = ("event-time", "delivery")
SHAPES = {False: "keyed-single", True: "aligned-arrays"}


@pytest.fixture(scope="module")
def runs(
    kafka_bootstrap: str, redis_url: str, files: Path, day: Day,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[tuple[str, bool], Future[Run]]]:  # fmt: skip
    """The four worker runs (event-time and delivery order, keyed single messages and aligned
    arrays) side by side: each its own worker, topics, group and key prefix. A test takes its
    run's result (or its error)."""
    workers: list[Worker] = []

    def one(order: str, arrays: bool) -> Run:
        unique = uuid.uuid4().hex[:10]
        env = worker_env(
            kafka_bootstrap,
            redis_url,
            unique,
            PARTITIONS,
            DIALWATCH_ALLOWLIST_FILE=str(files / "allow.txt"),
            DIALWATCH_API_TOKEN=f"token-{unique}",
            DIALWATCH_TIMEZONE=str(TZ),
        )
        log = tmp_path_factory.mktemp(f"{order}-{SHAPES[arrays]}") / "worker.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker"], env=env, stdout=fh, stderr=fh
            )
        worker = Worker(proc, env, int(env["DIALWATCH_WEB_PORT"]), log)
        workers.append(worker)
        records = day.multi if order == "event-time" else day.late
        alerts = run(worker, kafka_bootstrap, day, records, arrays)
        return Run(alerts, worker.metric("dialwatch_rejected_cdrs_total", '{reason="too_late"}'))

    pool = ThreadPoolExecutor(len(ORDERS) * len(SHAPES))
    try:
        yield {(o, a): pool.submit(one, o, a) for o in ORDERS for a in SHAPES}
    finally:
        pool.shutdown(wait=True)
        for worker in workers:
            worker.proc.terminate()
        for worker in workers:
            try:
                worker.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()


def intercepted(alerts: Sequence[Mapping[str, object]]) -> list[tuple[str, str]]:
    return sorted(
        {(str(a["subject"]), str(a["number"])) for a in alerts if a["action"] == "intercept"}
    )


@pytest.mark.parametrize("arrays", list(SHAPES), ids=list(SHAPES.values()))
def test_worker_gives_scans_alerts_for_records_in_event_time_order(
    runs: dict[tuple[str, bool], Future[Run]], reference: list[dict[str, object]], arrays: bool
) -> None:
    alerts = runs["event-time", arrays].result(timeout=300).alerts
    derived = {a["detector"] for a in reference if a["subject"] != "number"}
    assert derived  # stage 2 raises alerts here, compared in full like stage 1's
    assert comparable(alerts) == comparable(reference)


@pytest.mark.parametrize("arrays", list(SHAPES), ids=list(SHAPES.values()))
def test_worker_intercepts_the_same_numbers_when_records_come_late(
    runs: dict[tuple[str, bool], Future[Run]], reference: list[dict[str, object]], arrays: bool
) -> None:
    done = runs["delivery", arrays].result(timeout=300)
    assert intercepted(done.alerts) == intercepted(reference)
    assert done.too_late == 0
