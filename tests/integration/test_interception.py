"""The interception list against the real broker and Redis (README "Interception").

Store tests drive the step (``streams.interception.step.Interception``) with alert dicts on a
real Redis; worker tests run ``dialwatch worker`` on a labelled scenario, then kill -9 one mid
stream, and check the list, the command line and the topics.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from kafka import KafkaConsumer

from config.numbering import CHINA, classify
from config.settings import Settings
from detectors.pseudonym import pseudonym
from streams.interception.feed import mirror
from streams.interception.step import Interception, build_store
from streams.interception.store import Entry
from streams.security import redis_acl_rule
from streams.tools import simulate as sim
from streams.tools.fleet import applied, end_offsets, wait_confirmed
from streams.tools.fleet import worker_env as fleet_env
from streams.tools.scenario import ScenarioSpec, generate_scenario
from streams.tools.services import free_port, start_redis_cluster
from streams.tools.simulate import default_start
from tests.integration.test_faults import start, wait_caught_up

pytestmark = pytest.mark.e2e
PARTITIONS = 4
START = default_start(Settings())
SCENARIO = ScenarioSpec(start=START, seed=5, subscribers=800, hours=6, scale=0.1)
KEY = Settings().pseudonym_key.encode()


# ----------------------------------------------------------------------------- the step alone


def alert(number: str, alert_id: str, **over: Any) -> dict[str, Any]:
    base = {
        "alert_id": alert_id,
        "episode_id": f"ep-{number}",
        "number": number,
        "number_class": str(classify(number, CHINA)),
        "subject": "number",
        "detector": "bulk_dialling",
        "state": "raised",
        "severity": "critical",
        "action": "intercept",
        "reasons": ["22 calls in 5m >= 18"],
        "allowlisted": False,
    }
    return {**base, **over}


class Clock:
    def __init__(self) -> None:
        self.ms = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.ms


def step_for(redis_url: str, unique: str, clock: Clock, **over: object) -> Interception:
    settings = Settings(redis=redis_url, key_prefix=f"i{unique}").with_(**over)
    return Interception(build_store(settings), settings, CHINA, clock)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _apply(step: Interception, alerts: list[dict[str, Any]]) -> int:
    try:
        return await step.apply(alerts)
    finally:
        await step.store.client.aclose()


def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def audit_events(client: redis.Redis, prefix: str) -> list[dict[str, str]]:
    rows = client.xrange(f"{prefix}:{{il}}:audit") or []
    return [{str(k): str(v) for k, v in (fields or {}).items()} for _, fields in rows]


def test_auto_entry_is_one_lookup_with_reason_alert_episode_and_expiry(
    redis_url: str, unique: str
) -> None:
    clock = Clock()
    step = step_for(redis_url, unique, clock)
    assert run(_apply(step, [alert("13800138000", "a1")])) == 1
    client, base = r(redis_url), f"i{unique}:{{il}}"
    entry = client.hgetall(f"{base}:icpt:13800138000")
    assert entry["alert_id"] == "a1" and entry["detector"] == "bulk_dialling"
    assert entry["episode_id"] == "ep-13800138000" and entry["reason"] == "22 calls in 5m >= 18"
    assert int(entry["expires_at_ms"]) == clock.ms + 7 * 86_400_000
    assert abs(client.pexpiretime(f"{base}:icpt:13800138000") - int(entry["expires_at_ms"])) < 2
    # The cleared episode: the entry now lasts intercept_after_clear_s.
    clock.ms += 60_000
    cleared = alert("13800138000", "a1c", state="cleared", action="monitor", severity="info")
    step = step_for(redis_url, unique, clock)
    assert run(_apply(step, [cleared])) == 1
    entry = client.hgetall(f"{base}:icpt:13800138000")
    assert int(entry["expires_at_ms"]) == clock.ms + 86_400_000
    assert [e["event"] for e in audit_events(client, f"i{unique}")] == ["add", "clear"]


def test_a_replayed_alert_changes_nothing(redis_url: str, unique: str) -> None:
    clock = Clock()
    alerts = [alert("13800138000", "a1"), alert("13900139000", "a2")]
    assert run(_apply(step_for(redis_url, unique, clock), alerts)) == 2
    clock.ms += 5_000
    assert run(_apply(step_for(redis_url, unique, clock), alerts)) == 0
    client = r(redis_url)
    assert len(audit_events(client, f"i{unique}")) == 2
    entry = client.hgetall(f"i{unique}:{{il}}:icpt:13800138000")
    assert int(entry["listed_at_ms"]) == clock.ms - 5_000


def test_approve_mode_waits_apart_from_the_active_keys_until_approved(
    redis_url: str, unique: str, tmp_path: Path
) -> None:
    clock = Clock()
    service, hotline = "95588", "4001234567"
    step = step_for(redis_url, unique, clock)
    run(_apply(step, [alert(service, "s1"), alert(hotline, "h1")]))
    client, base = r(redis_url), f"i{unique}:{{il}}"
    assert not client.exists(f"{base}:icpt:{service}")  # a switch sees nothing
    assert client.hget(f"{base}:pend:{service}", "state") == "pending"
    env = {**os.environ, "DIALWATCH_REDIS": redis_url, "DIALWATCH_KEY_PREFIX": f"i{unique}"}
    listed = cli(env, "intercept", "list", "--json", "--state", "pending")
    assert {(row["number"], row["state"]) for row in listed} == {
        (service, "pending"),
        (hotline, "pending"),
    }
    assert cli(env, "intercept", "list", "--json", "--state", "active") == []
    done = subprocess.run(
        [sys.executable, "-m", "streams", "intercept", "approve", service],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert client.hget(f"{base}:icpt:{service}", "state") == "active"
    assert not client.exists(f"{base}:pend:{service}")
    rows = cli(env, "intercept", "list", "--json")
    assert {(row["number"], row["state"]) for row in rows} == {
        (service, "active"),
        (hotline, "pending"),
    }
    assert all({"number", "detector", "alert_id", "state", "expires_at"} <= set(x) for x in rows)
    events = [e["event"] for e in audit_events(client, f"i{unique}")]
    assert events == ["pending", "pending", "approve"]
    # Approving a number with no pending entry is one line, not a traceback.
    again = subprocess.run(
        [sys.executable, "-m", "streams", "intercept", "approve", service],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 1 and again.stderr.count("\n") == 1


def test_the_breaker_trips_on_a_flood_and_says_why(redis_url: str, unique: str) -> None:
    clock = Clock()
    flood = [alert(f"138{i:08d}", f"f{i}") for i in range(12)]
    step = step_for(redis_url, unique, clock, intercept_breaker_max=5)
    run(_apply(step, flood))
    client, base = r(redis_url), f"i{unique}:{{il}}"
    active = [a for a in flood if client.exists(f"{base}:icpt:{a['number']}")]
    pending = [a for a in flood if client.exists(f"{base}:pend:{a['number']}")]
    assert len(active) == 5 and len(pending) == 7
    assert "breaker open" in str(client.hget(f"{base}:pend:{pending[0]['number']}", "reason"))
    breaker = [e for e in audit_events(client, f"i{unique}") if e["event"] == "breaker"]
    assert len(breaker) == 1 and "wait for approval" in breaker[0]["reason"]
    # After the window, auto-listing resumes.
    clock.ms += 601_000
    step = step_for(redis_url, unique, clock, intercept_breaker_max=5)
    run(_apply(step, [alert("13700137000", "late")]))
    assert client.exists(f"{base}:icpt:13700137000")


def test_release_removes_at_once_is_audited_and_holds_unless_escalated(
    redis_url: str, unique: str
) -> None:
    clock = Clock()
    number = "13800138000"
    run(_apply(step_for(redis_url, unique, clock), [alert(number, "a1")]))
    env = {**os.environ, "DIALWATCH_REDIS": redis_url, "DIALWATCH_KEY_PREFIX": f"i{unique}"}
    client, base = r(redis_url), f"i{unique}:{{il}}"
    done = subprocess.run(
        [sys.executable, "-m", "streams", "intercept", "release", number, "--kind", "appeal",
         "--reason", "appeal 42 upheld"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not client.exists(f"{base}:icpt:{number}")
    release = audit_events(client, f"i{unique}")[-1]
    assert release["event"] == "release" and release["reason"] == "appeal 42 upheld"
    assert release["kind"] == "appeal" and release["alert_id"] == "a1"
    # The same behaviour again (a new episode) stays out for the grace period...
    run(_apply(step_for(redis_url, unique, clock), [alert(number, "a2", episode_id="ep2")]))
    assert not client.exists(f"{base}:icpt:{number}")
    assert audit_events(client, f"i{unique}")[-1]["event"] == "withheld"
    # ...unless it escalates.
    escalated = alert(number, "a3", episode_id="ep2", state="escalated")
    run(_apply(step_for(redis_url, unique, clock), [escalated]))
    assert client.exists(f"{base}:icpt:{number}")
    rows = cli(env, "audit", "--number", number, "--json")
    assert [row["event"] for row in rows] == ["add", "release", "withheld", "add"]
    assert cli(env, "audit", "--since", str(time.time() + 3600), "--json") == []
    since = datetime.fromtimestamp(time.time() - 3600, UTC).isoformat()
    assert len(cli(env, "audit", "--since", since, "--json")) == 4
    shown = cli(env, "intercept", "show", number)
    assert [(x["state"], x.get("alert_id")) for x in shown] == [("active", "a3"), ("held", None)]
    bad = subprocess.run(
        [sys.executable, "-m", "streams", "audit", "--since", "yesterday"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--since" in bad.stderr


def test_emergency_numbers_are_never_listed_or_protected(redis_url: str, unique: str) -> None:
    clock = Clock()
    run(_apply(step_for(redis_url, unique, clock), [alert("110", "e1"), alert("120", "e2")]))
    client = r(redis_url)
    assert client.keys(f"i{unique}:*") == []


def test_a_protection_entry_rejects_the_bombers_calls_to_the_victim(
    redis_url: str, unique: str
) -> None:
    clock = Clock()
    victim, bombers = "13500135000", ["13600136001", "13600136002"]
    shown = pseudonym(victim, KEY)
    step = step_for(redis_url, unique, clock)
    bombing = {"detector": "call_bombing"}
    protect = alert(shown, "v1", subject="callee", action="protect", **bombing)
    members = [alert(b, f"m{i}", **bombing) for i, b in enumerate(bombers)]

    async def go() -> None:
        try:
            await step.store.stage_victims(
                {"v1": victim, "m0": victim, "m1": victim}, {shown: victim}
            )
            await step.apply([protect, *members])
        finally:
            await step.store.client.aclose()

    run(go())
    client, base = r(redis_url), f"i{unique}:{{il}}"
    for bomber in bombers:
        assert client.hexists(f"{base}:prot:{victim}", bomber)  # caller-and-callee lookup
        assert client.exists(f"{base}:icpt:{bomber}")  # and the bomber's own entry
    assert not client.hexists(f"{base}:prot:{victim}", "13700137000")
    events = audit_events(client, f"i{unique}")
    assert victim not in str(events)  # the victim only by pseudonym outside the entry
    assert {e["event"] for e in events} == {"protect", "protect_member", "add"}
    # The victim's cleared episode sets the entry's expiry (resolved through its pseudonym).
    clock.ms += 1000
    cleared = alert(shown, "v1c", subject="callee", state="cleared", **bombing)
    run(_apply(step_for(redis_url, unique, clock), [cleared]))
    expires = client.hget(f"{base}:prot:{victim}", "_expires_at_ms")
    assert int(str(expires)) == clock.ms + 86_400_000


def cli(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args], env=env, capture_output=True, check=True
    )
    return [orjson.loads(line) for line in done.stdout.splitlines()]


# ----------------------------------------------------------------------------- the worker


def worker_env(kafka: str, redis_url: str, unique: str, **extra: str) -> dict[str, str]:
    """The fleet's worker environment, under a key prefix apart from the list-only tests'."""
    return fleet_env(
        kafka,
        redis_url,
        unique,
        PARTITIONS,
        DIALWATCH_KEY_PREFIX=f"w{unique}",
        DIALWATCH_FETCH_MAX_WAIT_MS="10",
        **extra,
    )


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def read_messages(
    kafka: str, topic: str, timeout_ms: int = 3000
) -> list[tuple[int, dict[str, Any]]]:
    """(broker timestamp ms, value) of every message on ``topic``."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", consumer_timeout_ms=timeout_ms
    )
    try:
        return [(m.timestamp, orjson.loads(m.value)) for m in consumer]
    finally:
        consumer.close()


