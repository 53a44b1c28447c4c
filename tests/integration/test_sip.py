"""A real call path (docs/sip.md): SIPp calling and answering through Kamailio running
deploy/kamailio/kamailio.cfg on loopback, Kamailio's accounting lines shipped by ``dialwatch
ingest --follow --format kamailio`` to the CDR topic of a real broker, a real ``dialwatch
worker`` with the default policy's windows scaled from minutes to seconds, and the
interception list in a real Redis that Kamailio consults on every INVITE.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from kafka import KafkaConsumer

from config.numbering import CHINA, normalise
from streams.formats import get
from streams.formats.kamailio import MARK
from streams.tools import sip
from streams.tools.services import free_port
from streams.topics import create_topics

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SCALE = 30  # policy windows: a minute of the default policy is 2 s here
REDRESS = "https://redress.example.net/dialwatch"
FMT = get("kamailio")


def scaled_policy(path: Path) -> Path:
    """config/default_policy.toml with every window SCALE times shorter."""
    text = (ROOT / "config" / "default_policy.toml").read_text()
    head, rest = text.split("[windows]\n", 1)
    block, tail = rest.split("\n\n", 1)
    lines = []
    for line in block.splitlines():
        name, seconds = line.split("=")
        lines.append(f"{name}= {int(seconds) // SCALE}")
    path.write_text(head + "[windows]\n" + "\n".join(lines) + "\n\n" + tail)
    return path


@dataclass
class Stack:
    work: Path
    env: dict[str, str]
    redis: redis.Redis
    prefix: str
    kamailio: sip.Kamailio
    uas: sip.Proc
    procs: list[subprocess.Popen[bytes]]

    def key(self, kind: str, number: str) -> str:
        return f"{self.prefix}:{{il}}:{kind}:{number}"

    def calls(self, name: str, calls: list[tuple[str, str, int]], rate: float) -> None:
        """Run one SIPp caller over ``calls`` to its end; it fails loudly on any error."""
        path = self.work / f"{name}.csv"
        count = sip.write_calls(path, calls)
        proc = sip.uac(self.work, name, self.kamailio.port, path, count, rate)
        assert proc.wait(timeout=120) == 0, (self.work / f"{name}.log").read_text()[-3000:]
        ok, failed = sip.outcome(self.work / f"{name}.log")
        assert (ok, failed) == (count, 0), (self.work / f"{name}.errors").read_text()[-3000:]

    def accounting(self) -> list[dict[str, Any]]:
        out = []
        for line in self.kamailio.accounting.read_text(errors="replace").splitlines():
            at = line.find(MARK)
            if at >= 0:
                out.append(orjson.loads(line[at + len(MARK) :]))
        return out


def cdr_ids(docs: list[dict[str, Any]]) -> list[str]:
    return [str(row["cdr_id"]) for d in docs for row in FMT.from_doc(d) if isinstance(row, dict)]


def topic_ids(kafka: str, topic: str) -> Counter[str]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        return Counter(str(r["cdr_id"]) for m in consumer for r in orjson.loads(m.value))
    finally:
        consumer.close()


def each_once_in_the_topic(kafka: str, topic: str, docs: list[dict[str, Any]]) -> None:
    """Every call attempt of ``docs`` (accounting lines) is in the CDR topic exactly once."""
    want = cdr_ids(docs)
    assert len(set(want)) == len(docs)
    wait_until(lambda: set(want) <= set(topic_ids(kafka, topic)), 30, "every call in the topic")
    seen = topic_ids(kafka, topic)
    assert all(seen[i] == 1 for i in want), [i for i in want if seen[i] != 1]


def wait_until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:  # fmt: skip
    unique = uuid.uuid4().hex[:10]
    work = tmp_path_factory.mktemp("sip")
    prefix = f"s{unique}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    port = int(client.connection_pool.connection_kwargs["port"])
    env = {
        **os.environ,
        "DIALWATCH_KAFKA": kafka_bootstrap,
        "DIALWATCH_REDIS": redis_url,
        "DIALWATCH_KEY_PREFIX": prefix,
        "DIALWATCH_APP_ID": f"dialwatch-{unique}",
        "DIALWATCH_WEB_PORT": str(free_port()),
        "DIALWATCH_TOPIC_PARTITIONS": "1",
        "DIALWATCH_POLICY_FILE": str(scaled_policy(work / "policy.toml")),
        "DIALWATCH_BUCKET_S": "1",
        "DIALWATCH_LONG_BUCKET_S": "10",
        "DIALWATCH_LONG_WINDOW_FROM_S": str(7200 // SCALE),
        "DIALWATCH_EPISODE_QUIET_S": str(3600 // SCALE),
        # Flooders are fixed lines: their own entries wait for approval, so only the victim's
        # protection entry rejects them (the second scenario).
        "DIALWATCH_INTERCEPT_MODES": "fixed=approve",
        "DIALWATCH_SESSION_TIMEOUT_S": "6",
        "DIALWATCH_HEARTBEAT_INTERVAL_S": "1",
        "DIALWATCH_REBALANCE_TIMEOUT_S": "6",
        "DIALWATCH_FETCH_MAX_WAIT_MS": "10",
        "DIALWATCH_BATCH_WITHIN_S": "0.05",
        # The flood is the stream's last input, so its last calls reach stage 2 once the one
        # caller partition is told idle (20 s shipped). This test is about the call path, not
        # that wait.
        "DIALWATCH_PROGRESS_IDLE_S": "5",
        "DIALWATCH_PROGRESS_STOPPED_S": "5",
    }
    for name in ("CDR", "ALERT", "DEAD_LETTER", "DERIVED", "REPARTITION", "COMPLAINT", "AUDIT",
                 "INTERCEPTION"):  # fmt: skip
        env[f"DIALWATCH_{name}_TOPIC"] = f"{name.lower()}-{unique}"
    create_topics(kafka_bootstrap, {env["DIALWATCH_CDR_TOPIC"]: 1, env["DIALWATCH_ALERT_TOPIC"]: 1})
    uas = sip.start_uas(work)
    kamailio = sip.start_kamailio(work, port, uas.port, prefix, redress=REDRESS)
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    for name, args in (
        ("worker", ["worker"]),
        ("ingest", ["ingest", str(kamailio.accounting), "--follow", "--format", "kamailio"]),
    ):
        log = (work / f"{name}.log").open("ab")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", "streams", *args], env=env,
                                      stdout=log, stderr=log, cwd=ROOT))  # fmt: skip
    s = Stack(work, env, client, prefix, kamailio, uas, procs)
    try:
        # Warm up: one call, and wait until both stages have applied a batch.
        s.calls("warmup", [("13700009999", "13900009999", 0)], 5)
        wait_until(lambda: client.exists(f"{prefix}:{{p0}}:meta") and client.exists(
            f"{prefix}:x:{{p0}}:meta"), 90, "the worker to apply its first batch")  # fmt: skip
        yield s
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
        kamailio.stop()
        uas.stop()
        for proc in procs:
            assert proc.returncode in (0, -15, 130), (work / "worker.log").read_text()[-3000:]


def test_kamailio_accepts_the_shipped_configuration() -> None:
    for extra in ({}, {"REDRESS_CONTACT": REDRESS, "KEY_PREFIX": "x"}):
        done = sip.check_config(extra)
        assert done.returncode == 0, done.stderr[-2000:]


PRESENTED = [  # caller as presented -> normalised by the plan (None: not a number)
    "+8613800000901", "008613800000901", "8613800000901", "1795113800000901", "013800000901",
    "+86-138-0000-0901", "17951008613800000901", "(010)12345678", "+86010-12345678",
    "01012345678", "+441234567890", "00441234567890", "95555", "8695555", "86123456",
    "0086013800000901", "+44-20-7946-0000",
]  # fmt: skip


def test_kamailio_normalises_like_dialwatch_fails_open_and_spares_emergency_calls(
    stack: Stack, tmp_path: Path
) -> None:
    listed = {"13800000901", "1012345678", "00441234567890", "95555"}
    for number in listed:
        stack.redis.hset(stack.key("icpt", number), mapping={"state": "active"})
    stack.redis.hset(stack.key("prot", "13900000901"), mapping={"13800000902": "a1"})
    calls = [(form, f"1390000{i:04d}", 0) for i, form in enumerate(PRESENTED, 1000)]
    calls += [("13800000902", "+8613900000901", 0), ("13800000902", "013900000901", 0),
              ("13800000902", "13900000902", 0)]  # fmt: skip
    calls += [("13800000901", emergency, 0) for emergency in ("110", "+86110", "0120", "112")]
    before = len(stack.accounting())
    stack.calls("forms", calls, 20)
    got = {(d["caller"], d["callee"]): d["status"] for d in stack.accounting()[before:]}
    for form, callee, _ in calls[: len(PRESENTED)]:
        want = 608 if normalise(form, CHINA) in listed else 200
        assert got[(form, callee)] == want, form
    assert got[("13800000902", "+8613900000901")] == 608
    assert got[("13800000902", "013900000901")] == 608
    assert got[("13800000902", "13900000902")] == 200  # judged on its own: not listed
    for _, emergency, _ in calls[-4:]:
        assert got[("13800000901", emergency)] == 200, emergency

    # RFC 8688: the 608 names the redress contact, purpose jwscard.
    reply = raw_invite(stack.kamailio.port, "13800000901", "13900000555")
    assert reply.startswith("SIP/2.0 608 Rejected"), reply
    assert f"Call-Info: <{REDRESS}>;purpose=jwscard" in reply

    # The caller gives up while it rings: 487, the one-ring signature (cause 31, not answered).
    mark = len(stack.accounting())
    reply = raw_invite(stack.kamailio.port, "13800000903", "13710000001", cancel=True)
    assert reply.startswith("SIP/2.0 487"), reply
    (gave_up,) = wait_until(lambda: stack.accounting()[mark:], 5, "the 487's accounting line")
    (row,) = FMT.from_doc(gave_up)
    assert gave_up["status"] == 487 and isinstance(row, dict)
    assert (row["answered"], row["release_cause"]) == (False, 31)

    # Redis unreachable: every call goes through, with a warning, and is not held up.
    dead = sip.start_kamailio(tmp_path, free_port(), stack.uas.port, stack.prefix)
    try:
        path = tmp_path / "open.csv"
        sip.write_calls(path, [("13800000901", f"1390001{i:04d}", 0) for i in range(6)])
        started = time.monotonic()
        proc = sip.uac(tmp_path, "open", dead.port, path, 6, 20)
        assert proc.wait(timeout=60) == 0, (tmp_path / "open.log").read_text()[-2000:]
        assert time.monotonic() - started < 10
        statuses = [d["status"] for d in _docs(dead.accounting)]
        assert statuses == [200] * 6
        assert "interception lookup failed" in dead.accounting.read_text()
    finally:
        dead.stop()


def _docs(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line[line.find(MARK) + len(MARK) :])
            for line in path.read_text().splitlines() if MARK in line]  # fmt: skip


def raw_invite(port: int, caller: str, callee: str, cancel: bool = False) -> str:
    """One INVITE from a plain socket; the first final reply. ``cancel``: give up once it
    rings (CANCEL), and return the INVITE's final reply (487)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        me = s.getsockname()[1]
        head = (
            f"sip:{callee}@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-{uuid.uuid4().hex}\r\n"
            f"From: <sip:{caller}@127.0.0.1:{me}>;tag=raw1\r\n"
            f"To: <sip:{callee}@127.0.0.1:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@127.0.0.1\r\n"
        )
        tail = "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        invite = f"INVITE {head}CSeq: 1 INVITE\r\nContact: <sip:{caller}@127.0.0.1:{me}>\r\n"
        s.sendto((invite + tail).encode(), ("127.0.0.1", port))
        while True:
            reply = s.recv(65535).decode()
            if cancel and reply.startswith("SIP/2.0 180"):
                s.sendto(f"CANCEL {head}CSeq: 1 CANCEL\r\n{tail}".encode(), ("127.0.0.1", port))
            elif not reply.startswith("SIP/2.0 1") and "INVITE" in reply.split("CSeq:")[1][:20]:
                to = next(h for h in reply.split("\r\n") if h.startswith("To:"))
                ack = f"ACK {head}".replace(head.split("\r\n")[3], to) + "CSeq: 1 ACK\r\n"
                s.sendto((ack + tail).encode(), ("127.0.0.1", port))
                return reply


