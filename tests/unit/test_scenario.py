from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from config.numbering import CHINA, NumberClass, classify
from streams.allowlist import Allowlist
from streams.cdr import CDR, parse_record
from streams.cli import main
from streams.files import read_records
from streams.tools.scenario import (
    ALLOWLISTED_ROLES,
    ATTACK_ROLES,
    BLOCK_ACTIVE,
    EXPECT,
    LEGIT_ROLES,
    ROLES,
    SPOOF_TRUNKS,
    VICTIM_ROLES,
    Scenario,
    ScenarioLabel,
    ScenarioSpec,
    generate_scenario,
    read_scenario_labels,
    records_by_role,
    write_scenario_labels,
)

START = datetime(2026, 11, 30, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
SPEC = ScenarioSpec(start=START, subscribers=2000)
SMALL = replace(SPEC, subscribers=500, scale=0.1)
Records = list[dict[str, object]]


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate_scenario(SPEC)


@pytest.fixture(scope="module")
def by_caller(scenario: Scenario) -> dict[str, Records]:
    return calls_by_caller(scenario)


def epoch(record: dict[str, object]) -> float:
    return datetime.fromisoformat(str(record["start_time"])).timestamp()


def subjects(sc: Scenario, role: str) -> list[str]:
    return [label.subject for label in sc.labels if label.role == role]


def calls_by_caller(sc: Scenario) -> dict[str, Records]:
    """Each caller's records in generation order (cdr_id order), spoofed ones excluded."""
    spoofed = set(subjects(sc, "spoof_trunk"))
    by_caller: dict[str, Records] = defaultdict(list)
    for record in sorted(sc.records, key=lambda r: str(r["cdr_id"])):
        if record.get("ingress_trunk") not in spoofed:
            by_caller[str(record["caller"])].append(record)
    return by_caller


def max_in_span(times: list[float], span_s: float) -> int:
    """Most calls in any closed interval of ``span_s`` seconds."""
    times = sorted(times)
    return max(bisect.bisect_right(times, t + span_s) - i for i, t in enumerate(times))


def test_roles_and_expectations() -> None:
    assert ROLES == LEGIT_ROLES + ATTACK_ROLES + VICTIM_ROLES
    assert len(set(ROLES)) == len(ROLES) == 25
    assert set(EXPECT) == set(ROLES)
    assert {EXPECT[r] for r in LEGIT_ROLES} == {"none"}
    assert {r for r in ATTACK_ROLES if EXPECT[r] != "intercept"} == {"spoof_trunk"}
    assert EXPECT["spoof_trunk"] == "trunk" and EXPECT["bomb_victim"] == "protect"


def test_same_spec_same_scenario_other_seed_differs() -> None:
    a = generate_scenario(SMALL)
    b = generate_scenario(SMALL)
    assert a == b
    assert orjson.dumps(a.records) == orjson.dumps(b.records)
    c = generate_scenario(replace(SMALL, seed=2))
    assert c.labels != a.labels
    assert [r["caller"] for r in c.records[:1000]] != [r["caller"] for r in a.records[:1000]]


def test_classes_do_not_disturb_normal_traffic() -> None:
    """Rescaling every other class leaves the normal subscribers' own calls unchanged."""

    def normal_calls(sc: Scenario) -> list[tuple[object, ...]]:
        role = {label.subject: label.role for label in sc.labels}
        keep = {"normal", "spoof_victim", "bomb_victim"}
        return sorted(
            (r["caller"], r["callee"], r["start_time"], r["release_cause"], r["duration_s"])
            for r in sc.records
            if str(r["ingress_trunk"]).startswith("core-")
            and role.get(str(r["caller"]), "normal") in keep
            and role.get(str(r["callee"])) != "courier"  # courier customers calling back
        )

    assert normal_calls(generate_scenario(SMALL)) == normal_calls(
        generate_scenario(replace(SMALL, scale=0.3))
    )


EXPECTED_LABELS: dict[str, tuple[int, int]] = {
    "courier": (20, 20),
    "estate_agent": (10, 10),
    "insurance_agent": (10, 10),
    "taxi_dispatch": (5, 5),
    "switchboard": (5, 5),
    "bank_callcentre": (3, 3),
    "notification_service": (2, 2),
    "intl_caller": (50, 50),
    "spoof_victim": (600, 1300),
    "bulk_dialler": (10, 10),
    "new_hire": (20, 20),
    "sequential_dialler": (5, 5),
    "one_ring": (5, 5),
    "bomber": (5, 5),
    "bomb_crew": (12, 18),  # 3 crews of 4-6
    "block_member": (2 * BLOCK_ACTIVE, 2 * BLOCK_ACTIVE),
    "spoof_trunk": (2, 2),
    "bomb_victim": (8, 8),  # one per bomber and per crew
    "debt_collector": (4, 4),
    "debtor": (4, 4),  # one per collector
    "line_check": (3, 3),
    "hospital_caller": (3, 3),
    "hotline_redialler": (3, 3),
    "worried_parent": (3, 3),
}


@pytest.mark.parametrize(("role", "bounds"), EXPECTED_LABELS.items())
def test_label_counts_at_scale_1(scenario: Scenario, role: str, bounds: tuple[int, int]) -> None:
    assert bounds[0] <= len(subjects(scenario, role)) <= bounds[1]


def test_labels_are_consistent(scenario: Scenario) -> None:
    assert set(EXPECTED_LABELS) == set(ROLES) - {"normal"}
    assert all(label.expect == EXPECT[label.role] for label in scenario.labels)
    # One role per subject, so every subject has exactly one expectation.
    assert len({label.subject for label in scenario.labels}) == len(scenario.labels)
    assert subjects(scenario, "spoof_trunk") == list(SPOOF_TRUNKS)


@pytest.mark.parametrize(
    ("scale", "bulk", "bombers", "crews", "blocks", "trunks"),
    [(0.01, 1, 1, 1, 1, 1), (0.5, 5, 3, 2, 1, 1), (2.0, 20, 10, 6, 4, 4)],
)
def test_scale_multiplies_every_class(
    scale: float, bulk: int, bombers: int, crews: int, blocks: int, trunks: int
) -> None:
    sc = generate_scenario(replace(SMALL, scale=scale, hours=5))
    counts = Counter(label.role for label in sc.labels)
    assert counts["bulk_dialler"] == bulk
    assert counts["block_member"] == blocks * BLOCK_ACTIVE
    assert counts["bomber"] == bombers
    assert counts["bomb_victim"] == bombers + crews
    assert counts["spoof_trunk"] == trunks
    assert all(counts[role] >= 1 for role in ROLES if role != "normal")


def test_every_record_is_a_valid_cdr(scenario: Scenario) -> None:
    end = START + timedelta(hours=SPEC.hours)
    ids: set[object] = set()
    for record in scenario.records:
        cdr = parse_record(record, CHINA)
        assert isinstance(cdr, CDR), (cdr, record)
        assert cdr.caller == record["caller"] and cdr.callee == record["callee"]
        assert record["direction"] == "outgoing"
        assert record["answered"] is (record["release_cause"] == 16)
        if not record["answered"]:
            assert record["duration_s"] == 0
        else:
            assert type(record["duration_s"]) is int and record["duration_s"] > 0
        start = datetime.fromisoformat(str(record["start_time"]))
        assert start.utcoffset() == timedelta(hours=8)
        assert START <= start < end
        ids.add(record["cdr_id"])
    assert len(ids) == len(scenario.records)
    assert all(str(i).startswith(f"sc{SPEC.seed}-") for i in ids)


def test_trunks_and_attestation(scenario: Scenario) -> None:
    spoof = set(SPOOF_TRUNKS)
    seen: Counter[tuple[object, object]] = Counter()
    for record in scenario.records:
        trunk = record["ingress_trunk"]
        attestation = record.get("attestation")
        caller = str(record["caller"])
        if trunk in spoof:
            assert attestation in ("C", None)
            seen[("spoof", attestation)] += 1
        elif caller.startswith("00"):
            assert trunk in ("intl-gw-01", "intl-gw-02") and attestation is None
        else:
            assert trunk in {"core-1", "core-2", "core-3", "core-4"} and attestation == "A"
            seen[("core", trunk)] += 1
    assert all(seen[("core", f"core-{k}")] > 1000 for k in range(1, 5))
    signed, unsigned = seen[("spoof", "C")], seen[("spoof", None)]
    assert 0.4 < signed / (signed + unsigned) < 0.6


def test_late_delivery() -> None:
    prompt = generate_scenario(replace(SMALL, late_fraction=0.0))
    times = [epoch(r) for r in prompt.records]
    assert times == sorted(times)
    late = generate_scenario(replace(SMALL, late_fraction=0.1, max_late_s=600))

    def by_id(records: list[dict[str, object]]) -> list[dict[str, object]]:
        return sorted(records, key=lambda r: str(r["cdr_id"]))

    assert by_id(late.records) == by_id(prompt.records)
    # A record is late when a record that started more than a minute after it came first.
    latest = float("-inf")
    overtaken = 0
    for record in late.records:
        t = epoch(record)
        if t < latest - 60:
            overtaken += 1
            assert latest - t <= 600
        latest = max(latest, t)
    assert overtaken > 0.02 * len(late.records)


def test_allowlist_is_bank_and_notification_numbers(scenario: Scenario, tmp_path: Path) -> None:
    expected = [label.subject for label in scenario.labels if label.role in ALLOWLISTED_ROLES]
    assert scenario.allowlist == expected and len(expected) == 5
    for number in subjects(scenario, "bank_callcentre"):
        assert len(number) == 5 and number.startswith("95")
    for number in subjects(scenario, "notification_service"):
        assert len(number) == 8 and number.startswith("96")
    # 95xxx bank lines are service numbers, 8-digit 96xxxxxx senders call-centre numbers.
    classes = {NumberClass.SERVICE, NumberClass.CALL_CENTRE}
    assert {classify(n, CHINA) for n in scenario.allowlist} == classes


# Calls each subject makes in a day: (role, min, max).
CALL_VOLUMES: list[tuple[str, int, int]] = [
    ("courier", 120, 200),
    ("estate_agent", 60, 120),
    ("insurance_agent", 60, 120),
    ("taxi_dispatch", 400, 700),
    ("switchboard", 800, 1500),
    ("bank_callcentre", 300 * 9, 500 * 9),
    ("notification_service", 1000, 1600),
    ("intl_caller", 1, 5),
    ("new_hire", 300, 350),
    ("sequential_dialler", 60, 360),
    ("one_ring", 100, 600),
    ("bomber", 30, 60),
    ("bomb_crew", 8, 15),
    ("block_member", 100, 180),
    ("bulk_dialler", 750, 1800),
]


@pytest.mark.parametrize(("role", "low", "high"), CALL_VOLUMES)
def test_calls_per_subject(
    scenario: Scenario, role: str, low: int, high: int, by_caller: dict[str, Records]
) -> None:
    for number in subjects(scenario, role):
        assert low <= len(by_caller[number]) <= high, number


# Answered share of each class's calls: (role, min, max).
ANSWER_RATES: list[tuple[str, float, float]] = [
    ("courier", 0.80, 0.90),
    ("estate_agent", 0.52, 0.68),
    ("taxi_dispatch", 0.87, 0.93),
    ("switchboard", 0.72, 0.78),
    ("bank_callcentre", 0.42, 0.48),
    ("notification_service", 0.66, 0.74),
    ("bulk_dialler", 0.28, 0.32),
    ("new_hire", 0.27, 0.33),
    ("block_member", 0.27, 0.33),
    ("sequential_dialler", 0.20, 0.30),
    ("one_ring", 0.0, 0.0),
]


@pytest.mark.parametrize(("role", "low", "high"), ANSWER_RATES)
def test_answer_rates(
    scenario: Scenario, role: str, low: float, high: float, by_caller: dict[str, Records]
) -> None:
    calls = [r for number in subjects(scenario, role) for r in by_caller[number]]
    share = sum(1 for r in calls if r["answered"]) / len(calls)
    assert low <= share <= high


def test_bulk_diallers_reach_250_in_40_minutes(
    scenario: Scenario, by_caller: dict[str, Records]
) -> None:
    kinds = set()
    for number in subjects(scenario, "bulk_dialler"):
        calls = by_caller[number]
        kinds.add(classify(number, CHINA))
        assert 250 <= max_in_span([epoch(r) for r in calls], 2400) <= 301
        assert len({r["callee"] for r in calls}) == len(calls)
        causes = Counter(r["release_cause"] for r in calls)
        assert causes[1] > 0 and set(causes) <= {1, 16, 17, 18, 19, 21}
        assert all(2 <= int(str(r["duration_s"])) <= 60 for r in calls if r["answered"])
        span_h = (epoch(calls[-1]) - epoch(calls[0])) / 3600
        assert 1.9 <= span_h <= 4.0
    assert kinds == {NumberClass.CALL_CENTRE, NumberClass.MVNO, NumberClass.MOBILE}


def test_new_hires_stay_under_rate_thresholds(
    scenario: Scenario, by_caller: dict[str, Records]
) -> None:
    for number in subjects(scenario, "new_hire"):
        times = [epoch(r) for r in by_caller[number]]
        assert 300 <= len(times) <= 350
        assert max_in_span(times, 3600) <= 45


def test_bomb_victims_get_30_calls_in_10_minutes(scenario: Scenario) -> None:
    by_callee: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for record in scenario.records:
        by_callee[str(record["callee"])].append((epoch(record), str(record["caller"])))
    bombers = set(subjects(scenario, "bomber"))
    crew = set(subjects(scenario, "bomb_crew"))
    victims = subjects(scenario, "bomb_victim")
    flooded_by: Counter[str] = Counter()
    for victim in victims:
        calls = by_callee[victim]
        attackers = {caller for _, caller in calls} & (bombers | crew)
        times = [t for t, caller in calls if caller in attackers]
        assert max_in_span(times, 600) >= 30
        kind = "bomber" if attackers <= bombers else "crew"
        flooded_by[kind] += 1
        if kind == "crew":
            assert 4 <= len(attackers) <= 6 and attackers <= crew
            assert 40 <= len(times) <= 80
        else:
            assert len(attackers) == 1 and 30 <= len(times) <= 60
    assert flooded_by == {"bomber": 5, "crew": 3}
    # Victims are everyday subscribers: they make ordinary calls of their own.
    callers = {str(r["caller"]) for r in scenario.records}
    assert sum(1 for v in victims if v in callers) >= len(victims) // 2


def test_block_members_share_a_9_digit_prefix(
    scenario: Scenario, by_caller: dict[str, Records]
) -> None:
    members = subjects(scenario, "block_member")
    blocks = Counter(number[:9] for number in members)
    assert sorted(blocks.values()) == [BLOCK_ACTIVE, BLOCK_ACTIVE]
    assert all(classify(n, CHINA) is NumberClass.MVNO for n in members)
    for prefix in blocks:
        total = sum(len(by_caller[n]) for n in members if n.startswith(prefix))
        assert 2000 <= total <= 3600


def test_sequential_callees_have_a_constant_stride(
    scenario: Scenario, by_caller: dict[str, Records]
) -> None:
    for number in subjects(scenario, "sequential_dialler"):
        calls = by_caller[number]
        callees = [int(str(r["callee"])) for r in calls]
        strides = {b - a for a, b in pairwise(callees)}
        assert len(strides) == 1 and strides <= {1, 2, 3, 10}
        assert all(classify(str(r["callee"]), CHINA) is NumberClass.MOBILE for r in calls)
        unallocated = sum(1 for r in calls if r["release_cause"] == 1) / len(calls)
        assert 0.08 < unallocated < 0.35


def test_one_ring_callers_are_international_and_unanswered(
    scenario: Scenario, by_caller: dict[str, Records]
) -> None:
    for number in subjects(scenario, "one_ring"):
        assert classify(number, CHINA) is NumberClass.INTERNATIONAL
        assert number[2:5] in {"882", "216", "373", "225", "675"} and len(number) == 13
        calls = by_caller[number]
        assert all(r["release_cause"] in (18, 19) and r["duration_s"] == 0 for r in calls)
        assert {r["ingress_trunk"] for r in calls} == {"intl-gw-02"}
        assert len({r["callee"] for r in calls}) == len(calls)
        assert max_in_span([epoch(r) for r in calls], 600) >= 50


def test_spoofed_records_carry_the_spoof_trunk(scenario: Scenario) -> None:
    trunks = set(subjects(scenario, "spoof_trunk"))
    victims = set(subjects(scenario, "spoof_victim"))
    spoofed = [r for r in scenario.records if r["ingress_trunk"] in trunks]
    assert {r["ingress_trunk"] for r in spoofed} == trunks
    assert {str(r["caller"]) for r in spoofed} == victims
    assert all(classify(n, CHINA) in (NumberClass.MOBILE, NumberClass.MVNO) for n in victims)
    # About 30% of the spoofed calls present a real subscriber, who also calls on a core trunk.
    on_core = {str(r["caller"]) for r in scenario.records if r["ingress_trunk"] not in trunks}
    real = sum(1 for r in spoofed if r["caller"] in on_core)
    assert 0.2 < real / len(spoofed) < 0.4
    per_trunk = Counter(str(r["ingress_trunk"]) for r in spoofed)
    assert all(400 <= n <= 600 for n in per_trunk.values())
    assert not victims & set(subjects(scenario, "bomb_victim"))


def test_taxi_dispatch_peaks_at_both_ends_of_the_day(
    scenario: Scenario, by_caller: dict[str, Records]
) -> None:
    t0 = START.timestamp()
    for number in subjects(scenario, "taxi_dispatch"):
        hours = Counter(int((epoch(r) - t0) // 3600) for r in by_caller[number])
        for peak in (0, 1, 10, 11):
            assert 50 <= hours[peak] <= 110
        assert max(hours[h] for h in range(2, 10)) < 70


def test_switchboard_busiest_hour(scenario: Scenario, by_caller: dict[str, Records]) -> None:
    for number in subjects(scenario, "switchboard"):
        calls = by_caller[number]
        assert classify(number, CHINA) in (NumberClass.FIXED, NumberClass.HOTLINE)
        assert max_in_span([epoch(r) for r in calls], 3600) <= 240
        assert len({r["callee"] for r in calls}) >= 0.85 * len(calls)


def test_records_by_role_covers_everything(scenario: Scenario) -> None:
    counts = records_by_role(scenario)
    assert sum(counts.values()) == len(scenario.records)
    assert set(counts) == set(ROLES)
    assert counts["normal"] > 0.8 * SPEC.subscribers * 10 * SPEC.hours / 24


@pytest.mark.parametrize("name", ["labels.csv", "labels.csv.gz"])
def test_labels_csv_round_trip(scenario: Scenario, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert write_scenario_labels(path, scenario.labels) == len(scenario.labels)
    assert read_scenario_labels(path) == scenario.labels
    if not name.endswith(".gz"):
        assert path.read_text().splitlines()[0] == "subject,role,expect"


@pytest.mark.parametrize(
    "text",
    ["number,role\n123,bomber\n", "subject,role,expect\n123,stalker,intercept\n"],
)
def test_bad_labels_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(ValueError):
        read_scenario_labels(path)


@pytest.mark.parametrize(
    "change",
    [
        {"start": datetime(2026, 11, 30, 8)},
        {"hours": 3.0},
        {"scale": 0.0},
        {"late_fraction": 1.5},
        {"subscribers": 50},
    ],
)
def test_spec_validation(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        replace(SPEC, **change)


def test_cli_writes_scenario_files(tmp_path: Path) -> None:
    out, labels, allow = tmp_path / "day.csv", tmp_path / "labels.csv", tmp_path / "allow.txt"
    argv = ["simulate", "--scenario", "--scale", "0.1", "--subscribers", "300", "--hours", "6"]
    argv += ["--start", START.isoformat(), "--out", str(out)]
    assert main([*argv, "--labels", str(labels), "--allowlist", str(allow)]) == 0
    records = list(read_records(str(out), CHINA))
    assert records and all(isinstance(r, CDR) for r in records)
    assert any(isinstance(r, CDR) and r.ingress_trunk == "intl-gw-07" for r in records)
    read = read_scenario_labels(labels)
    assert {label.role for label in read} >= set(ATTACK_ROLES)
    assert allow.read_text().startswith("#")
    allowlist = Allowlist(allow, CHINA)
    expected = [label.subject for label in read if label.role in ALLOWLISTED_ROLES]
    assert len(allowlist) == len(expected) and all(n in allowlist for n in expected)
    expected_spec = ScenarioSpec(start=START, subscribers=300, hours=6, scale=0.1)
    assert read == generate_scenario(expected_spec).labels


def test_label_is_a_plain_value() -> None:
    label = ScenarioLabel("13800138000", "bomber", "intercept")
    assert label == ScenarioLabel("13800138000", "bomber", "intercept")
    assert hash(label) == hash(ScenarioLabel("13800138000", "bomber", "intercept"))


def test_issue_19_classes_follow_their_frozen_profiles(scenario: Scenario) -> None:
    """docs/scenario.md "Issue 19": one debtor per collector, rung 24-60 times within 2 h, plus
    calls to 1-6 other numbers; line checks step through consecutive numbers; rediallers ring
    one 400 hotline, busy until the last call; the new classes' ids apart from the others'."""
    by_caller = calls_by_caller(scenario)
    debtors = subjects(scenario, "debtor")
    for collector, debtor in zip(subjects(scenario, "debt_collector"), debtors, strict=True):
        calls = by_caller[collector]
        at_debtor = [epoch(r) for r in calls if r["callee"] == debtor]
        assert 24 <= len(at_debtor) <= 60
        assert max(at_debtor) - min(at_debtor) <= 2 * 3600
        assert 1 <= len({r["callee"] for r in calls} - {debtor}) <= 6
    for number in subjects(scenario, "line_check"):
        callees = [int(str(r["callee"])) for r in sorted(by_caller[number], key=epoch)]
        steps = [b - a for a, b in pairwise(callees)]
        assert steps.count(1) >= len(steps) - 1  # one jump at most, between two sessions
    for number in subjects(scenario, "hotline_redialler"):
        calls = sorted(by_caller[number], key=epoch)
        assert len({r["callee"] for r in calls}) == 1 and str(calls[0]["callee"]).startswith("400")
        assert [r["release_cause"] for r in calls[:-1]] == [17] * (len(calls) - 1)
        assert calls[-1]["answered"] is True
    new = {"debt_collector", "line_check", "hospital_caller", "hotline_redialler", "worried_parent"}
    for role in ("bulk_dialler", *new):
        for number in subjects(scenario, role):
            ids = {"-r19-" in str(r["cdr_id"]) for r in by_caller[number]}
            assert ids == {role in new}, role
