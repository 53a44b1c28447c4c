"""Shared level matching: thresholds on calls per window, then conditions on that window.

A level fires when ANY of its window thresholds is reached (after the number-class factor) and
ALL of its conditions hold on the tally of a window that reached its threshold. Levels are
tried from the most severe down; the first that fires is the finding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from config.policy import DetectorPolicy, Level
from detectors.snapshot import Finding, Tally, WindowSnapshot


def scaled(limit: int, factor: float) -> int:
    return max(1, math.ceil(limit * factor))


def condition_holds(name: str, value: float, tally: Tally, members: int) -> bool:
    if name == "max_answer_rate":
        return tally.share("answered") <= value
    if name == "min_answer_rate":
        return tally.share("answered") >= value
    if name == "min_short_share":  # vacuous when nothing was answered: no call to judge
        return tally.answered == 0 or tally.share("short") >= value
    if name == "min_distinct_share":
        return tally.share("distinct") >= value
    if name == "max_distinct_share":
        return tally.share("distinct") <= value
    if name == "min_unallocated":
        return tally.unallocated >= value
    if name == "min_sequential":
        return tally.sequential >= value
    if name == "min_members":
        return members >= value
    raise ValueError(f"unknown condition {name!r}")


def level_fires(
    level: Level, snap: WindowSnapshot, factor: float, members: int = 0
) -> tuple[str, Tally] | None:
    """The first window (in threshold order) whose threshold and conditions hold, if any."""
    if level.classes and snap.number_class not in level.classes:
        return None
    for window, limit in level.thresholds.items():
        tally = snap.windows.get(window)
        if tally is None or tally.calls < scaled(limit, factor):
            continue
        if all(condition_holds(c, v, tally, members) for c, v in level.conditions.items()):
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
    limit = scaled(level.thresholds[window], factor)
    reasons = [f"{tally.calls} calls in {window} >= {limit}"]
    for cond, value in level.conditions.items():
        reasons.append(f"{cond} {value:g} holds in {window}")
    return tuple(reasons)


def match(
    name: str,
    snap: WindowSnapshot,
    policy: DetectorPolicy,
    members: Mapping[str, int] | None = None,
) -> Finding | None:
    """The generic detector body: the most severe level that fires, with its evidence."""
    min_calls = int(policy.params.get("member_min_calls", 1))
    active = tuple(sorted(m for m, n in (members or {}).items() if n >= min_calls))
    for level in policy.levels:  # most severe first
        fired = level_fires(level, snap, snap.factor, len(active))
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
