from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from config.settings import Settings
from detectors.pseudonym import pseudonym
from streams.tools.evaluate import (
    FAIL,
    FALSE_INTERCEPT_TARGET,
    NOT_APPLICABLE,
    PASS,
    TARGETS,
    FalseIntercept,
    PatternResult,
    Report,
    Throughput,
    _replay,
    check_targets,
    combine,
    evaluate,
    nearest_rank,
    parse_alerts,
    render_combined,
)

KEY = b"test-pseudonym-key"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))

BULK_A, BULK_B, BULK_C, BULK_D = "17012340001", "17012340002", "17012340003", "17012340004"
COURIER, NORMAL_1, NORMAL_2 = "13800000001", "13900000001", "13900000002"
BOMBER, CREW, VICTIM = "15000000001", "15000000002", "18600000009"
TRUNK_ID = "trunk-77"


@dataclass(frozen=True, slots=True)
class Label:
    subject: str
    role: str
    expect: str


def at(minute: float) -> str:
    return (T0 + timedelta(minutes=minute)).isoformat()


def rec(
    caller: str, minute: float, callee: str = "13700000000", trunk: str | None = None
) -> dict[str, object]:
    return {"caller": caller, "callee": callee, "start_time": at(minute), "ingress_trunk": trunk}


def alert(
    number: str,
    minute: float,
    *,
    subject: str = "number",
    action: str = "intercept",
    state: str = "raised",
    detector: str = "bulk_dialling",
    allowlisted: bool = False,
) -> dict[str, object]:
    return {
        "number": number,
        "subject": subject,
        "action": action,
        "state": state,
        "detector": detector,
        "event_time": at(minute),
        "allowlisted": allowlisted,
    }


LABELS = [
    Label(BULK_A, "bulk_dialler", "intercept"),
    Label(BULK_B, "bulk_dialler", "intercept"),
    Label(BULK_C, "bulk_dialler", "intercept"),
    Label(BULK_D, "bulk_dialler", "intercept"),
    Label(COURIER, "courier", "none"),
]
RECORDS = [
    rec(BULK_A, 0),
    rec(BULK_A, 0.5),
    rec(BULK_B, 10),
    rec(BULK_C, 20),
    rec(BULK_D, 30),
    rec(COURIER, 1),
    rec(NORMAL_1, 2),
    rec(NORMAL_1, 3),
    rec(NORMAL_2, 4),
]


def pattern_of(report: Report, role: str) -> PatternResult:
    result = report.pattern(role)
    assert result is not None
    return result


def target_status(report: Report | tuple[Any, ...], name: str) -> str:
    targets = report.targets if isinstance(report, Report) else report
    return next(t.status for t in targets if t.target.startswith(name))


# --- nearest rank -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([], 50, None),
        ([7.0], 50, 7.0),
        ([7.0], 90, 7.0),
        ([1.0, 2.0], 50, 1.0),
        ([1.0, 2.0, 3.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(i) for i in range(1, 11)], 90, 9.0),
        ([float(i) for i in range(1, 12)], 90, 10.0),
        ([float(i) for i in range(1, 21)], 90, 18.0),
        ([1.0, 2.0, 3.0], 100, 3.0),
    ],
)
def test_nearest_rank(values: list[float], pct: int, expected: float | None) -> None:
    assert nearest_rank(values, pct) == expected


# --- recall and time to detect ----------------------------------------------------------------


def test_recall_and_ttd_from_first_call_to_first_alert() -> None:
    alerts = [
        alert(BULK_A, 1, detector="bulk_dialling"),  # 1 min after its first call
        alert(BULK_A, 9, state="escalated"),  # later: the first alert counts
        alert(BULK_B, 14),  # 4 min
        alert(BULK_C, 22, state="escalated"),  # 2 min; escalated counts as detection
    ]
    report = evaluate(RECORDS, LABELS, alerts, KEY)
    bulk = pattern_of(report, "bulk_dialler")
    assert (bulk.labelled, bulk.detected) == (4, 3)
    assert bulk.recall == pytest.approx(0.75)
    assert bulk.ttd_min == pytest.approx((1.0, 2.0, 4.0))
    assert bulk.median_ttd_min == pytest.approx(2.0)
    assert bulk.p90_ttd_min == pytest.approx(4.0)
    assert bulk.missed == (BULK_D,)
    assert target_status(report, "bulk_dialler") == FAIL
    assert report.false_intercepts == ()


