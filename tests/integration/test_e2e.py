"""End to end: the Faust worker consumes from the real broker into a real Redis, and the scan CLI.

Each test gets its own topics, consumer group and Redis key prefix.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import redis

from config.numbering import CHINA
from config.settings import Settings
from streams.cdr import CDR, parse_records
from streams.observe import derived_obs
from streams.tools import simulate as sim
from streams.tools.evaluate import evaluate
from streams.tools.fleet import read_records, read_topic, wait_confirmed, worker_env
from streams.tools.scenario import ScenarioSpec, generate_scenario
from streams.tools.simulate import default_start
from tests.factories import dial, record_dict

pytestmark = pytest.mark.e2e
PARTITIONS = 4
START = default_start(Settings())
SPEC = sim.SimSpec(start=START, seed=11, hours=3, subscribers=600, bulk_diallers=1, near_miss=1)
# Every pattern and every legitimate class at least once, small enough for CI.
SCENARIO = ScenarioSpec(start=START, seed=5, subscribers=800, hours=6, scale=0.1)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    web_port: int
    log: Path

    def metric(self, name: str, labels: str = "") -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5)
        text = body.read().decode()
        match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def processed(self, metric: str = "dialwatch_cdrs_total") -> float:
        return sum(
            self.metric(metric, f'{{result="{r}"}}')
            for r in ("accepted", "duplicate", "rejected", "to_trunk")
        )


def start_worker(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, **extra: str
) -> Worker:
    """A worker on its own topics, group and key prefix, with the scenario's allowlist, an API
    token and ``extra`` settings; its log in ``tmp_path``."""
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text("\n".join(generate_scenario(SCENARIO).allowlist) + "\n")
    env = worker_env(
        kafka_bootstrap,
        redis_url,
        unique,
        PARTITIONS,
        DIALWATCH_ALLOWLIST_FILE=str(allowlist),
        DIALWATCH_API_TOKEN=f"token-{unique}",
        DIALWATCH_ALLOWLIST_REFRESH_S="1",
        **extra,
    )
    web_port = int(env["DIALWATCH_WEB_PORT"])
    log = tmp_path / "worker.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    return Worker(proc, env, web_port, log)


def stop_worker(worker: Worker) -> None:
    worker.proc.terminate()
    try:
        worker.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        worker.proc.wait()


@pytest.fixture
def worker(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> Iterator[Worker]:
    started = start_worker(kafka_bootstrap, redis_url, unique, tmp_path)
    yield started
    stop_worker(started)


def wait_until_processed(
    worker: Worker, expected: int, timeout_s: float = 120, metric: str = "dialwatch_cdrs_total"
) -> None:
    deadline = time.monotonic() + timeout_s
    seen = 0.0
    while time.monotonic() < deadline:
        assert worker.proc.poll() is None, worker.log.read_text()[-3000:]
        try:
            seen = worker.processed(metric)
        except OSError:
            seen = 0.0
        if seen >= expected:
            return
        time.sleep(0.25)
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=5)
        counts = [line for line in page.read().decode().splitlines() if "_total{" in line]
    except OSError as exc:
        counts = [f"metrics unavailable: {exc}"]
    raise AssertionError(
        f"worker processed {seen} of {expected}\n" + "\n".join(counts) + "\n"
        f"{worker.log.read_text()[-3000:]}"
    )


def published_alerts(worker: Worker) -> list[dict[str, object]]:
    """The worker's alert topic, read to its end once every alert it has written with its state
    is confirmed published: after a wait on its counts, whose last batch may still be sending."""
    client = redis.Redis.from_url(worker.env["DIALWATCH_REDIS"])
    try:
        wait_confirmed(client, worker.env["DIALWATCH_KEY_PREFIX"], PARTITIONS)
    finally:
        client.close()
    return read_topic(worker.env["DIALWATCH_KAFKA"], worker.env["DIALWATCH_ALERT_TOPIC"])


def intercepted(alerts: list[dict[str, object]]) -> list[str]:
    return sorted({str(a["number"]) for a in alerts if a["action"] == "intercept"})


def flagged(alerts: list[dict[str, object]]) -> set[tuple[str, str, str, str]]:
    """Who was flagged, by which detector, to what end: what must not depend on the driver."""
    return {
        (str(a["subject"]), str(a["number"]), str(a["detector"]), str(a["action"]))
        for a in alerts
        if a["state"] != "cleared"
    }


def flags_every_pattern(
    worker: Worker, kafka_bootstrap: str, batch_size: int, tmp_path: Path
) -> None:
    """A small labelled scenario with every pattern and every legitimate class: the worker
    (two stages over Kafka and Redis) raises the same intercepts and protections as scan."""
    scenario = generate_scenario(SCENARIO)
    records = scenario.records
    topic = worker.env["DIALWATCH_CDR_TOPIC"]
    sim.produce(records, kafka_bootstrap, topic, PARTITIONS, batch_size=batch_size)
    wait_until_processed(worker, len(records))
    settings = Settings(allowlist_file=None)
    cdrs = [r for r in parse_records(records, CHINA) if isinstance(r, CDR)]
    observed = len(derived_obs(cdrs, settings.international_trunks, 0, CHINA))
    wait_until_processed(worker, observed, metric="dialwatch_derived_observations_total")
    alerts = published_alerts(worker)

    path = tmp_path / "scenario.jsonl"
    sim.write_jsonl(path, records)
    done = subprocess.run(
        [sys.executable, "-m", "streams", "scan", str(path)],
        capture_output=True,
        env={**worker.env, "DIALWATCH_REDIS": ""},
        check=True,
    )
    scanned = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert flagged(alerts) == flagged(scanned)
    assert len({a["alert_id"] for a in alerts}) == len(alerts)  # no alert published twice

    report = evaluate(
        records,
        scenario.labels,
        alerts,
        settings.pseudonym_key.encode(),
        allowlist=scenario.allowlist,
    )
    assert report.false_intercepts == ()
    for pattern in report.patterns:
        assert pattern.detected == pattern.labelled, pattern
    counted = sum(
        worker.metric("dialwatch_cdrs_total", f'{{result="{r}"}}') for r in ("accepted", "to_trunk")
    )
    assert counted == len(records)
    assert worker.metric("dialwatch_cdrs_total", '{result="to_trunk"}') > 0


BATCH_SIZES = {1: "one-cdr-per-message", 200: "json-arrays"}


@pytest.fixture(scope="module")
def pattern_runs(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[int, Future[None]]]:
    """``flags_every_pattern`` for each batch size side by side, each its own worker, topics,
    group and key prefix; each test takes its run's outcome (its assertion error, if any)."""
    workers: list[Worker] = []

    def one(batch_size: int) -> None:
        tmp = tmp_path_factory.mktemp(BATCH_SIZES[batch_size])
        worker = start_worker(kafka_bootstrap, redis_url, uuid.uuid4().hex[:10], tmp)
        workers.append(worker)
        flags_every_pattern(worker, kafka_bootstrap, batch_size, tmp)

    pool = ThreadPoolExecutor(len(BATCH_SIZES))
    try:
        yield {size: pool.submit(one, size) for size in BATCH_SIZES}
    finally:
        pool.shutdown(wait=True)
        for worker in workers:
            stop_worker(worker)


