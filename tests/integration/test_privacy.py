"""The regulator feed and privacy against the real broker and Redis (README "Regulator feed",
docs/privacy.md).

One labelled scenario runs through ``dialwatch worker``; an operator approves one number and
releases another; ``dialwatch feed export`` then runs twice per format. The exports must be
byte-identical with valid manifests, list exactly the numbers the worker flagged, and no
output that leaves dialwatch may hold a callee or victim number in any written form.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import redis
from kafka import KafkaConsumer

from config.numbering import CHINA, NumberingPlan, classify, normalise
from config.settings import Settings
from streams.tools import simulate as sim
from streams.tools.scenario import generate_scenario
from tests.integration.test_faults import start, wait_caught_up
from tests.integration.test_interception import (
    PARTITIONS,
    SCENARIO,
    entries,
    listable,
    read_messages,
    running,
    wait_for,
    worker_env,
)
from tests.unit.test_feed import feed_validator

pytestmark = pytest.mark.e2e
__all__ = ["running"]  # the fixture, imported for this module's tests

# Every HTTP endpoint whose responses leave dialwatch (unauthenticated or read-only tokens).
# Adding one (the console's /numbers, /alerts/recent, /audit) is one line here; endpoints that
# need a read-only token get READ_ONLY_TOKEN (set it in the worker's env as that feature says).
LEAVING_ENDPOINTS: tuple[str, ...] = (
    "/metrics",
    "/health",
    "/allowlist",
    "/alerts/recent?limit=1000",
    "/interceptions?state=all",
    "/audit?limit=1000",
    "/breaker",
    "/openapi.json",
    "/campaigns",
)
READ_ONLY_TOKEN: str | None = "privacy-test-read-only-0123456789"
# Classes of subscriber numbers: what privacy protects (service and short numbers are
# businesses' public lines, and too short to search for without false hits).
SUBSCRIBER_CLASSES = frozenset({"mobile", "mvno", "fixed", "local", "international"})
TOKEN = re.compile(rb"\+?\d+")


def written_forms(number: str, plan: NumberingPlan) -> set[str]:
    """``number`` (normalised) as people and switches write it: national, with the country
    code (bare, ``+``, international prefix) and with the trunk prefix."""
    if number.startswith("00"):  # international: 00 + country code + number
        return {number, "+" + number[2:], number[2:]}
    cc = plan.country_code
    forms = {number, cc + number, "+" + cc + number, "00" + cc + number}
    if plan.trunk_prefix:
        forms.add(plan.trunk_prefix + number)
    return forms


def leaks(outputs: dict[str, bytes], forbidden: dict[str, str]) -> list[str]:
    """``output: form (number)`` for every forbidden written form found as a whole digit run
    (so a number inside a longer one, or a timestamp's digits, is no hit)."""
    found = []
    for name, data in outputs.items():
        for token in set(TOKEN.findall(data)):
            number = forbidden.get(token.decode())
            if number is not None:
                found.append(f"{name}: {token.decode()} ({number})")
    return found


def http_get(port: str, path: str, token: str | None = READ_ONLY_TOKEN) -> bytes:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body: bytes = response.read()
    except urllib.error.HTTPError as exc:  # a 503 /health still answers
        body = exc.read()
    return body


def raw_messages(kafka: str, topic: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of every message on ``topic``."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", consumer_timeout_ms=1500
    )
    try:
        return [(bytes(m.key or b""), bytes(m.value)) for m in consumer]
    finally:
        consumer.close()


def export(env: dict[str, str], out: Path, fmt: str, since: str, until: str) -> Any:
    """``dialwatch feed export`` started (the caller waits): the exports run side by side."""
    args = ["feed", "export", "--since", since, "--until", until, "--format", fmt]
    return subprocess.Popen(
        [sys.executable, "-m", "streams", *args, "--out", str(out)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def scenario_run(
    kafka_bootstrap: str,
    redis_url: str,
    unique: str,
    tmp_path: Path,
    running: list[subprocess.Popen[bytes]],
) -> Iterator[dict[str, Any]]:
    scenario = generate_scenario(SCENARIO)
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text("\n".join(scenario.allowlist) + "\n")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"auditor read-only {READ_ONLY_TOKEN}\n")
    env = worker_env(
        kafka_bootstrap,
        redis_url,
        unique,
        DIALWATCH_ALLOWLIST_FILE=str(allowlist),
        DIALWATCH_INTERCEPT_MODES="mvno=approve",
        DIALWATCH_FEED_TOPIC=f"feed-{unique}",
        DIALWATCH_API_TOKENS_FILE=str(tokens),
        DIALWATCH_LEAK_CANDIDATES_TOPIC=f"leaks-{unique}",
        DIALWATCH_CAMPAIGN_TICK_S="1",
    )
    log = tmp_path / "worker.log"
    running.append(start(env, log))
    sim.produce(scenario.records, kafka_bootstrap, env["DIALWATCH_CDR_TOPIC"], PARTITIONS, 200)
    wait_caught_up(redis.Redis.from_url(redis_url), env, running[0], log)
    yield {"scenario": scenario, "env": env, "log": log, "worker": running[0]}


@pytest.mark.timeout(600)
def test_exports_are_reproducible_and_nothing_leaving_holds_a_callee_or_victim(
    scenario_run: dict[str, Any], kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    scenario, env, log = scenario_run["scenario"], scenario_run["env"], scenario_run["log"]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = env["DIALWATCH_KEY_PREFIX"]
    pending = entries(client, prefix, "pend")
    active = entries(client, prefix, "icpt")
    assert pending and active
    approved, released = sorted(pending)[0], sorted(active)[0]
    for args in (
        ("intercept", "approve", approved),
        ("intercept", "release", released, "--reason", "appeal upheld", "--kind", "appeal"),
    ):
        subprocess.run([sys.executable, "-m", "streams", *args], env=env, check=True)

    def decided() -> bool:
        feed = [v for _, v in read_messages(kafka_bootstrap, env["DIALWATCH_FEED_TOPIC"], 1500)]
        events = {(f.get("event"), f["number"]) for f in feed if f["record_type"] == "decision"}
        return ("release", released) in events and ("approve", approved) in events

    assert wait_for(decided, 30), "the decisions did not reach the feed"

    tz = ZoneInfo(Settings().timezone)
    day = SCENARIO.start.astimezone(tz).date()
    since, until = day.isoformat(), (day + timedelta(days=2)).isoformat()
    files: dict[str, bytes] = {}
    first, second = tmp_path / "one", tmp_path / "two"
    for folder in (first, second):
        folder.mkdir()
    started = [
        export(env, folder / f"flagged.{fmt}", fmt, since, until)
        for fmt in ("csv", "jsonl")
        for folder in (first, second)
    ]
    for proc in started:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    names = [f"flagged.{fmt}{suffix}" for fmt in ("csv", "jsonl")
             for suffix in ("", ".sha256", ".manifest.json")]  # fmt: skip
    names += ["flagged.leaks.csv", "flagged.leaks.csv.sha256"]  # the CSV's leak candidates
    for name in names:
        one, two = (first / name).read_bytes(), (second / name).read_bytes()
        assert one == two, f"{name} differs between two runs"
        files[name] = one
    for fmt in ("csv", "jsonl"):
        data = files[f"flagged.{fmt}"]
        manifest = orjson.loads(files[f"flagged.{fmt}.manifest.json"])
        assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
        assert manifest["bytes"] == len(data) and manifest["format"] == fmt
        check = subprocess.run(["sha256sum", "-c", f"flagged.{fmt}.sha256"], cwd=first)
        assert check.returncode == 0

    # The export lists exactly the numbers the worker asked to intercept in the period.
    alerts = [a for _, a in read_messages(kafka_bootstrap, env["DIALWATCH_ALERT_TOPIC"], 1500)]
    flagged = {str(a["number"]) for a in alerts if listable(a)}
    table = [orjson.loads(line) for line in files["flagged.jsonl"].splitlines()]
    table = [row for row in table if row["record_type"] == "flagged_number"]
    by_number = {row["number"]: row for row in table}
    assert set(by_number) == flagged and len(table) == len(flagged)
    attackers = {x.subject for x in scenario.labels if x.expect == "intercept"}
    assert flagged <= attackers
    # A later alert of a released number is withheld for the grace period (README).
    assert by_number[released]["interception_state"] in ("released", "withheld")
    assert by_number[released]["release_kind"] == "appeal"
    assert by_number[approved]["interception_state"] == "active"
    assert by_number[approved]["approved_by"]
    for row in table:
        assert row["number_type"] == str(classify(row["number"], CHINA))
        assert row["first_seen"] <= row["last_seen"] and row["window_calls"] > 0
        assert row["detectors"] and row["evidence_digest"].startswith("sha256:")
    assert files["flagged.csv"].count(b"\n") == len(table) + 1

    # Everything that leaves dialwatch, searched for every callee and victim.
    port = env["DIALWATCH_WEB_PORT"]
    feed = raw_messages(kafka_bootstrap, env["DIALWATCH_FEED_TOPIC"])
    campaigns = raw_messages(kafka_bootstrap, env["DIALWATCH_LEAK_CANDIDATES_TOPIC"])
    ids = {key.decode() for key, _ in campaigns}
    outputs: dict[str, bytes] = {
        "feed topic": b"\n".join(key + b" " + value for key, value in feed),
        "leak-candidates topic": b"\n".join(key + b" " + value for key, value in campaigns),
        **{f"export {name}": body for name, body in files.items()},
        "worker log": log.read_bytes(),
        **{f"GET {path}": http_get(port, path) for path in LEAVING_ENDPOINTS},
        # A flagged caller's page holds its callees and victims: pseudonyms for read-only.
        **{f"GET /numbers/{n}": http_get(port, f"/numbers/{n}") for n in sorted(flagged)[:5]},
        # A campaign's page: its members, businesses and counts only.
        **{f"GET /campaigns/{c}": http_get(port, f"/campaigns/{c}") for c in sorted(ids)[:5]},
    }
    for name, body in outputs.items():  # a refusal would make the search pass trivially
        if name.startswith("GET /") and name != "GET /health":
            assert not body.startswith(b'{"error"'), f"{name}: {body[:200]!r}"
    assert b"dialwatch_cdrs_total" in outputs["GET /metrics"]
    assert outputs["feed topic"].count(b"\n") >= len(flagged)
    validator = feed_validator()
    for _, value in feed:
        validator.validate(orjson.loads(value))
    victims = {x.subject for x in scenario.labels if x.expect == "protect"}
    assert victims and not victims & flagged

    def protected(n: str) -> bool:
        return str(classify(n, CHINA)) in SUBSCRIBER_CLASSES

    subscribers = {normalise(str(r["callee"]), CHINA) for r in scenario.records} | victims
    # A campaign's own numbers may leave (the callers working a list: docs/campaigns.md); every
    # other subscriber, callee or victim may not.
    members = {m for _, v in campaigns for m in orjson.loads(v)["members"]}
    people = {
        n
        for n in subscribers
        if n is not None and n not in flagged and n not in members and protected(n)
    }
    assert len(people) > 1000
    forbidden = {form: n for n in people for form in written_forms(n, CHINA)}
    print(
        f"privacy search: {len(people)} numbers in {len(forbidden)} forms over"
        f" {sum(map(len, outputs.values())):,} bytes of {len(outputs)} outputs;"
        f" {len(table)} flagged numbers exported, {len(feed)} feed records,"
        f" {len(campaigns)} campaign records ({len(members)} members)"
    )
    assert leaks(outputs, forbidden) == []
    # The same search finds them where they belong: the operator-internal derived topic.
    derived = raw_messages(kafka_bootstrap, env["DIALWATCH_DERIVED_TOPIC"])
    internal = b"\n".join(value for _, value in derived)
    assert len(leaks({"derived topic": internal}, forbidden)) > 1000
    assert scenario_run["worker"].poll() is None, log.read_text()[-3000:]


def test_the_search_finds_every_written_form() -> None:
    """The search itself: each form of a number is found, a longer digit run is not."""
    number = "13812345678"
    forms = written_forms(number, CHINA)
    assert forms >= {"13812345678", "8613812345678", "+8613812345678", "008613812345678"}
    forbidden = {form: number for form in forms}
    for form in sorted(forms):
        assert leaks({"x": f'{{"n": "{form}"}}'.encode()}, forbidden) == [f"x: {form} ({number})"]
    assert leaks({"x": b"ts 1813812345678 and 138123456789"}, forbidden) == []