def epoch_ms(value: str) -> int:
    return int(float(value) * 1000)


def test_a_robocaller_is_rejected_with_608_once_flagged_and_everyone_else_gets_through(
    stack: Stack, kafka_bootstrap: str
) -> None:
    robo = "13712340000"
    normal = [f"1350000{i:04d}" for i in range(4)]
    # The robocaller: 120 distinct callees at 5 calls/s, 7 in 10 never answer (1370...), the
    # answered ones hung up at once. Normal callers: 8 calls each to three friends, talking 1 s.
    # Callees far apart (never within 100 of the previous one: not sequential dialling).
    robo_calls = [(robo, f"{1370 if i % 10 < 7 else 1391}{i * 7919 % 10**7:07d}", 0)
                  for i in range(120)]  # fmt: skip
    normal_calls = [(c, f"1{3 + j}{(k * 7919) % 10**9:09d}", 1000)
                    for i in range(8) for k, c in enumerate(normal) for j in (i % 3,)]  # fmt: skip
    before = len(stack.accounting())
    started = time.time()
    path_r, path_n = stack.work / "robo.csv", stack.work / "normal.csv"
    sip.write_calls(path_r, robo_calls)
    sip.write_calls(path_n, normal_calls)
    procs = {
        "robo": sip.uac(stack.work, "robo", stack.kamailio.port, path_r, len(robo_calls), 5),
        "normal": sip.uac(stack.work, "normal", stack.kamailio.port, path_n, len(normal_calls),
                          1.2),
    }  # fmt: skip
    for name, proc in procs.items():
        assert proc.wait(timeout=120) == 0, (stack.work / f"{name}.log").read_text()[-3000:]
    assert sip.outcome(stack.work / "normal.log") == (len(normal_calls), 0)
    assert sip.outcome(stack.work / "robo.log") == (len(robo_calls), 0)
    docs = stack.accounting()[before:]
    mine = [d for d in docs if d["caller"] == robo]
    mine.sort(key=lambda d: float(d["invite"]))
    assert len(mine) == len(robo_calls)

    # Every normal call was answered and completed.
    theirs = [d for d in docs if d["caller"] in normal]
    assert len(theirs) == len(normal_calls)
    assert all(d["status"] == 200 for d in theirs), Counter(d["status"] for d in theirs)

    # Answered (or not answered, by the callee) until flagged; rejected from then on.
    statuses = [d["status"] for d in mine]
    first = statuses.index(608)
    assert set(statuses[:first]) <= {200, 480} and 200 in statuses[:first]
    assert set(statuses[first:]) == {608}, statuses
    entry = stack.redis.hgetall(stack.key("icpt", robo))
    assert entry["state"] == "active", entry
    listed_ms = int(entry["listed_at_ms"])
    # (An INVITE may race the entry by the lookup's own few milliseconds, not more.)
    assert all(d["status"] != 608 for d in mine if epoch_ms(d["invite"]) < listed_ms)
    assert all(d["status"] == 608 for d in mine if epoch_ms(d["invite"]) > listed_ms + 500)

    # The threshold-crossing call: the alert's threshold-th call (all of them within the window).
    alert = first_intercept(kafka_bootstrap, stack.env["DIALWATCH_ALERT_TOPIC"], robo)
    window, threshold = re.search(r"calls in (\S+) >= (\d+)", alert["reasons"][0]).groups()  # type: ignore[union-attr]
    crossing = mine[int(threshold) - 1]
    assert int(float(crossing["invite"])) <= datetime.fromisoformat(alert["event_time"]).timestamp()
    to_first = epoch_ms(mine[first]["invite"]) - epoch_ms(crossing["invite"])
    to_listed = listed_ms - epoch_ms(crossing["invite"])
    print(
        f"\nSIP: {alert['detector']} ({window} >= {threshold}) crossed by call {threshold};"
        f" listed {to_listed} ms later; first 608 {to_first} ms after the crossing call"
        f" (call {first + 1} of {len(mine)}); {len(mine) - first} calls rejected;"
        f" run {time.time() - started:.0f} s"
    )
    assert to_first < 10_000

    # Every call attempt is in the CDR topic exactly once.
    each_once_in_the_topic(kafka_bootstrap, stack.env["DIALWATCH_CDR_TOPIC"], docs)


