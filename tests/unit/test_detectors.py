"""Every detector, table-driven against the bundled default policy, plus the level mechanics
they share (thresholds, conditions, classes, class factors, members) and the registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.policy import DetectorPolicy, Level, load_policy, parse_policy
from config.settings import DEFAULT_POLICY_FILE
from detectors import registry
from detectors.catalogue import load_all
from detectors.features import call_features
from detectors.levels import condition_holds, match, scaled
from detectors.registry import check_policy, register
from detectors.snapshot import Tally, WindowSnapshot

POLICY = load_policy(DEFAULT_POLICY_FILE)
LEVEL = {"severity": "critical", "action": "intercept", "thresholds": {"5m": 10}}
AT = 1_793_581_200_000


def dialler(
    calls: int,
    answered_share: float = 0.3,
    repeats: int = 0,
    short_share: float = 0.8,
    **more: int,
) -> Tally:
    """A tally of ``calls`` with a dialler's profile (answered calls mostly short) unless told
    otherwise."""
    answered = round(calls * answered_share)
    short = round(answered * short_share)
    return Tally(calls=calls, answered=answered, short=short, repeats=repeats, **more)


def snap(
    windows: Mapping[str, Tally],
    number_class: str = "mobile",
    kind: str = "number",
    peers: Mapping[str, int] | None = None,
) -> WindowSnapshot:
    return WindowSnapshot(
        "13800138000",
        kind,
        number_class,
        AT,
        windows,
        MappingProxyType(dict(peers or {})),
        POLICY.factor(number_class),
    )


def run(name: str, s: WindowSnapshot) -> tuple[str, str] | None:
    detectors = load_all()
    finding = detectors[name].fn(s, POLICY.detectors[name])
    return None if finding is None else (finding.severity, finding.action)


INTERCEPT = ("critical", "intercept")

CASES = [
    # bulk dialling: early read from 5 minutes, profile needed to intercept
    ("bulk_dialling", snap({"5m": dialler(22)}), INTERCEPT),
    ("bulk_dialling", snap({"5m": dialler(21)}), None),
    ("bulk_dialling", snap({"5m": dialler(18)}, "mvno"), INTERCEPT),  # hot spot: 22 * 0.8
    ("bulk_dialling", snap({"5m": dialler(17)}, "mvno"), None),
    ("bulk_dialling", snap({"5m": dialler(30, answered_share=0.75)}), None),  # switchboard
    ("bulk_dialling", snap({"40m": dialler(250, answered_share=0.75)}), ("warning", "monitor")),
    ("bulk_dialling", snap({"40m": dialler(250)}), INTERCEPT),
    ("bulk_dialling", snap({"24h": dialler(2000)}), INTERCEPT),
    ("bulk_dialling", snap({"40m": dialler(249), "24h": dialler(1999)}), None),
    # robocall: an hour of calls to different numbers, mostly unanswered
    ("robocall", snap({"1h": dialler(30)}), INTERCEPT),
    ("robocall", snap({"1h": dialler(29)}), None),
    ("robocall", snap({"1h": dialler(40, answered_share=0.85)}), None),  # courier
    ("robocall", snap({"1h": dialler(40, repeats=20)}), None),  # taxi dispatch: same drivers
    # an estate agent on a bad afternoon: few answered, but those are conversations
    ("robocall", snap({"1h": dialler(32, answered_share=0.44, short_share=0.0)}), None),
    ("robocall", snap({"1h": dialler(30, answered_share=0.0)}), INTERCEPT),  # none answered
    ("bulk_dialling", snap({"5m": dialler(25, short_share=0.3)}), None),
    # the new hire's quota
    ("quota_dialling", snap({"24h": dialler(250)}), INTERCEPT),
    ("quota_dialling", snap({"24h": dialler(249)}), None),
    ("quota_dialling", snap({"24h": dialler(400, answered_share=0.6)}), None),
    # sequential dialling
    ("sequential_dialling", snap({"10m": dialler(4, sequential=3)}), INTERCEPT),
    ("sequential_dialling", snap({"10m": dialler(3, sequential=2)}), INTERCEPT),
    ("sequential_dialling", snap({"10m": dialler(4, sequential=1)}), None),
    # stepping through a block while talking (line checks): watched, never intercepted
    ("sequential_dialling", snap({"10m": dialler(3, 1.0, sequential=2, short_share=0)}), None),
    (
        "sequential_dialling",
        snap({"10m": dialler(4, 1.0, sequential=3, short_share=0)}),
        ("warning", "monitor"),
    ),
    ("sequential_dialling", snap({"10m": dialler(3, 0.0, sequential=2)}), INTERCEPT),
    # "mostly short" is more than half: one conversation and one 20-second answer is a line
    # check's window (policy 2026.12.2), two short answers of three a dialler's
    (
        "sequential_dialling",
        snap({"10m": dialler(4, 0.5, sequential=3, short_share=0.5)}),
        ("warning", "monitor"),
    ),
    (
        "sequential_dialling",
        snap({"10m": dialler(3, 1.0, sequential=2, short_share=0.67)}),
        INTERCEPT,
    ),
    # one conversation among many unanswered calls is still a dialler's profile; one in five
    # (a line check's window with a 20-second answer) is not
    (
        "sequential_dialling",
        snap({"10m": dialler(10, 0.2, sequential=9, short_share=0.5)}),
        INTERCEPT,
    ),
    (
        "sequential_dialling",
        snap({"10m": dialler(5, 0.4, sequential=4, short_share=0.5)}),
        ("warning", "monitor"),
    ),
    ("sequential_dialling", snap({"10m": dialler(2, sequential=2)}), None),
    # a call to an unallocated number makes the profile robocall-like (2026.12.3) ...
    (
        "sequential_dialling",
        snap({"10m": dialler(5, 0.4, sequential=4, short_share=0.5, unallocated=1)}),
        INTERCEPT,
    ),
    # ... and a last hour of mostly conversations vetoes the intercept: a line check's quiet
    # stretch of unanswered lines is monitored
    (
        "sequential_dialling",
        snap({"10m": dialler(5, 0.0, sequential=5), "1h": Tally(30, 24, 2)}),
        ("warning", "monitor"),
    ),
    (
        "sequential_dialling",
        snap({"10m": dialler(5, 0.0, sequential=5), "1h": Tally(30, 16, 2)}),
        INTERCEPT,
    ),
    # two neighbouring numbers called in turn: steps, but not different callees
    ("sequential_dialling", snap({"10m": dialler(4, sequential=3, repeats=2)}), None),
    # one-ring calls: international callers only
    ("one_ring", snap({"5m": dialler(10, 0.0)}, "international"), INTERCEPT),
    ("one_ring", snap({"5m": dialler(10, 0.0)}, "mobile"), None),
    ("one_ring", snap({"5m": dialler(10, 0.5)}, "international"), None),
    ("one_ring", snap({"5m": dialler(9, 0.0)}, "international"), None),
    # call bombing: a callee flooded mostly by callers it has just heard from
    ("call_bombing", snap({"5m": dialler(10, repeats=9)}, kind="callee"), ("critical", "protect")),
    ("call_bombing", snap({"5m": dialler(10, repeats=3)}, kind="callee"), None),
    ("call_bombing", snap({"5m": dialler(9, repeats=8)}, kind="callee"), None),
    # coordinated block: enough active members
    (
        "coordinated_block",
        snap({"1h": dialler(120)}, kind="block", peers={f"1701234560{i}": 6 for i in range(5)}),
        ("critical", "monitor"),
    ),
    (
        "coordinated_block",
        snap({"1h": dialler(120)}, kind="block", peers={f"1701234560{i}": 6 for i in range(4)}),
        None,
    ),
    (
        "coordinated_block",
        snap({"1h": dialler(120)}, kind="block", peers={f"1701234560{i}": 2 for i in range(9)}),
        None,  # members below member_min_calls are not active
    ),
    # debt collection: one caller's attempts at one person over hours (tests/unit/
    # test_debt_collection.py has the full table)
    (
        "debt_collection",
        replace(
            snap({"2h": dialler(12, 0.0, repeats=11)}, kind="callee"),
            pairs=MappingProxyType(
                {"13912345678": tuple((AT // 1000 - k * 300, 14) for k in range(12))[::-1]}
            ),
        ),
        ("critical", "protect"),
    ),
    (
        "debt_collection",
        replace(
            snap({"2h": dialler(11, 0.0, repeats=10)}, kind="callee"),
            pairs=MappingProxyType(
                {"13912345678": tuple((AT // 1000 - k * 300, 14) for k in range(11))[::-1]}
            ),
        ),
        None,
    ),
    # spoofed identities, attributed to the trunk
    ("spoofed_identity", snap({"10m": dialler(20)}, "trunk", kind="trunk"), INTERCEPT),
    ("spoofed_identity", snap({"10m": dialler(20, repeats=15)}, "trunk", kind="trunk"), INTERCEPT),
    ("spoofed_identity", snap({"10m": dialler(19)}, "trunk", kind="trunk"), None),
]


@pytest.mark.parametrize(("name", "snapshot", "expected"), CASES)
def test_default_policy(
    name: str, snapshot: WindowSnapshot, expected: tuple[str, str] | None
) -> None:
    assert run(name, snapshot) == expected


def test_every_registered_detector_is_in_the_default_policy_and_has_cases() -> None:
    names = set(load_all())
    assert names == set(POLICY.detectors)
    assert {c[0] for c in CASES} == names


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("bulk_dialling", "number"),
        ("robocall", "number"),
        ("quota_dialling", "number"),
        ("sequential_dialling", "number"),
        ("one_ring", "number"),
        ("call_bombing", "callee"),
        ("coordinated_block", "block"),
        ("spoofed_identity", "trunk"),
    ],
)
def test_detector_kinds(name: str, kind: str) -> None:
    assert load_all()[name].kind == kind


def test_members_are_the_counterparts_with_enough_calls() -> None:
    s = snap(
        {"5m": dialler(12, repeats=10)},
        kind="callee",
        peers={"13900000001": 7, "13900000002": 3, "13900000003": 2},
    )
    finding = load_all()["call_bombing"].fn(s, POLICY.detectors["call_bombing"])
    assert finding is not None
    assert finding.members == ("13900000001", "13900000002")
    assert finding.member_action == "intercept"
    assert finding.evidence["members"] == 2


def test_evidence_and_reasons_explain_the_finding() -> None:
    finding = load_all()["bulk_dialling"].fn(
        snap({"5m": dialler(25)}), POLICY.detectors["bulk_dialling"]
    )
    assert finding is not None
    assert finding.evidence["window_calls"] == 25
    assert finding.evidence["answered"] == 8
    assert finding.evidence["short_answered"] == 6
    assert finding.reasons[0] == "25 calls in 5m >= 22"
    assert "max_answer_rate 0.45 holds in 5m" in finding.reasons
    assert finding.category == "telemarketing"


@pytest.mark.parametrize(
    ("detector", "condition", "value", "tally", "members", "holds"),
    [
        ("bulk_dialling", "max_answer_rate", 0.5, Tally(calls=10, answered=5), 0, True),
        ("bulk_dialling", "max_answer_rate", 0.5, Tally(calls=10, answered=6), 0, False),
        ("bulk_dialling", "min_short_share", 0.5, Tally(calls=10, answered=4, short=2), 0, True),
        ("robocall", "min_short_share", 0.5, Tally(calls=10, answered=4, short=1), 0, False),
        ("quota_dialling", "min_short_share", 0.5, Tally(calls=10), 0, True),  # none answered
        ("robocall", "min_distinct_share", 0.9, Tally(calls=10, repeats=1), 0, True),
        ("quota_dialling", "min_distinct_share", 0.9, Tally(calls=10, repeats=2), 0, False),
        ("call_bombing", "max_distinct_share", 0.6, Tally(calls=10, repeats=4), 0, True),
        ("call_bombing", "max_distinct_share", 0.6, Tally(calls=10, repeats=3), 0, False),
        ("one_ring", "min_unallocated", 2, Tally(calls=10, unallocated=2), 0, True),
        ("one_ring", "min_unallocated", 2, Tally(calls=10, unallocated=1), 0, False),
        ("sequential_dialling", "min_sequential", 3, Tally(calls=10, sequential=3), 0, True),
        ("sequential_dialling", "min_sequential", 3, Tally(calls=10, sequential=2), 0, False),
        ("coordinated_block", "min_members", 5, Tally(calls=10), 5, True),
        ("call_bombing", "min_members", 5, Tally(calls=10), 4, False),
        ("one_ring", "max_answer_rate", 0.5, Tally(), 0, True),  # an empty tally has rate 0
    ],
)
def test_conditions(
    detector: str, condition: str, value: float, tally: Tally, members: int, holds: bool
) -> None:
    conditions = load_all()[detector].conditions
    assert condition_holds(conditions, condition, value, tally, members) is holds


def test_each_detector_declares_the_conditions_its_default_levels_use() -> None:
    detectors = load_all()
    for name, dp in POLICY.detectors.items():
        used = {c for lv in dp.levels for c in lv.conditions}
        assert used <= set(detectors[name].conditions), name
    check_policy(POLICY, detectors)


def test_a_condition_not_of_the_detector_is_an_error() -> None:
    conditions = load_all()["sequential_dialling"].conditions
    with pytest.raises(ValueError, match="unknown condition 'max_answer_rate'"):
        condition_holds(conditions, "max_answer_rate", 1, Tally(calls=1), 0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"robocall": {"levels": [{**LEVEL, "conditions": {"max_fun": 1}}]}},
            "rules.toml: robocall: unknown condition 'max_fun'; known: ('max_answer_rate',",
        ),
        (  # a condition of another detector
            {"sequential_dialling": {"levels": [{**LEVEL, "conditions": {"min_members": 2}}]}},
            "rules.toml: sequential_dialling: unknown condition 'min_members'; "
            "known: ('min_sequential', 'min_distinct_share', 'min_short_share', "
            "'robocall_profile')",
        ),
        (
            {"bulk_diallng": {"levels": [LEVEL]}},
            "rules.toml: unknown detector(s) ['bulk_diallng']; known: ('bulk_dialling',",
        ),
    ],
)
def test_check_policy_names_the_file_and_the_field(body: dict[str, object], message: str) -> None:
    policy = parse_policy({"windows": {"5m": 300}, "detectors": body}, source="rules.toml")
    with pytest.raises(ValueError) as raised:
        check_policy(policy, load_all())
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("limit", "factor", "expected"), [(22, 1.0, 22), (22, 0.8, 18), (1, 0.1, 1), (250, 1.2, 300)]
)
def test_scaled_thresholds(limit: int, factor: float, expected: int) -> None:
    assert scaled(limit, factor) == expected


def test_levels_are_tried_most_severe_first() -> None:
    policy = DetectorPolicy(
        "x",
        "spam",
        (
            Level("critical", "intercept", MappingProxyType({"5m": 50})),
            Level("warning", "monitor", MappingProxyType({"5m": 10})),
        ),
    )
    assert (f := match("x", snap({"5m": dialler(60)}), policy, {})) and f.severity == "critical"
    assert (f := match("x", snap({"5m": dialler(20)}), policy, {})) and f.severity == "warning"
    assert match("x", snap({"5m": dialler(9)}), policy, {}) is None


def test_a_window_missing_from_the_snapshot_never_fires() -> None:
    assert run("bulk_dialling", snap({"10m": dialler(500)})) is None


@given(
    calls=st.integers(0, 3000),
    extra=st.integers(0, 3000),
    window=st.sampled_from(["5m", "40m", "24h"]),
)
def test_bulk_dialling_is_monotone_in_calls(calls: int, extra: int, window: str) -> None:
    """With the same profile, more calls never lower the result: the engine relies on it."""
    order = [None, ("warning", "monitor"), INTERCEPT]
    low = run("bulk_dialling", snap({window: Tally(calls=calls)}))
    high = run("bulk_dialling", snap({window: Tally(calls=calls + extra)}))
    assert order.index(high) >= order.index(low)


def test_registering_a_name_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "DETECTORS", dict(load_all()))
    with pytest.raises(ValueError, match="registered twice"):
        register("bulk_dialling", kind="number")(lambda s, p: None)


def test_registering_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown subject kind"):
        register("z", kind="galaxy")


def test_call_features_of_a_call_sequence() -> None:
    """What each call adds: answered and short, unallocated, a repeat among the recent
    counterparts (the ring keeps the newest recent_counterparts), a small step from the last."""
    rules = replace(POLICY.features, recent_counterparts=2)
    ring: list[int] = []
    assert call_features(rules, True, 5, 16, "13900000001", "", ring) == [1, 1, 1, 0, 0, 0]
    assert call_features(rules, True, 60, 16, "13900000003", "13900000001", ring) == [
        1,
        1,
        0,
        0,
        0,
        1,
    ]
    assert call_features(rules, False, 0, 1, "13900000001", "13900000003", ring) == [
        1,
        0,
        0,
        1,
        1,
        1,
    ]
    assert len(ring) == 2
    assert call_features(rules, False, 0, -1, "13900000999", "13900000001", ring)[5] == 0
    assert call_features(rules, False, 0, -1, "", "13900000999", ring) == [1, 0, 0, 0, 0, 0]
    assert len(ring) == 2  # a call without a counterpart leaves the ring as it was