def test_first_call_is_the_earliest_start_time_not_the_first_record() -> None:
    records = [rec(BULK_A, 5), rec(BULK_A, 2), rec(BULK_A, 8)]  # delivered late
    report = evaluate(records, LABELS[:1], [alert(BULK_A, 6)], KEY)
    assert pattern_of(report, "bulk_dialler").ttd_min == pytest.approx((4.0,))


def test_numbers_are_compared_normalised() -> None:
    report = evaluate([rec("+86 170-1234-0001", 0)], LABELS[:1], [alert(BULK_A, 3)], KEY)
    bulk = pattern_of(report, "bulk_dialler")
    assert (bulk.detected, bulk.ttd_min) == (1, (3.0,))


@pytest.mark.parametrize(
    ("case", "extra"),
    [
        ("cleared intercept", {"state": "cleared"}),
        ("monitor", {"action": "monitor"}),
        ("protect", {"action": "protect"}),
        ("block subject", {"subject": "block"}),
        ("callee subject", {"subject": "callee"}),
    ],
)
def test_alerts_that_are_not_intercepts_detect_nothing_and_are_not_false(
    case: str, extra: dict[str, Any]
) -> None:
    alerts = [alert(BULK_A, 1, **extra), alert(NORMAL_1, 3, **extra)]
    report = evaluate(RECORDS, LABELS, alerts, KEY)
    assert pattern_of(report, "bulk_dialler").detected == 0, case
    assert report.false_intercepts == (), case
    assert target_status(report, FALSE_INTERCEPT_TARGET) == PASS


# --- false intercepts -------------------------------------------------------------------------


def test_false_intercepts_grouped_by_role_and_unlabelled_is_normal() -> None:
    labels = [*LABELS, Label(VICTIM, "bomb_victim", "protect")]
    alerts = [
        alert(COURIER, 2, detector="bulk_dialling"),
        alert(COURIER, 3, detector="one_ring", state="escalated"),
        alert(NORMAL_1, 4, detector="sequential"),
        alert(VICTIM, 5, detector="bulk_dialling"),
        alert(BULK_A, 1),  # expected: not false
    ]
    report = evaluate(RECORDS, labels, alerts, KEY)
    assert report.false_intercepts == (
        FalseIntercept(VICTIM, "bomb_victim", ("bulk_dialling",)),
        FalseIntercept(COURIER, "courier", ("bulk_dialling", "one_ring")),
        FalseIntercept(NORMAL_1, "normal", ("sequential",)),
    )
    assert target_status(report, FALSE_INTERCEPT_TARGET) == FAIL
    text = report.render()
    assert "false intercepts: 3 (bomb_victim 1, courier 1, normal 1)" in text
    assert f"{COURIER}" in text and "bulk_dialling,one_ring" in text


@pytest.mark.parametrize(
    ("alerts", "allowlist"),
    [
        ([alert(BULK_A, 1, allowlisted=True)], ()),  # flagged in the alert
        ([alert(BULK_A, 1)], ("+86 17012340001",)),  # listed in the run's allowlist
    ],
)
def test_allowlisted_intercept_is_false_even_when_expected(
    alerts: list[dict[str, object]], allowlist: tuple[str, ...]
) -> None:
    report = evaluate(RECORDS, LABELS, alerts, KEY, allowlist=allowlist)
    assert report.false_intercepts == (
        FalseIntercept(BULK_A, "bulk_dialler", ("bulk_dialling",), allowlisted=True),
    )
    assert "(allowlisted)" in report.render()


