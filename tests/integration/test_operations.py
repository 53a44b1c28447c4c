"""Operations (issue 16): a real Prometheus (loopback, 1 s scrapes, its own storage) scrapes a
worker fed a known stream; its query API must give exactly what was produced and rejected,
every dashboard panel's query must return data, the alerting rules must load and evaluate,
and ``promtool check metrics`` must pass on the worker's exposition.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from config.settings import Settings
from streams.tools import simulate as sim
from streams.tools.fleet import worker_env
from streams.tools.services import free_port, wait_for_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "dialwatch.json"
PROMETHEUS = "/usr/bin/prometheus"
PARTITIONS = 2
SPEC = sim.SimSpec(
    start=sim.default_start(Settings()), seed=3, hours=2, subscribers=150, near_miss=0,
    bulk_diallers=2,
)  # fmt: skip
MALFORMED = 7  # messages that are not JSON
BAD_NUMBERS = 5  # records whose caller is not a number
DUPLICATES = 20  # good records sent a second time


@dataclass
class Stack:
    worker: subprocess.Popen[bytes]
    prometheus: subprocess.Popen[bytes]
    env: dict[str, str]
    web_port: int
    prom_port: int
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}
        )
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, expr: str, expected: float, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        seen = None
        while time.monotonic() < deadline:
            assert self.worker.poll() is None, self.log.read_text()[-3000:]
            seen = self.value(expr)
            if seen == expected:
                return
            time.sleep(0.5)
        log = [line for line in self.log.read_text().splitlines() if "WARNING" in line]
        raise AssertionError(f"{expr}: {seen}, expected {expected}\n" + "\n".join(log[-20:]))


@pytest.fixture
def stack(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> Iterator[Stack]:
    prom_port = free_port()
    env = worker_env(
        kafka_bootstrap,
        redis_url,
        unique,
        PARTITIONS,
        DIALWATCH_METRICS_REFRESH_S="1",
        DIALWATCH_FETCH_MAX_WAIT_MS="10",
    )
    web_port = int(env["DIALWATCH_WEB_PORT"])
    log = tmp_path / "worker.log"
    with log.open("wb") as fh:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{json.dumps(str(RULES))}]\n"
        "scrape_configs:\n"
        "  - job_name: dialwatch\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{web_port}']}}]\n"
    )
    prom_log = tmp_path / "prometheus.log"
    with prom_log.open("wb") as fh:
        prometheus = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(prom_port, 30, prometheus)
        wait_ready(f"http://127.0.0.1:{prom_port}/-/ready", prometheus)
        yield Stack(worker, prometheus, env, web_port, prom_port, log)
    finally:
        for proc in (worker, prometheus):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"prometheus exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout_s} s")


def produce_known_stream(bootstrap: str, topic: str) -> int:
    """The simulated stream as aligned arrays, then bad messages on partition 0 and repeats
    of the newest records (within the lateness horizon). Returns the good records sent once."""
    records, _ = sim.generate(SPEC)
    # Paced over about 8 s, so the histograms' rates span several 1 s scrapes.
    sim.produce(records, bootstrap, topic, PARTITIONS, batch_size=50, rate_per_s=120)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for i in range(MALFORMED):
            producer.send(topic, value=b"{not json " + str(i).encode(), partition=0)
        for i in range(BAD_NUMBERS):
            bad = {**records[i], "cdr_id": f"bad-{i}", "caller": "not-a-number"}
            producer.send(topic, value=orjson.dumps(bad), partition=0)
        for partition, batch in sim.batch_by_partition(records[-DUPLICATES:], PARTITIONS, 100):
            producer.send(topic, value=orjson.dumps(batch), partition=partition)
        producer.flush()
    finally:
        producer.close()
    return len(records)


def read_alerts(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        return [orjson.loads(m.value) for m in consumer]
    finally:
        consumer.close()


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", "2m"))
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


def test_prometheus_sees_exactly_the_known_stream(stack: Stack, kafka_bootstrap: str) -> None:
    """Counters through Prometheus's query API equal what was produced and rejected; every
    dashboard panel returns data; the rules load and evaluate; promtool accepts /metrics."""
    topic = stack.env["DIALWATCH_CDR_TOPIC"]
    # The worker has its partitions (the lag gauges report them): the stream is then
    # processed as it comes, over several scrapes, rather than in one catch-up burst.
    stack.wait_value("count(dialwatch_consumer_lag_messages)", 3 * PARTITIONS, 60)
    good = produce_known_stream(kafka_bootstrap, topic)
    stack.wait_value('sum(dialwatch_cdrs_total{result=~"accepted|to_trunk"})', good, 90)
    stack.wait_value('sum(dialwatch_cdrs_total{result="duplicate"})', DUPLICATES)
    stack.wait_value('sum(dialwatch_cdrs_total{result="rejected"})', MALFORMED + BAD_NUMBERS)
    stack.wait_value('sum(dialwatch_rejected_cdrs_total{reason="malformed_json"})', MALFORMED)
    stack.wait_value('sum(dialwatch_rejected_cdrs_total{reason="bad_number"})', BAD_NUMBERS)

    alerts = read_alerts(kafka_bootstrap, stack.env["DIALWATCH_ALERT_TOPIC"])
    assert alerts, stack.log.read_text()[-3000:]
    stack.wait_value("sum(dialwatch_alerts_total)", len(alerts))
    listed = {
        a["number"]
        for a in alerts
        if a["action"] == "intercept" and a["subject"] == "number" and not a["allowlisted"]
    }
    stack.wait_value('max(dialwatch_interception_numbers{state="intercepted"})', len(listed))
    # Everything consumed and applied: both views of the lag come down to 0.
    stack.wait_value("sum(dialwatch_state_lag_messages)", 0, 30)
    stack.wait_value("sum(dialwatch_consumer_lag_messages)", 0, 30)

    missing: dict[str, str] = {}
    deadline = time.monotonic() + 20
    queries = panel_queries()
    assert len(queries) >= 12
    while True:
        missing = {title: expr for title, expr in queries if not finite(stack.query(expr))}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    counts = stack.query("dialwatch_alert_latency_seconds_count")
    assert not missing, f"panels without data: {missing} {counts}"

    with urllib.request.urlopen(
        f"http://127.0.0.1:{stack.prom_port}/api/v1/rules", timeout=5
    ) as response:
        groups = json.load(response)["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 8
    assert all(rule["health"] == "ok" for rule in rules), rules

    with urllib.request.urlopen(
        f"http://127.0.0.1:{stack.web_port}/metrics", timeout=5
    ) as response:
        exposition = response.read()
    for name in ("dialwatch_event_time_lag_seconds", "dialwatch_redis_seconds_bucket"):
        assert name.encode() in exposition
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