@pytest.mark.parametrize("batch_size", list(BATCH_SIZES), ids=list(BATCH_SIZES.values()))
def test_worker_flags_every_pattern_as_scan_does(
    pattern_runs: dict[int, Future[None]], batch_size: int
) -> None:
    """``flags_every_pattern``, one CDR per message and JSON arrays of 200 (run side by side)."""
    pattern_runs[batch_size].result(timeout=280)


def test_late_out_of_order_mediation_files_give_the_same_intercepts(
    worker: Worker, kafka_bootstrap: str
) -> None:
    late_spec = sim.SimSpec(
        start=START, seed=11, hours=3, subscribers=600, bulk_diallers=1, near_miss=1,
        late_fraction=0.3, max_late_s=900,
    )  # fmt: skip
    records, labels = sim.generate(late_spec)
    in_order = sorted(records, key=lambda r: str(r["start_time"]))
    assert records != in_order  # really delivered out of order
    sim.produce(records, kafka_bootstrap, worker.env["DIALWATCH_CDR_TOPIC"], PARTITIONS, 100)
    wait_until_processed(worker, len(records))
    alerts = published_alerts(worker)
    # The near miss stays just under every intercepting level (README, simulate's roles).
    diallers = sorted(label.number for label in labels if label.role == sim.BULK_DIALLER)
    assert intercepted(alerts) == diallers
    assert worker.metric("dialwatch_cdrs_total", '{result="accepted"}') == len(records)
    assert worker.metric("dialwatch_rejected_cdrs_total", '{reason="too_late"}') == 0


def post(worker: Worker, path: str, body: dict[str, object], token: str | None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.web_port}{path}",
        data=orjson.dumps(body),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_allowlist_entries_added_at_run_time_win_over_every_detector(
    worker: Worker, kafka_bootstrap: str
) -> None:
    wait_for_web(worker)
    token = worker.env["DIALWATCH_API_TOKEN"]
    assert post(worker, "/allowlist", {"number": "17099998888"}, None)[0] == 401
    assert post(worker, "/allowlist", {"number": "17099998888"}, "wrong")[0] == 401
    assert post(worker, "/allowlist", {"number": "not a number"}, token)[0] == 400
    status, body = post(worker, "/allowlist", {"number": "+86 170 9999 8888"}, token)
    assert status == 200 and orjson.loads(body)["entries"] >= 1
    assert "17099998888" not in body  # the response never echoes numbers
    t0 = START.timestamp()
    records = [
        record_dict(c)
        for caller in ("17099998888", "17011112222")
        for c in dial(caller, 300, 1200, start_s=t0)
    ]
    sim.produce(records, kafka_bootstrap, worker.env["DIALWATCH_CDR_TOPIC"], PARTITIONS, 50)
    wait_until_processed(worker, len(records))
    alerts = published_alerts(worker)
    listed = [a for a in alerts if a["number"] == "17099998888"]
    assert listed and {a["action"] for a in listed} == {"monitor"}
    assert all(a["allowlisted"] for a in listed)
    assert intercepted(alerts) == ["17011112222"]