def test_allowlisted_monitor_is_not_a_false_intercept() -> None:
    alerts = [alert(NORMAL_1, 1, action="monitor", allowlisted=True)]
    assert evaluate(RECORDS, LABELS, alerts, KEY).false_intercepts == ()


# --- victims and trunks -----------------------------------------------------------------------

VICTIM_LABELS = [
    Label(BOMBER, "bomber", "intercept"),
    Label(CREW, "bomb_crew", "intercept"),
    Label(VICTIM, "bomb_victim", "protect"),
]
VICTIM_RECORDS = [
    rec(NORMAL_1, 0, callee=VICTIM),  # an ordinary call before the bombing: not the start
    rec(CREW, 7, callee=VICTIM),
    rec(BOMBER, 10, callee=VICTIM),
    rec(BOMBER, 10.5, callee=VICTIM),
]


@pytest.mark.parametrize(
    ("number", "detected"),
    [
        (pseudonym(VICTIM, KEY), True),
        (VICTIM, False),  # the clear number never counts
        (pseudonym(VICTIM, b"another-key"), False),
    ],
)
def test_victim_matched_by_pseudonym_only(number: str, detected: bool) -> None:
    alerts = [alert(number, 9, subject="callee", action="protect")]
    report = evaluate(VICTIM_RECORDS, VICTIM_LABELS, alerts, KEY)
    victims = pattern_of(report, "bomb_victim")
    assert victims.detected == int(detected)
    if detected:
        assert victims.ttd_min == pytest.approx((2.0,))  # from the crew's call at minute 7
        assert target_status(report, "bomb_victim") == PASS
    else:
        assert victims.missed == (pseudonym(VICTIM, KEY),)  # never in clear
        assert VICTIM not in report.render()
        assert target_status(report, "bomb_victim") == FAIL


def test_victim_ttd_falls_back_to_first_call_when_no_bomber_called() -> None:
    records = [rec(NORMAL_1, 3, callee=VICTIM)]
    alerts = [alert(pseudonym(VICTIM, KEY), 4, subject="callee", action="protect")]
    report = evaluate(records, VICTIM_LABELS[2:], alerts, KEY)
    assert pattern_of(report, "bomb_victim").ttd_min == pytest.approx((1.0,))


@pytest.mark.parametrize(
    ("alerts", "detected"),
    [
        ([alert(TRUNK_ID, 6, subject="trunk", action="monitor")], True),
        ([alert(TRUNK_ID, 6, subject="trunk", action="intercept", state="escalated")], True),
        ([alert(TRUNK_ID, 6, subject="trunk", action="monitor", state="cleared")], False),
        ([alert("trunk-78", 6, subject="trunk", action="monitor")], False),
        ([alert(TRUNK_ID, 6, subject="number", action="monitor")], False),
    ],
)
def test_trunk_matching(alerts: list[dict[str, object]], detected: bool) -> None:
    records = [
        rec(NORMAL_1, 1),
        rec("13512345678", 2, trunk=TRUNK_ID),
        rec(NORMAL_2, 3, trunk=TRUNK_ID),
    ]
    report = evaluate(records, [Label(TRUNK_ID, "spoof_trunk", "trunk")], alerts, KEY)
    trunk = pattern_of(report, "spoof_trunk")
    assert trunk.detected == int(detected)
    assert trunk.ttd_min == ((4.0,) if detected else ())
    assert target_status(report, "spoof_trunk") == (PASS if detected else FAIL)


def test_role_counts_include_normal_callers() -> None:
    labels = [*LABELS, *VICTIM_LABELS, Label(TRUNK_ID, "spoof_trunk", "trunk")]
    report = evaluate([*RECORDS, *VICTIM_RECORDS], labels, [], KEY)
    assert report.role_counts == {
        "normal": 2,  # NORMAL_1 and NORMAL_2
        "bomb_crew": 1,
        "bomb_victim": 1,
        "bomber": 1,
        "bulk_dialler": 4,
        "courier": 1,
        "spoof_trunk": 1,
    }
    assert pattern_of(report, "bomber").missed == (BOMBER,)
    assert report.pattern("courier") is None  # expect "none": no recall to measure


