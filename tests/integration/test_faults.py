"""Fault injection against the real broker and Redis: a worker killed with SIGKILL in the middle
of a stream of more than 30,000 CDRs, then restarted. Afterwards the window counts equal an
independent recount (``dialwatch verify``), no alert id appears twice on the topic, and the
caller-stage alert ids equal those of a fault-free run of the same records (``scan``)."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis

from config.settings import Settings
from streams.factory import build_engines
from streams.scan import scan
from streams.tools import simulate as sim
from streams.tools.fleet import applied, end_offsets, read_topic, worker_env
from streams.tools.services import free_port
from streams.tools.simulate import default_start

pytestmark = pytest.mark.e2e
PARTITIONS = 4
SPEC = sim.SimSpec(
    start=default_start(Settings()), seed=21, hours=12, subscribers=4_000, bulk_diallers=3
)
CALLER_DETECTORS = {
    "bulk_dialling",
    "robocall",
    "quota_dialling",
    "sequential_dialling",
    "one_ring",
}


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"], env=env, stdout=fh, stderr=fh
        )


def wait_caught_up(
    client: redis.Redis, env: dict[str, str], proc: subprocess.Popen[bytes], log: Path
) -> None:
    kafka, prefix = env["DIALWATCH_KAFKA"], env["DIALWATCH_KEY_PREFIX"]
    deadline = time.monotonic() + 420
    for topic, key in (
        (env["DIALWATCH_CDR_TOPIC"], prefix),
        (env["DIALWATCH_DERIVED_TOPIC"], f"{prefix}:x"),
    ):
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            ends = end_offsets(kafka, topic)
            done = applied(client, key, PARTITIONS)
            # Tansu may report a partition's end as the first offset of its last batch, so
            # "caught up" is at or past it, and stable across two looks.
            if ends and all(done[p] >= end for p, end in ends.items()):
                time.sleep(2)
                if applied(client, key, PARTITIONS) == done:
                    break
            assert time.monotonic() < deadline, (topic, ends, applied(client, key, PARTITIONS))
            time.sleep(0.5)


def fault_free(records: list[dict[str, object]], tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "cdrs.jsonl"
    sim.write_jsonl(path, records)

    async def run() -> str:
        engine, derived = build_engines(Settings())
        out = io.StringIO()
        await scan(engine, [str(path)], out, io.StringIO(), derived=derived)
        return out.getvalue()

    return [orjson.loads(line) for line in asyncio.run(run()).splitlines()]


@pytest.mark.timeout(600)
def test_kill_9_mid_stream_then_restart_loses_and_repeats_nothing(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path
) -> None:
    records, _ = sim.generate(SPEC)
    assert len(records) >= 30_000
    env = worker_env(kafka_bootstrap, redis_url, unique, PARTITIONS)
    sim.produce(records, kafka_bootstrap, env["DIALWATCH_CDR_TOPIC"], PARTITIONS, batch_size=100)
    total = sum(end_offsets(kafka_bootstrap, env["DIALWATCH_CDR_TOPIC"]).values())
    client = redis.Redis.from_url(redis_url)
    log = tmp_path / "worker.log"
    first = start(env, log)
    try:
        deadline = time.monotonic() + 240
        while sum(applied(client, env["DIALWATCH_KEY_PREFIX"], PARTITIONS).values()) < total * 0.3:
            assert first.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        first.kill()  # SIGKILL: no shutdown, no offset commit
        first.wait()
        done_before = sum(applied(client, env["DIALWATCH_KEY_PREFIX"], PARTITIONS).values())
        assert done_before < total  # really killed mid-stream
        env["DIALWATCH_WEB_PORT"] = str(free_port())
        second = start(env, log)
        try:
            wait_caught_up(client, env, second, log)
        finally:
            second.terminate()
            second.wait(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()

    alerts = read_topic(kafka_bootstrap, env["DIALWATCH_ALERT_TOPIC"])  # the worker stopped
    ids = [str(a["alert_id"]) for a in alerts]
    assert len(ids) == len(set(ids)), "an alert was published twice"
    reference = fault_free(records, tmp_path)

    def caller_ids(rows: list[dict[str, object]]) -> set[str]:
        return {str(a["alert_id"]) for a in rows if a["detector"] in CALLER_DETECTORS}

    def flagged(rows: list[dict[str, object]]) -> set[tuple[object, ...]]:
        return {
            (a["subject"], a["number"], a["detector"], a["action"])
            for a in rows
            if a["state"] != "cleared"
        }

    assert caller_ids(alerts) == caller_ids(reference)
    assert flagged(alerts) == flagged(reference)
    verify = subprocess.run(
        [
            sys.executable, "-m", "streams", "verify",
            "--topic", env["DIALWATCH_CDR_TOPIC"],
            "--alerts", env["DIALWATCH_ALERT_TOPIC"],
            "--redis", redis_url,
            "--prefix", env["DIALWATCH_KEY_PREFIX"],
        ],
        capture_output=True, env=env, timeout=300,
    )  # fmt: skip
    output = verify.stdout.decode() + verify.stderr.decode()
    assert verify.returncode == 0 and "ALL-RECORDS-ACCOUNTED" in output, output[-3000:]