def watch(kafka: str, topic: str, seen: dict[str, int], stop: threading.Event) -> None:
    """Record when a live consumer first sees each listable number's alert."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", fetch_max_wait_ms=10
    )
    try:
        while not stop.is_set():
            for batch in consumer.poll(timeout_ms=50).values():
                now = int(time.time() * 1000)
                for message in batch:
                    a = orjson.loads(message.value)
                    if listable(a):
                        seen.setdefault(str(a["number"]), now)
    finally:
        consumer.close()


def entries(client: redis.Redis, prefix: str, kind: str) -> dict[str, dict[str, str]]:
    base = f"{prefix}:{{il}}:{kind}:"
    out = {}
    for key in client.scan_iter(f"{base}*"):
        out[str(key)[len(base) :]] = {str(k): str(v) for k, v in client.hgetall(key).items()}
    return out


def wait_for(check: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def listable(a: dict[str, Any]) -> bool:
    return a["subject"] == "number" and a["action"] == "intercept" and not a["allowlisted"]


@pytest.mark.timeout(600)
def test_worker_lists_the_scenarios_attackers_within_a_second_and_no_legitimate_caller(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path,
    running: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    scenario = generate_scenario(SCENARIO)
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text("\n".join(scenario.allowlist) + "\n")
    env = worker_env(
        kafka_bootstrap, redis_url, unique,
        DIALWATCH_ALLOWLIST_FILE=str(allowlist), DIALWATCH_INTERCEPT_MODES="mvno=approve",
    )  # fmt: skip
    log = tmp_path / "worker.log"
    running.append(start(env, log))
    seen: dict[str, int] = {}  # number -> wall clock ms a live consumer first saw its alert
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch, args=(kafka_bootstrap, env["DIALWATCH_ALERT_TOPIC"], seen, stop)
    )
    watcher.start()
    try:
        sim.produce(scenario.records, kafka_bootstrap, env["DIALWATCH_CDR_TOPIC"], PARTITIONS, 200)
        wait_caught_up(redis.Redis.from_url(redis_url), env, running[0], log)
    finally:
        stop.set()
        watcher.join()
    client = r(redis_url)
    prefix = env["DIALWATCH_KEY_PREFIX"]
    alerts = read_messages(kafka_bootstrap, env["DIALWATCH_ALERT_TOPIC"])
    active, pending = entries(client, prefix, "icpt"), entries(client, prefix, "pend")

    # Every intercept alert's number is listed (pending for mvno), first alert to entry < 1 s.
    first: dict[str, int] = {}
    for ts, a in alerts:
        if listable(a):
            first.setdefault(str(a["number"]), ts)
    assert first, "the scenario raised no intercept"
    created, visible = [], []
    for number, ts in first.items():
        entry = active.get(number) or pending.get(number)
        assert entry is not None, number
        assert (number in pending) == (classify(number, CHINA) == "mvno"), number
        created.append(int(entry["listed_at_ms"]) - ts)
        visible.append(int(entry["listed_at_ms"]) - seen[number])
    for name, values in (("created", created), ("visible", visible)):
        values.sort()
        print(f"alert {name} -> list entry ms: n={len(values)} "
              f"median={values[len(values) // 2]} max={values[-1]}")  # fmt: skip
    # The worker lists a number once the broker confirmed its alert: by then a consumer of the
    # alert topic sees the alert too, so the entry is there within a second of it.
    assert visible[-1] < 1000
    assert set(active) | set(pending) == set(first)
    legit = {label.subject for label in scenario.labels if label.expect == "none"}
    attackers = {label.subject for label in scenario.labels if label.expect == "intercept"}
    assert not (set(active) | set(pending)) & legit
    assert set(active) | set(pending) <= attackers  # nor any unlabelled (normal) subscriber

    listed = cli(env, "intercept", "list", "--json")
    assert {(x["number"], x["state"]) for x in listed} == {
        *((n, "active") for n in active),
        *((n, "pending") for n in pending),
    }

    # Protection: each victim's entry holds callers that bombed it, and only attackers.
    victims = [label.subject for label in scenario.labels if label.expect == "protect"]
    assert victims
    for victim in victims:
        callers = {c for c in client.hkeys(f"{prefix}:{{il}}:prot:{victim}") if c[:1] != "_"}
        assert callers and callers <= attackers, victim
        bomber = sorted(callers)[0]
        assert client.hexists(f"{prefix}:{{il}}:prot:{victim}", bomber)
        assert not client.hexists(f"{prefix}:{{il}}:prot:{victim}", sorted(legit)[0])

    # Approve one pending number, release one active number.
    assert pending, "mvno=approve left nothing pending"
    waiting = sorted(pending)[0]
    subprocess.run([sys.executable, "-m", "streams", "intercept", "approve", waiting], env=env,
                   check=True, capture_output=True)  # fmt: skip
    assert client.hget(f"{prefix}:{{il}}:icpt:{waiting}", "state") == "active"
    gone = sorted(active)[0]
    subprocess.run([sys.executable, "-m", "streams", "intercept", "release", gone, "--reason",
                    "operator review"], env=env, check=True, capture_output=True)  # fmt: skip
    assert not client.exists(f"{prefix}:{{il}}:icpt:{gone}")

    # The audit trail and the list changes reach their topics (mirrored by the worker).
    def mirrored() -> bool:
        changes = [
            v for _, v in read_messages(kafka_bootstrap, env["DIALWATCH_INTERCEPTION_TOPIC"], 1500)
        ]
        return any(c["event"] == "remove" and c["number"] == gone for c in changes) and any(
            c["event"] == "add" and c["number"] == waiting for c in changes
        )  # fmt: skip

    assert wait_for(mirrored, 30)
    audit = [v for _, v in read_messages(kafka_bootstrap, env["DIALWATCH_AUDIT_TOPIC"])]
    assert {"add", "pending", "approve", "release", "protect"} <= {a["event"] for a in audit}
    release = [a for a in audit if a["event"] == "release"]
    assert release[0]["number"] == gone and release[0]["reason"] == "operator review"
    assert all(a["schema_version"] == 1 for a in audit)
    assert not any(v in orjson.dumps(audit).decode() for v in victims)
    assert running[0].poll() is None, log.read_text()[-3000:]
    assert "no known victim" not in log.read_text()  # every bombing alert was resolved


@pytest.mark.timeout(600)
def test_the_breaker_trips_on_a_flood_of_intercepts(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path,
    running: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    spec = sim.SimSpec(start=START, seed=11, hours=3, subscribers=600, bulk_diallers=5)
    records, _ = sim.generate(spec)
    env = worker_env(kafka_bootstrap, redis_url, unique, DIALWATCH_INTERCEPT_BREAKER_MAX="2")
    log = tmp_path / "worker.log"
    running.append(start(env, log))
    sim.produce(records, kafka_bootstrap, env["DIALWATCH_CDR_TOPIC"], PARTITIONS, 200)
    wait_caught_up(redis.Redis.from_url(redis_url), env, running[0], log)
    client, prefix = r(redis_url), env["DIALWATCH_KEY_PREFIX"]
    active, pending = entries(client, prefix, "icpt"), entries(client, prefix, "pend")
    assert len(active) == 2 and len(pending) >= 3
    assert all("breaker open" in e["reason"] for e in pending.values())

    def breaker_alert() -> list[dict[str, Any]]:
        rows = read_messages(kafka_bootstrap, env["DIALWATCH_ALERT_TOPIC"], 1500)
        return [a for _, a in rows if a["detector"] == "intercept_breaker"]

    said = wait_for(breaker_alert, 30)
    assert len(said) == 1 and "wait for approval" in said[0]["reasons"][0]


@pytest.mark.timeout(600)
def test_kill_9_leaves_the_list_consistent_with_the_alerts(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path,
    running: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    spec = sim.SimSpec(start=START, seed=21, hours=4, subscribers=6000, bulk_diallers=8)
    records, _ = sim.generate(spec)
    env = worker_env(kafka_bootstrap, redis_url, unique)
    sim.produce(records, kafka_bootstrap, env["DIALWATCH_CDR_TOPIC"], PARTITIONS, batch_size=50)
    total = sum(end_offsets(kafka_bootstrap, env["DIALWATCH_CDR_TOPIC"]).values())
    store = redis.Redis.from_url(redis_url)
    log = tmp_path / "worker.log"
    first = start(env, log)
    running.append(first)
    prefix = env["DIALWATCH_KEY_PREFIX"]
    deadline = time.monotonic() + 240
    while sum(applied(store, prefix, PARTITIONS).values()) < total * 0.4:
        assert first.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.kill()
    first.wait()
    assert sum(applied(store, prefix, PARTITIONS).values()) < total
    env["DIALWATCH_WEB_PORT"] = str(free_port())
    second = start(env, log)
    running.append(second)
    wait_caught_up(store, env, second, log)
    wait_confirmed(store, prefix, PARTITIONS)  # the last batches' alerts, still sending

    alerts = [a for _, a in read_messages(kafka_bootstrap, env["DIALWATCH_ALERT_TOPIC"])]
    client = r(redis_url)
    active = entries(client, prefix, "icpt")
    wanted = {str(a["number"]) for a in alerts if listable(a)}
    assert wanted and set(active) == wanted  # no entry lost
    ids = {str(a["alert_id"]) for a in alerts}
    assert all(e["alert_id"] in ids for e in active.values())
    adds = [e["number"] for e in audit_events(client, prefix) if e["event"] == "add"]
    assert sorted(adds) == sorted(wanted)  # each listed once: none twice
    changes = [
        e["alert_id"] for e in audit_events(client, prefix) if e["event"] in ("add", "extend")
    ]
    assert len(changes) == len(set(changes))  # no alert applied twice


def test_the_worker_acl_rule_covers_the_list(redis_url: str, unique: str) -> None:
    """Every command the step, the mirror and the command line send, and every command their
    scripts call, is in streams.security.REDIS_ACL_COMMANDS (a missing one would stall the
    worker on NOPERM)."""
    prefix, password = f"i{unique}", f"pw-{unique}"
    rule = redis_acl_rule(f"u{unique}", prefix, password)
    r(redis_url).execute_command("ACL", "SETUSER", *rule.split()[1:])  # type: ignore[no-untyped-call]
    host = redis_url.split("://", 1)[1]
    url = f"redis://u{unique}:{password}@{host}"
    clock = Clock()
    shown = pseudonym("13500135000", KEY)
    bombing = {"detector": "call_bombing"}

    async def go() -> None:
        step = step_for(url, unique, clock, intercept_breaker_max=1)
        sent: list[tuple[str, bytes, bytes]] = []

        async def send(topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
            sent.append((topic, key, value))
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        try:
            await step.store.stage_victims(
                {"v1": "13500135000", "m1": "13500135000"}, {shown: "13500135000"}
            )
            await step.apply([
                alert("13800138000", "a1"), alert("13900139000", "a2"),
                alert(shown, "v1", subject="callee", action="protect", **bombing),
                alert("13600136001", "m1", **bombing),
                alert("13800138000", "a1c", state="cleared", action="monitor"),
            ])  # fmt: skip
            await step.release("13800138000", "t", "test", "operator")
            await step.store.decide("approve", "13900139000", "t", "ok", "operator", clock.ms)
            assert await step.store.entries("all", clock.ms)
            assert await mirror(step.store, send, ("au", "ic", "al"), UTC, "token")
            assert {t for t, _, _ in sent} == {"au", "ic", "al"}  # the breaker tripped too
        finally:
            await step.store.client.aclose()

    run(go())
    assert {e["event"] for e in audit_events(r(redis_url), prefix)} >= {
        "add", "pending", "breaker", "protect", "protect_member", "clear", "release", "approve",
    }  # fmt: skip


def test_the_list_works_on_a_redis_cluster(unique: str) -> None:
    """Every key carries the hash tag {il}: one slot, so each script is atomic on a cluster."""
    service = start_redis_cluster(3)
    try:
        clock = Clock()
        settings = Settings(redis=service.address, redis_cluster=True, key_prefix=f"c{unique}")

        async def go() -> list[Entry]:
            step = Interception(build_store(settings), settings, CHINA, clock)
            try:
                await step.apply([alert("13800138000", "a1"), alert("95588", "s1")])
                await step.store.decide("approve", "95588", "t", "ok", "operator", clock.ms)
                await step.release("13800138000", "t", "test", "operator")
                return await step.store.entries("all", clock.ms)
            finally:
                await step.store.client.aclose()

        listed = run(go())
        assert [(e.number, e.state) for e in listed] == [("95588", "active")]
    finally:
        service.stop()