def first_intercept(kafka: str, topic: str, number: str) -> dict[str, Any]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        for message in consumer:
            alert = orjson.loads(message.value)
            if alert["number"] == number and alert["action"] == "intercept":
                return dict(alert)
    finally:
        consumer.close()
    raise AssertionError(f"no intercept alert for {number}")


def test_a_flooded_victims_protection_rejects_the_flooders_calls_to_it_only(
    stack: Stack, kafka_bootstrap: str
) -> None:
    victim = "13966660000"
    flooders = [f"20{i:08d}" for i in range(4)]  # fixed lines (Beijing 20...): approve mode
    flood = [(f, victim, 0) for _ in range(3) for f in flooders]
    before = len(stack.accounting())
    stack.calls("flood", flood, 2)
    prot = stack.key("prot", victim)
    wait_until(lambda: all(stack.redis.hexists(prot, f) for f in flooders), 20,
               "the victim's protection entry to name every flooder")  # fmt: skip
    assert not any(stack.redis.exists(stack.key("icpt", f)) for f in flooders)
    after = [(f, victim, 0) for f in flooders] + [(f, f"1388888{i:04d}", 0)
                                                  for i, f in enumerate(flooders)]  # fmt: skip
    mark = len(stack.accounting())
    stack.calls("after", after, 10)
    got = {(d["caller"], d["callee"]): d["status"] for d in stack.accounting()[mark:]}
    for f in flooders:
        assert got[(f, victim)] == 608, got
    for i, f in enumerate(flooders):
        assert got[(f, f"1388888{i:04d}")] == 200, got
    docs = stack.accounting()[before:]
    each_once_in_the_topic(kafka_bootstrap, stack.env["DIALWATCH_CDR_TOPIC"], docs)
