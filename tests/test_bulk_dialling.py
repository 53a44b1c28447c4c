"""Bulk-dialling detector: thresholds, levels, evidence and the registry entry."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.policy import DetectorPolicy, Level, load_policy, parse_policy
from config.settings import DEFAULT_POLICY_FILE
from detectors import registry
from detectors.bulk_dialling import NAME, bulk_dialling
from detectors.registry import load_all, register
from detectors.snapshot import Finding, WindowSnapshot

WINDOWS = {"10m": 600, "40m": 2400, "24h": 86_400}

# critical/intercept at 250 in 40m or 2000 in 24h (the default); warning/monitor at 100 in 40m.
TWO_LEVELS = parse_policy(
    {
        "windows": WINDOWS,
        "detectors": {
            "bulk_dialling": {
                "category": "telemarketing",
                "levels": [
                    # listed least severe first on purpose: the parser sorts them
                    {"severity": "warning", "action": "monitor", "thresholds": {"40m": 100}},
                    {
                        "severity": "critical",
                        "action": "intercept",
                        "thresholds": {"40m": 250, "24h": 2000},
                    },
                ],
            }
        },
    }
).detectors["bulk_dialling"]

ONE_LEVEL = DetectorPolicy(
    "bulk_dialling",
    "telemarketing",
    (Level("critical", "intercept", MappingProxyType({"40m": 250, "24h": 2000})),),
)

DAY_ONLY = DetectorPolicy(
    "bulk_dialling",
    "telemarketing",
    (Level("warning", "monitor", MappingProxyType({"24h": 500})),),
)

THREE_LEVELS = DetectorPolicy(
    "bulk_dialling",
    "spam",
    (
        Level("critical", "intercept", MappingProxyType({"10m": 100})),
        Level("warning", "monitor", MappingProxyType({"40m": 150, "24h": 1000})),
        Level("info", "monitor", MappingProxyType({"24h": 300})),
    ),
)


def snap(m10: int = 0, m40: int = 0, h24: int = 0) -> WindowSnapshot:
    return WindowSnapshot(
        "17012345678", "mvno", 1_793_581_200_000, {"10m": m10, "40m": m40, "24h": h24}
    )


Expected = tuple[str, str, tuple[str, ...], dict[str, int]] | None

CASES = [
    # --- the default single level
    pytest.param(ONE_LEVEL, snap(), None, id="default-nothing"),
    pytest.param(ONE_LEVEL, snap(m40=249, h24=1999), None, id="default-one-below-both"),
    pytest.param(
        ONE_LEVEL,
        snap(m40=250, h24=250),
        (
            "critical",
            "intercept",
            ("250 calls in 40m >= 250",),
            {"calls_40m": 250, "calls_24h": 250},
        ),
        id="default-exactly-40m",
    ),
    pytest.param(
        ONE_LEVEL,
        snap(m40=10, h24=2000),
        (
            "critical",
            "intercept",
            ("2000 calls in 24h >= 2000",),
            {"calls_40m": 10, "calls_24h": 2000},
        ),
        id="default-24h-alone",
    ),
    pytest.param(
        ONE_LEVEL,
        snap(m40=249, h24=2000),
        (
            "critical",
            "intercept",
            ("2000 calls in 24h >= 2000",),
            {"calls_40m": 249, "calls_24h": 2000},
        ),
        id="default-24h-with-40m-one-below",
    ),
    pytest.param(
        ONE_LEVEL,
        snap(m10=999, m40=300, h24=2500),
        (
            "critical",
            "intercept",
            ("300 calls in 40m >= 250", "2500 calls in 24h >= 2000"),
            {"calls_40m": 300, "calls_24h": 2500},
        ),
        id="default-both-windows-reasons-in-policy-order",
    ),
    pytest.param(ONE_LEVEL, snap(m10=10_000), None, id="default-ignores-unthresholded-window"),
    # --- two levels: the most severe level reached wins
    pytest.param(TWO_LEVELS, snap(m40=99, h24=99), None, id="two-one-below-warning"),
    pytest.param(
        TWO_LEVELS,
        snap(m40=100, h24=100),
        ("warning", "monitor", ("100 calls in 40m >= 100",), {"calls_40m": 100}),
        id="two-exactly-warning",
    ),
    pytest.param(
        TWO_LEVELS,
        snap(m40=249, h24=1999),
        ("warning", "monitor", ("249 calls in 40m >= 100",), {"calls_40m": 249}),
        id="two-one-below-critical",
    ),
    pytest.param(
        TWO_LEVELS,
        snap(m40=250, h24=250),
        (
            "critical",
            "intercept",
            ("250 calls in 40m >= 250",),
            {"calls_40m": 250, "calls_24h": 250},
        ),
        id="two-exactly-critical",
    ),
    pytest.param(
        TWO_LEVELS,
        snap(m40=5, h24=2000),
        (
            "critical",
            "intercept",
            ("2000 calls in 24h >= 2000",),
            {"calls_40m": 5, "calls_24h": 2000},
        ),
        id="two-critical-on-24h-alone-below-warning-40m",
    ),
    # --- a policy thresholded on the 24h window only
    pytest.param(DAY_ONLY, snap(m10=400, m40=499, h24=499), None, id="day-only-one-below"),
    pytest.param(
        DAY_ONLY,
        snap(h24=500),
        ("warning", "monitor", ("500 calls in 24h >= 500",), {"calls_24h": 500}),
        id="day-only-exactly",
    ),
    # --- three levels, different windows per level
    pytest.param(
        THREE_LEVELS,
        snap(m10=100, m40=100, h24=100),
        ("critical", "intercept", ("100 calls in 10m >= 100",), {"calls_10m": 100}),
        id="three-critical-on-10m",
    ),
    pytest.param(
        THREE_LEVELS,
        snap(m10=99, m40=150, h24=300),
        ("warning", "monitor", ("150 calls in 40m >= 150",), {"calls_40m": 150, "calls_24h": 300}),
        id="three-warning-beats-info",
    ),
    pytest.param(
        THREE_LEVELS,
        snap(m10=99, m40=149, h24=300),
        ("info", "monitor", ("300 calls in 24h >= 300",), {"calls_24h": 300}),
        id="three-info-only",
    ),
    pytest.param(THREE_LEVELS, snap(m10=99, m40=149, h24=299), None, id="three-all-one-below"),
]


@pytest.mark.parametrize(("policy", "snapshot", "expected"), CASES)
def test_bulk_dialling(
    policy: DetectorPolicy, snapshot: WindowSnapshot, expected: Expected
) -> None:
    got = bulk_dialling(snapshot, policy)
    if expected is None:
        assert got is None
        return
    severity, action, reasons, evidence = expected
    assert got == Finding(NAME, severity, action, policy.category, evidence, reasons)


def test_two_level_policy_is_sorted_most_severe_first() -> None:
    assert [lv.severity for lv in TWO_LEVELS.levels] == ["critical", "warning"]


def test_default_policy_file_fires_at_250_in_40_minutes() -> None:
    policy = load_policy(DEFAULT_POLICY_FILE).detectors["bulk_dialling"]
    assert bulk_dialling(snap(m40=249, h24=1999), policy) is None
    got = bulk_dialling(snap(m40=250, h24=1999), policy)
    assert got is not None
    assert (got.severity, got.action, got.category) == ("critical", "intercept", "telemarketing")


def test_policy_without_levels_never_fires() -> None:
    empty = DetectorPolicy("bulk_dialling", "telemarketing", ())
    assert bulk_dialling(snap(m10=10**6, m40=10**6, h24=10**6), empty) is None


def test_snapshot_missing_a_thresholded_window_counts_it_as_zero() -> None:
    partial = WindowSnapshot("17012345678", "mvno", 0, {"40m": 300})
    got = bulk_dialling(partial, ONE_LEVEL)
    assert got is not None
    assert got.reasons == ("300 calls in 40m >= 250",)
    assert got.evidence == {"calls_40m": 300, "calls_24h": 0}


COUNTS = st.fixed_dictionaries(
    {w: st.integers(min_value=0, max_value=3000) for w in ("10m", "40m", "24h")}
)
RANK = {None: -1, "info": 0, "warning": 1, "critical": 2}


@settings(max_examples=300, deadline=None)
@given(
    base=COUNTS,
    extra=COUNTS,
    policy=st.sampled_from([ONE_LEVEL, TWO_LEVELS, DAY_ONLY, THREE_LEVELS]),
)
def test_bulk_dialling_is_monotone(
    base: dict[str, int], extra: dict[str, int], policy: DetectorPolicy
) -> None:
    """Registered as monotone: more calls never lower the severity reached."""
    more = {w: base[w] + extra[w] for w in base}
    low = bulk_dialling(WindowSnapshot("n", "mobile", 0, base), policy)
    high = bulk_dialling(WindowSnapshot("n", "mobile", 0, more), policy)
    assert RANK[high.severity if high else None] >= RANK[low.severity if low else None]
    for finding, counts in ((low, base), (high, more)):
        if finding is not None:
            assert finding.reasons
            assert all(
                finding.evidence[f"calls_{w}"] == counts[w]
                for w in counts
                if f"calls_{w}" in finding.evidence
            )


def test_registry_has_bulk_dialling_as_monotone() -> None:
    detectors = load_all()
    assert detectors[NAME].fn is bulk_dialling
    assert detectors[NAME].monotone is True
    assert detectors[NAME].name == "bulk_dialling"


def test_registering_a_name_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "DETECTORS", {})

    def fn(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
        return None

    register("probe", monotone=False)(fn)
    assert registry.DETECTORS["probe"].fn is fn
    with pytest.raises(ValueError, match="'probe' registered twice"):
        register("probe", monotone=True)(fn)
    assert registry.DETECTORS["probe"].monotone is False
