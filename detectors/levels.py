"""Shared level matching: thresholds on calls per window, then conditions on that window.

A level fires when ANY of its window thresholds is reached (after the number-class factor) and
ALL of its conditions hold on the tally of a window that reached its threshold. Levels are
tried from the most severe down; the first that fires is the finding.

What a condition means belongs to the detector that uses it: each detector module declares its
``CONDITIONS`` (name -> predicate) and registers them, and a policy level may name only those
(``detectors.registry.check_policy``). The machinery here only applies them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from config.policy import DetectorPolicy, Level
from detectors.snapshot import Finding, Tally, WindowSnapshot

# (the level's value, the tally of the window that reached its threshold, the counterparts
# with at least the detector's member_min_calls) -> whether the condition holds. Rates and
# shares are fractions; the min_* counts are absolute.
Condition = Callable[[float, Tally, int], bool]
Conditions = Mapping[str, Condition]


def scaled(limit: int, factor: float) -> int:
    return max(1, math.ceil(limit * factor))


def condition_holds(
    conditions: Conditions, name: str, value: float, tally: Tally, members: int
) -> bool:
    holds = conditions.get(name)
    if holds is None:
        raise ValueError(f"unknown condition {name!r}; known: {tuple(conditions)}")
    return holds(value, tally, members)


def level_fires(
    level: Level,
    snap: WindowSnapshot,
    factor: float,
    conditions: Conditions,
    members: int = 0,
) -> tuple[str, Tally] | None:
    """The first window (in threshold order) whose threshold and conditions hold, if any."""
    if level.classes and snap.number_class not in level.classes:
        return None
    for window, limit in level.thresholds.items():
        tally = snap.windows.get(window)
        if tally is None or tally.calls < scaled(limit, factor):
            continue
        if all(
            condition_holds(conditions, c, v, tally, members) for c, v in level.conditions.items()
        ):
            return window, tally
    return None


def evidence_of(tally: Tally) -> dict[str, int | float]:
    return {
        "window_calls": tally.calls,
        "answered": tally.answered,
        "short_answered": tally.short,
        "unallocated": tally.unallocated,
        "distinct": tally.distinct,
        "sequential": tally.sequential,
    }


def describe(window: str, tally: Tally, level: Level, factor: float) -> tuple[str, ...]:
    """The reasons: the threshold reached, then each condition that held, e.g.
    ``("31 calls in 5m >= 22", "max_answer_rate 0.45 holds in 5m")``."""
    limit = scaled(level.thresholds[window], factor)
    reasons = [f"{tally.calls} calls in {window} >= {limit}"]
    for cond, value in level.conditions.items():
        reasons.append(f"{cond} {value:g} holds in {window}")
    return tuple(reasons)


def match(
    name: str,
    snap: WindowSnapshot,
    policy: DetectorPolicy,
    conditions: Conditions,
    members: Mapping[str, int] | None = None,
) -> Finding | None:
    """The generic detector body: the most severe level that fires, with its evidence.

    ``members``: counterparts -> calls (detectors with members); those with at least the
    policy's ``member_min_calls`` are the finding's members, and their number is what the
    ``min_members`` condition reads."""
    min_calls = int(policy.params.get("member_min_calls", 1))
    active = tuple(sorted(m for m, n in (members or {}).items() if n >= min_calls))
    for level in policy.levels:  # most severe first
        fired = level_fires(level, snap, snap.factor, conditions, len(active))
        if fired is None:
            continue
        window, tally = fired
        evidence = evidence_of(tally)
        if members is not None:
            evidence["members"] = len(active)
        return Finding(
            name,
            level.severity,
            level.action,
            policy.category,
            evidence,
            describe(window, tally, level, snap.factor),
            members=active,
        )
    return None