# --- targets ----------------------------------------------------------------------------------


def pr(role: str, labelled: int, detected: int, *ttd: float) -> PatternResult:
    return PatternResult(role, "intercept", labelled, detected, tuple(sorted(ttd)))


@pytest.mark.parametrize(
    ("result", "status"),
    [
        (pr("bulk_dialler", 3, 3, 1.0, 4.9, 9.0), PASS),
        (pr("bulk_dialler", 3, 3, 1.0, 5.0, 9.0), FAIL),  # median must be below 5 min
        (pr("bulk_dialler", 3, 2, 1.0, 2.0), FAIL),
        (pr("sequential_dialler", 2, 2, 1.0, 2.9), PASS),  # nearest-rank median: 1.0
        (pr("sequential_dialler", 1, 1, 3.0), FAIL),
        (pr("one_ring", 1, 1, 2.5), PASS),
        (pr("one_ring", 1, 1), FAIL),  # detected, but no time to detect known
        (pr("bomber", 2, 1, 0.5), FAIL),
        (pr("bomb_crew", 4, 4, 1.0, 1.0, 2.0, 8.0), PASS),
        (pr("bomb_victim", 2, 2), PASS),  # no TTD bound
        (pr("bomb_victim", 2, 1), FAIL),
        (pr("spoof_trunk", 1, 1, 50.0), PASS),
        (pr("spoof_trunk", 1, 0), FAIL),
        (pr("new_hire", 5, 4), PASS),
        (pr("new_hire", 5, 3), FAIL),
        (pr("block_member", 10, 9), PASS),
        (pr("block_member", 10, 8), FAIL),
        (pr("block_member", 0, 0), NOT_APPLICABLE),
    ],
)
def test_target_status(result: PatternResult, status: str) -> None:
    targets = check_targets([result], 0)
    assert target_status(targets, result.role) == status
    others = [t for t in targets if not t.target.startswith(result.role)]
    assert {t.status for t in others[:-1]} == {NOT_APPLICABLE}  # nothing else labelled


@pytest.mark.parametrize(("false", "status"), [(0, PASS), (1, FAIL), (7, FAIL)])
def test_false_intercept_target(false: int, status: str) -> None:
    assert target_status(check_targets([], false), FALSE_INTERCEPT_TARGET) == status


def test_every_target_is_checked_once() -> None:
    names = [t.target for t in check_targets([], 0)]
    assert len(names) == len(TARGETS) + 1 == len(set(names))


def test_report_passes_only_without_failures() -> None:
    alerts = [alert(n, 31) for n in (BULK_A, BULK_B, BULK_C, BULK_D)]
    report = evaluate(RECORDS, LABELS, alerts, KEY)
    assert pattern_of(report, "bulk_dialler").median_ttd_min == pytest.approx(11.0)
    assert not report.passed  # median TTD too long
    fast = [alert(BULK_A, 1), alert(BULK_B, 11), alert(BULK_C, 21), alert(BULK_D, 31)]
    report = evaluate(RECORDS, LABELS, fast, KEY)
    assert report.passed
    assert "PASS  bulk_dialler recall = 100%, median TTD < 5 min" in report.render()


def test_combine_pools_subjects_over_seeds() -> None:
    one = Report({}, (pr("new_hire", 5, 5),), (), check_targets([pr("new_hire", 5, 5)], 0), seed=1)
    two = Report({}, (pr("new_hire", 5, 3),), (), check_targets([pr("new_hire", 5, 3)], 0), seed=2)
    pooled = combine([one, two])
    assert target_status(pooled, "new_hire") == PASS  # 8/10
    assert "== all seeds (1, 2): PASS" in render_combined([one, two], pooled)
    false = FalseIntercept(NORMAL_1, "normal", ("bulk_dialling",))
    three = Report({}, (), (false,), check_targets([], 1), seed=3)
    assert target_status(combine([one, two, three]), FALSE_INTERCEPT_TARGET) == FAIL