def test_complaint_reports_tighten_thresholds_and_name_the_category(
    worker: Worker, kafka_bootstrap: str
) -> None:
    """A complaint sent to the complaints topic makes the worker flag a number at 18 calls in
    4 minutes (22 without it), with the reported category; bad reports are dead-lettered."""
    from kafka import KafkaProducer

    wait_for_web(worker)
    t0 = START.timestamp()
    report = {
        "complaint_id": "12321-77",
        "number": "13612345678",
        "category": "debt_collection",
        "reported_at": t0 - 3600,
    }
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    topic = worker.env["DIALWATCH_COMPLAINT_TOPIC"]
    producer.send(topic, key=b"13612345678", value=orjson.dumps(report))
    producer.send(topic, key=b"x", value=b'{"complaint_id": "bad"}')
    producer.flush()
    producer.close()
    deadline = time.monotonic() + 60
    while worker.metric("dialwatch_complaints_total", '{result="accepted"}') < 1:
        assert time.monotonic() < deadline, worker.log.read_text()[-3000:]
        time.sleep(0.25)
    calls = [
        {**record_dict(c), "callee": f"13{(i * 7919) % 10**9:09d}"}
        for i, c in enumerate(dial("13612345678", 18, 216, start_s=t0))
    ]
    sim.produce(calls, kafka_bootstrap, worker.env["DIALWATCH_CDR_TOPIC"], PARTITIONS, 1)
    wait_until_processed(worker, len(calls))
    alerts = published_alerts(worker)
    assert [(a["number"], a["action"], a["category"]) for a in alerts] == [
        ("13612345678", "intercept", "debt_collection")
    ]
    assert worker.metric("dialwatch_complaints_total", '{result="bad_number"}') == 1


def wait_for_web(worker: Worker, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert worker.proc.poll() is None, worker.log.read_text()[-3000:]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/health", timeout=2)
            return
        except OSError:
            time.sleep(0.25)
    raise AssertionError("worker web server did not start")


def test_bad_messages_are_dead_lettered_and_counted(worker: Worker, kafka_bootstrap: str) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    topic = worker.env["DIALWATCH_CDR_TOPIC"]
    good = {
        "cdr_id": "ok-1", "caller": "13800138000", "callee": "13900139000",
        "start_time": START.isoformat(), "duration_s": 5, "answered": True,
    }  # fmt: skip
    for value in (b"{not json", b'{"cdr_id": "x"}', orjson.dumps(good), b"\xff\xfe"):
        producer.send(topic, key=b"13800138000", value=value, partition=0)
    producer.flush()
    producer.close()
    wait_until_processed(worker, 4)
    assert worker.metric("dialwatch_cdrs_total", '{result="accepted"}') == 1
    assert worker.metric("dialwatch_rejected_cdrs_total", '{reason="malformed_json"}') == 2
    assert worker.metric("dialwatch_rejected_cdrs_total", '{reason="missing_field"}') == 1
    # Sent after the counts (with the batch's alerts): waited for, up to the three expected.
    deadline = time.monotonic() + 30
    while True:
        dead = [
            (m.value, dict(m.headers))
            for m in read_records(kafka_bootstrap, worker.env["DIALWATCH_DEAD_LETTER_TOPIC"])
        ]
        if len(dead) >= 3 or time.monotonic() > deadline:
            break
    assert sorted(v for v, _ in dead) == sorted([b"{not json", b'{"cdr_id": "x"}', b"\xff\xfe"])
    assert {h["reason"] for _, h in dead} == {b"malformed_json", b"missing_field"}


def test_scan_cli_prints_the_dialler_intercept(tmp_path: Path, redis_url: str) -> None:
    records, labels = sim.generate(SPEC)
    path = tmp_path / "cdrs.csv.gz"
    sim.write_csv(path, records)
    # The near miss stays just under every intercepting level (README, simulate's roles).
    diallers = sorted(label.number for label in labels if label.role == sim.BULK_DIALLER)
    for extra in ([], ["--redis", redis_url]):
        env = {**os.environ, "DIALWATCH_KEY_PREFIX": f"scan{time.monotonic_ns()}"}
        done = subprocess.run(
            [sys.executable, "-m", "streams", "scan", str(path), *extra],
            capture_output=True,
            env=env,
            check=True,
        )
        alerts = [orjson.loads(line) for line in done.stdout.splitlines()]
        assert intercepted(alerts) == diallers, done.stderr.decode()
        assert f"scanned {len(records):,} records" in done.stderr.decode()
