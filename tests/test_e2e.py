"""End to end: the Faust worker consumes from the real broker into a real Redis, and the scan CLI.

Each test gets its own topics, consumer group and Redis key prefix.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer

from config.settings import Settings
from streams import simulate as sim
from streams.cli import default_start
from streams.services import create_topics, free_port

pytestmark = pytest.mark.e2e
PARTITIONS = 4
START = default_start(Settings())
SPEC = sim.SimSpec(start=START, seed=11, hours=3, subscribers=600, bulk_diallers=1, near_miss=1)


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

    def processed(self) -> float:
        return sum(
            self.metric("dialwatch_cdrs_total", f'{{result="{r}"}}')
            for r in ("accepted", "duplicate", "rejected")
        )


@pytest.fixture
def worker(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> Iterator[Worker]:
    topics = {"cdr": f"cdrs-{unique}", "alert": f"alerts-{unique}", "dead": f"dead-{unique}"}
    create_topics(
        kafka_bootstrap, {topics["cdr"]: PARTITIONS, topics["alert"]: 1, topics["dead"]: 1}
    )
    web_port = free_port()
    env = {
        **os.environ,
        "DIALWATCH_KAFKA": kafka_bootstrap,
        "DIALWATCH_REDIS": redis_url,
        "DIALWATCH_CDR_TOPIC": topics["cdr"],
        "DIALWATCH_ALERT_TOPIC": topics["alert"],
        "DIALWATCH_DEAD_LETTER_TOPIC": topics["dead"],
        "DIALWATCH_APP_ID": f"dialwatch-{unique}",
        "DIALWATCH_KEY_PREFIX": f"t{unique}",
        "DIALWATCH_TOPIC_PARTITIONS": str(PARTITIONS),
        "DIALWATCH_WEB_PORT": str(web_port),
        "DIALWATCH_SESSION_TIMEOUT_S": "6",
        "DIALWATCH_HEARTBEAT_INTERVAL_S": "1",
        "DIALWATCH_REBALANCE_TIMEOUT_S": "6",
    }
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


def read_topic(bootstrap: str, topic: str) -> list[dict[str, object]]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        return [orjson.loads(m.value) for m in consumer]
    finally:
        consumer.close()


def intercepted(alerts: list[dict[str, object]]) -> list[str]:
    return sorted(str(a["number"]) for a in alerts if a["action"] == "intercept")


@pytest.mark.parametrize("batch_size", [1, 200], ids=["one-cdr-per-message", "json-arrays"])
def test_worker_intercepts_the_dialler_and_nobody_else(
    worker: Worker, kafka_bootstrap: str, batch_size: int
) -> None:
    records, labels = sim.generate(SPEC)
    roles = {label.number: label.role for label in labels}
    topic = worker.env["DIALWATCH_CDR_TOPIC"]
    sim.produce(records, kafka_bootstrap, topic, PARTITIONS, batch_size=batch_size)
    wait_until_processed(worker, len(records))
    alerts = read_topic(kafka_bootstrap, worker.env["DIALWATCH_ALERT_TOPIC"])
    diallers = sorted(n for n, role in roles.items() if role == "bulk_dialler")
    assert intercepted(alerts) == diallers  # exactly one intercept, for the dialler only
    near_miss = [n for n, role in roles.items() if role == "near_miss"]
    assert near_miss and not [a for a in alerts if a["number"] in near_miss]
    assert worker.metric("dialwatch_cdrs_total", '{result="accepted"}') == len(records)
    alert = next(a for a in alerts if a["action"] == "intercept")
    assert alert["reasons"] and str(alert["reasons"][0]).endswith(">= 250")  # type: ignore[index]
    assert set(alert) >= {
        "alert_id", "episode_id", "number", "detector", "severity", "action", "category",
        "event_time", "detected_at", "evidence", "reasons", "schema_version", "policy_version",
    }  # fmt: skip


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
    alerts = read_topic(kafka_bootstrap, worker.env["DIALWATCH_ALERT_TOPIC"])
    diallers = sorted(label.number for label in labels if label.role == "bulk_dialler")
    assert intercepted(alerts) == diallers
    assert worker.metric("dialwatch_cdrs_total", '{result="accepted"}') == len(records)
    assert worker.metric("dialwatch_rejected_cdrs_total", '{reason="too_late"}') == 0


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
    consumer = KafkaConsumer(
        worker.env["DIALWATCH_DEAD_LETTER_TOPIC"],
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    dead = [(m.value, dict(m.headers)) for m in consumer]
    consumer.close()
    assert sorted(v for v, _ in dead) == sorted([b"{not json", b'{"cdr_id": "x"}', b"\xff\xfe"])
    assert {h["reason"] for _, h in dead} == {b"malformed_json", b"missing_field"}


def test_scan_cli_prints_the_dialler_intercept(tmp_path: Path, redis_url: str) -> None:
    records, labels = sim.generate(SPEC)
    path = tmp_path / "cdrs.csv.gz"
    sim.write_csv(path, records)
    diallers = sorted(label.number for label in labels if label.role == "bulk_dialler")
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


def test_demo_runs_and_intercepts_every_dialler(kafka_bootstrap: str, redis_url: str) -> None:
    env = {**os.environ, "DIALWATCH_KAFKA": kafka_bootstrap, "DIALWATCH_REDIS": redis_url}
    done = subprocess.run(
        [sys.executable, "-m", "streams", "demo", "--subscribers", "500", "--hours", "1.5"],
        capture_output=True,
        env=env,
        timeout=240,
    )
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, output[-3000:]
    assert "false intercepts  none" in output and "PASS" in output
    assert output.count("intercepted") >= 2