# --- JSON -------------------------------------------------------------------------------------


def test_report_json_round_trip() -> None:
    labels = [*LABELS, *VICTIM_LABELS, Label(TRUNK_ID, "spoof_trunk", "trunk")]
    alerts = [
        alert(BULK_A, 1.25),
        alert(BOMBER, 11),
        alert(COURIER, 3, detector="one_ring"),
        alert(pseudonym(VICTIM, KEY), 9, subject="callee", action="protect"),
    ]
    report = evaluate([*RECORDS, *VICTIM_RECORDS], labels, alerts, KEY)
    report = Report(
        report.role_counts,
        report.patterns,
        report.false_intercepts,
        report.targets,
        seed=4,
        throughput=Throughput(records=1234, seconds=0.5, alerts=4),
    )
    doc = orjson.loads(orjson.dumps(report.to_dict()))
    assert doc == report.to_dict()
    assert Report.from_dict(doc) == report
    assert doc["passed"] is False
    assert doc["throughput"]["records_per_s"] == pytest.approx(2468.0)
    bulk = next(p for p in doc["patterns"] if p["role"] == "bulk_dialler")
    assert bulk["recall"] == pytest.approx(0.25)
    assert bulk["median_ttd_min"] == pytest.approx(1.25)
    assert "2,468 records/s" in report.render()


def test_parse_alerts_splits_on_newlines_only() -> None:
    text = '{"a": "x\u2028y"}\n\n{"a": 2}\n'
    assert parse_alerts(text) == [{"a": "x\u2028y"}, {"a": 2}]


# --- through the engine -----------------------------------------------------------------------


async def test_replay_through_the_scan_engine_is_scored() -> None:
    dialler = "17099990000"
    records: list[dict[str, object]] = [
        {
            "cdr_id": f"c{i}",
            "caller": dialler,
            "callee": f"139{i:08d}",
            "start_time": at(i * 0.1),
            "duration_s": 0,
            "answered": False,
        }
        for i in range(300)
    ]
    settings = Settings()
    alerts, throughput = await _replay(settings, records, [])
    assert throughput.records == 300
    labels = [Label(dialler, "bulk_dialler", "intercept")]
    report = evaluate(records, labels, alerts, settings.pseudonym_key.encode())
    bulk = pattern_of(report, "bulk_dialler")
    assert bulk.detected == 1
    assert bulk.median_ttd_min is not None and bulk.median_ttd_min < 40


DEMO_DAY = datetime(2026, 11, 30, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def _demo_reports() -> dict[str, Any]:
    """The demo's scenario (its defaults: seed 7, 3,000 subscribers, 6 h, scale 0.2), replayed
    sorted and as delivered."""
    import asyncio

    from streams.tools import demo
    from streams.tools.evaluate import ORDERS, BenchmarkSpec, run_seed

    spec = BenchmarkSpec(seeds=(7,), subscribers=3000, hours=6.0, scale=demo.DEMO_SCALE)
    return {
        order: asyncio.run(run_seed(Settings(), replace(spec, order=order), 7, DEMO_DAY))
        for order in ORDERS
    }


def test_the_demo_scenario_meets_every_target_in_delivery_order_too() -> None:
    reports = _demo_reports()
    for order, report in reports.items():
        failed = [t.line() for t in report.targets if t.status != "PASS"]
        assert failed == [], order
    delivered = reports["delivery"].pattern("sequential_dialler")
    assert delivered is not None and delivered.median_ttd_min is not None
    # Its second call is delivered about six minutes late: detection waits for its fourth call
    # in hand (2.3 min), no longer for its fifth (3.55 min under policy 2026.11.3).
    assert delivered.median_ttd_min == pytest.approx(2.3, abs=0.01)
    sorted_ = reports["sorted"].pattern("sequential_dialler")
    assert sorted_ is not None and sorted_.median_ttd_min == pytest.approx(2.07, abs=0.01)
