"""A send the client refuses for good does not stall its partition (issue 17 item 3), against
the real broker and Redis: with the producer's largest request lowered to 256 KiB, a 600 KB
unreadable message at the head of every CDR partition has a dead letter too large to send. Each
is sent again cut to half a request with its own headers and ``refused``, counted in
``dialwatch_send_refused_total``, and the CDRs after it still produce the fault-free alerts."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import redis

from config.numbering import CHINA
from config.settings import Settings
from streams.cdr import Reject, decode_message
from streams.tools import simulate as sim
from streams.tools.fleet import read_topic, worker_env
from streams.tools.simulate import default_start
from tests.integration.test_faults import (
    PARTITIONS,
    fault_free,
    start,
    wait_caught_up,
)
from tests.integration.test_hostile_input import dead_letters, produce

pytestmark = pytest.mark.e2e
MAX_REQUEST = 256 * 1024
SPEC = sim.SimSpec(
    start=default_start(Settings()), seed=5, hours=2, subscribers=1500, bulk_diallers=2
)


def metric(port: int, name: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith(name + "{")
    }


@pytest.mark.timeout(300)
def test_an_oversized_dead_letter_is_cut_counted_and_its_partition_goes_on(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path
) -> None:
    env = worker_env(
        kafka_bootstrap,
        redis_url,
        unique,
        PARTITIONS,
        DIALWATCH_PRODUCER_MAX_REQUEST_BYTES=str(MAX_REQUEST),
    )
    topic, dead_topic = env["DIALWATCH_CDR_TOPIC"], env["DIALWATCH_DEAD_LETTER_TOPIC"]
    junk = b'{"cdr_id": "' + b"j" * 600_000 + b'"}'
    (reject,) = decode_message(junk, CHINA)
    assert isinstance(reject, Reject)
    produce(kafka_bootstrap, topic, [(p, None, junk) for p in range(PARTITIONS)])
    records, _ = sim.generate(SPEC)
    sim.produce(records, kafka_bootstrap, topic, PARTITIONS, batch_size=100)

    log = tmp_path / "worker.log"
    proc = start(env, log)
    try:
        wait_caught_up(redis.Redis.from_url(redis_url), env, proc, log)
        refused = metric(int(env["DIALWATCH_WEB_PORT"]), "dialwatch_send_refused_total")
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    assert refused == {
        f'dialwatch_send_refused_total{{outcome="dead_lettered",topic="{dead_topic}"}}': 4.0
    }, log.read_text()[-3000:]
    letters = dead_letters(kafka_bootstrap, dead_topic)
    assert sorted(h["source"] for _, h in letters) == [
        f"{topic}/{p}/0".encode() for p in range(PARTITIONS)
    ]
    for value, headers in letters:
        assert value == junk[: MAX_REQUEST // 2]
        assert headers["reason"] == reject.reason.encode()
        assert headers["refused"] == b"MessageSizeTooLargeError"
        assert headers["truncated"] == str(len(junk)).encode()

    alerts = read_topic(kafka_bootstrap, env["DIALWATCH_ALERT_TOPIC"])  # the worker stopped
    ids = [str(a["alert_id"]) for a in alerts]
    assert len(ids) == len(set(ids)), "an alert was published twice"
    reference = {str(a["alert_id"]) for a in fault_free(records, tmp_path)}
    assert reference, "the stream raises no alert: it shows nothing"
    assert set(ids) == reference
    verify = subprocess.run(
        [
            sys.executable, "-m", "streams", "verify",
            "--topic", topic,
            "--alerts", env["DIALWATCH_ALERT_TOPIC"],
            "--redis", redis_url,
            "--prefix", env["DIALWATCH_KEY_PREFIX"],
        ],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "ALL-RECORDS-ACCOUNTED" in verify.stdout, verify.stdout + verify.stderr
