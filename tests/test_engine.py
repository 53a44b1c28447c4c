"""The batch engine over the in-process store: thresholds, lateness, duplicates, determinism."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from config.policy import parse_policy
from config.settings import Settings
from detectors.alerts import Alert
from streams.cdr import CDR, Reject
from streams.engine import Engine, Outcome
from streams.state.memory import MemoryStore
from tests.factories import T0, cdr, dial

NOW_MS = (T0 + 30 * 86_400) * 1000
SETTINGS = Settings()
# The engine's mechanics are tested on the plain velocity rule; tests/test_scenario_quality.py
# and tests/test_detectors.py cover the bundled policy.
VELOCITY = {
    "policy_version": "test",
    "windows": {"10m": 600, "40m": 2400, "24h": 86_400},
    "detectors": {
        "bulk_dialling": {
            "category": "telemarketing",
            "levels": [
                {
                    "severity": "critical",
                    "action": "intercept",
                    "thresholds": {"40m": 250, "24h": 2000},
                }
            ],
        }
    },
}


def make_engine(policy_raw: dict[str, object] | None = None, **settings: object) -> Engine:
    policy = parse_policy(policy_raw or VELOCITY)
    return Engine(SETTINGS.with_(**settings), policy, MemoryStore(), clock_ms=lambda: NOW_MS)


async def run(engine: Engine, records: Sequence[CDR | Reject], batch: int = 500) -> Outcome:
    """Feed records in order, ``batch`` per call, and merge the outcomes."""
    total = Outcome()
    meta = await engine.meta(0)
    items = [(meta.offset + 1 + i, r) for i, r in enumerate(records)]
    for i in range(0, len(items), batch):
        out = await engine.process(0, items[i : i + batch])
        total.alerts += out.alerts
        total.accepted += out.accepted
        total.duplicates += out.duplicates
        total.replayed += out.replayed
        total.rejects += out.rejects
    return total


def intercepts(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.action == "intercept"]


def normal_traffic(n: int, seed: int = 1) -> list[CDR]:
    rng = random.Random(seed)
    out = [
        cdr(f"135{i:08d}", T0 + rng.uniform(0, 8 * 3600), k)
        for i in range(n)
        for k in range(rng.randint(0, 12))
    ]
    return sorted(out, key=lambda c: c.start_ms)


async def test_250_calls_in_40_minutes_raise_one_intercept() -> None:
    engine = make_engine()
    dialler = dial("17012345678", 300, 2400 * 300 / 250)  # 250 per 40 min, for longer
    out = await run(engine, sorted(dialler + normal_traffic(300), key=lambda c: c.start_ms))
    hits = intercepts(out.alerts)
    assert [(a.number, a.detector, a.severity, a.state) for a in hits] == [
        ("17012345678", "bulk_dialling", "critical", "raised")
    ]
    assert hits[0].evidence["window_calls"] == 250
    assert hits[0].reasons == ("250 calls in 40m >= 250",)
    assert hits[0].event_ms == dialler[249].start_ms


async def test_249_calls_in_40_minutes_raise_nothing() -> None:
    engine = make_engine()
    out = await run(engine, dial("17012345678", 249, 2339))  # 249 calls inside 39 minutes
    assert out.alerts == []
    assert out.accepted == 249


async def test_threshold_counts_buckets_not_seconds() -> None:
    # The 40 min window is 40 one-minute buckets: calls from hh:00:00 to hh:39:59 count, ...
    start = T0 - T0 % 60
    inside = [cdr("17012345678", start + i * 9.6, i) for i in range(250)]
    assert len(intercepts((await run(make_engine(), inside)).alerts)) == 1
    # ... while 250 calls from hh:00:59 to hh:40:00 span 41 buckets, though only 39 min apart.
    spread = [cdr("17012345678", start + 59 + i * (2341 / 249), i) for i in range(250)]
    assert (await run(make_engine(), spread)).alerts == []


@pytest.mark.parametrize("batch", [1, 7, 64, 500, 100_000])
async def test_alerts_do_not_depend_on_batching(batch: int) -> None:
    traffic = sorted(
        dial("17012345678", 600, 4800) + dial("95512345", 2100, 86_000) + normal_traffic(200),
        key=lambda c: c.start_ms,
    )
    reference = await run(make_engine(), traffic, batch=100_000)
    out = await run(make_engine(), traffic, batch=batch)
    assert [a.alert_id for a in out.alerts] == [a.alert_id for a in reference.alerts]
    assert len(intercepts(out.alerts)) == 2


async def test_late_out_of_order_delivery_gives_same_intercepts() -> None:
    traffic = sorted(dial("17012345678", 400, 3840) + normal_traffic(300), key=lambda c: c.start_ms)
    rng = random.Random(3)
    # mediation files: each record delivered up to 15 minutes after its start
    delivered = sorted(traffic, key=lambda c: c.start_ms + rng.uniform(0, 900_000))
    assert delivered != traffic
    on_time = await run(make_engine(), traffic)
    late = await run(make_engine(), delivered)
    assert late.rejects == []
    assert late.accepted == on_time.accepted == len(traffic)
    assert [(a.number, a.action) for a in intercepts(late.alerts)] == [
        (a.number, a.action) for a in intercepts(on_time.alerts)
    ]


async def test_records_older_than_the_lateness_horizon_are_rejected() -> None:
    engine = make_engine(allowed_lateness_s=600)
    out = await run(engine, [cdr("13800000001", T0 + 3600, 1), cdr("13800000002", T0, 2)])
    assert [r.reason for _, r in out.rejects] == ["too_late"]
    assert out.accepted == 1


async def test_future_records_are_rejected() -> None:
    engine = make_engine()
    out = await run(engine, [cdr("13800000001", NOW_MS / 1000 + 3600, 1)])
    assert [r.reason for _, r in out.rejects] == ["future"]


async def test_duplicate_cdr_ids_count_once() -> None:
    engine = make_engine()
    calls = dial("17012345678", 249, 1500)  # all within the 30 min lateness horizon
    out = await run(engine, calls + calls[:10] + [calls[5]])
    assert out.duplicates == 11
    assert out.alerts == []  # 249 distinct calls, however often repeated
    # beyond the horizon a repeat is rejected as too late instead: still not counted
    stale = await run(engine, [cdr("13500000000", T0 + 4000, 1), calls[0]])
    assert [r.reason for _, r in stale.rejects] == ["too_late"]


async def test_replayed_offsets_are_skipped() -> None:
    engine = make_engine()
    calls = dial("17012345678", 260, 2000)
    items = list(enumerate(calls))
    first = await engine.process(0, items[:200])
    again = await engine.process(0, items[:250])  # redelivery overlapping the applied part
    assert first.accepted == 200
    assert again.replayed == 200 and again.accepted == 50
    assert len(intercepts(again.alerts)) == 1


async def test_episode_clears_after_quiet_period_and_rearms() -> None:
    engine = make_engine(episode_quiet_s=3600)
    burst = dial("17012345678", 260, 2400)
    quiet_until = T0 + 2400 + 3 * 3600
    later = [cdr("13500000000", quiet_until, 9)]  # moves the watermark on
    second = dial("17012345678", 260, 2400, start_s=quiet_until + 60)
    second = [cdr(c.caller, c.start_ms / 1000, 1000 + i) for i, c in enumerate(second)]
    out = await run(engine, burst + later + second)
    states = [(a.state, a.severity) for a in out.alerts]
    assert states == [("raised", "critical"), ("cleared", "info"), ("raised", "critical")]
    assert out.alerts[0].episode_id == out.alerts[1].episode_id != out.alerts[2].episode_id
    assert out.alerts[1].event_ms == burst[-1].start_ms + 3600_000


TWO_LEVELS = {
    "policy_version": "t",
    "windows": {"40m": 2400, "24h": 86400},
    "detectors": {
        "bulk_dialling": {
            "category": "telemarketing",
            "levels": [
                {"severity": "warning", "action": "monitor", "thresholds": {"40m": 100}},
                {"severity": "critical", "action": "intercept", "thresholds": {"40m": 250}},
            ],
        }
    },
}


async def test_escalation_is_a_new_alert_in_the_same_episode() -> None:
    out = await run(make_engine(TWO_LEVELS), dial("17012345678", 300, 2400 * 300 / 250))
    assert [(a.state, a.severity, a.action) for a in out.alerts] == [
        ("raised", "warning", "monitor"),
        ("escalated", "critical", "intercept"),
    ]
    assert out.alerts[0].episode_id == out.alerts[1].episode_id
    assert out.alerts[0].alert_id != out.alerts[1].alert_id


async def test_allowlisted_number_is_never_intercepted() -> None:
    engine = make_engine()
    engine.allowlist = frozenset({"95588"})
    out = await run(engine, dial("95588", 400, 2400))
    assert [(a.number, a.action, a.allowlisted) for a in out.alerts] == [("95588", "monitor", True)]


async def test_daily_threshold_fires_for_a_steady_dialler() -> None:
    engine = make_engine()
    out = await run(engine, dial("95512345", 2000, 86_000))  # ~56 per 40 min, all day
    hits = intercepts(out.alerts)
    assert len(hits) == 1
    assert hits[0].reasons == ("2000 calls in 24h >= 2000",)


async def test_bad_records_are_counted_and_do_not_stop_the_batch() -> None:
    engine = make_engine()
    good = dial("17012345678", 260, 2000)
    mixed: list[CDR | Reject] = [*good[:100], Reject("bad_number", "x"), *good[100:]]
    out = await run(engine, mixed, batch=1000)
    assert [r.reason for _, r in out.rejects] == ["bad_number"]
    assert out.accepted == 260
    assert len(intercepts(out.alerts)) == 1
