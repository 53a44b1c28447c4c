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
import time
from collections.abc import Iterator
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
from streams.tools import simulate as sim
from streams.tools.scenario import ScenarioSpec, generate_scenario
from streams.tools.services import free_port
from streams.tools.simulate import default_start
from streams.topics import create_topics
from tests.integration.test_faults import applied, end_offsets, start, wait_caught_up

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
    return [fields for _, fields in client.xrange(f"{prefix}:{{il}}:audit")]


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
    assert "breaker open" in client.hget(f"{base}:pend:{pending[0]['number']}", "reason")
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
            await step.store.stage_victims({"v1": victim, "m0": victim, "m1": victim}, {shown: victim})
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
    assert int(client.hget(f"{base}:prot:{victim}", "_expires_at_ms")) == clock.ms + 86_400_000


def cli(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args], env=env, capture_output=True, check=True
    )
    return [orjson.loads(line) for line in done.stdout.splitlines()]
