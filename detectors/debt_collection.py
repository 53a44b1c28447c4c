"""Debt collection (illegal collection harassment): one caller ringing one person again and
again over hours, mostly unanswered or hung up on.

What it recognises: a collector working on a debtor. It rings the debtor dozens of times over an
hour or two, the debtor rejects the calls, lets them ring out or picks up and hangs up at once,
and between those calls the collector rings the debtor's family and friends to shame and
pressure. That stays under call bombing (a flood within minutes) and under every rate level (a
few dozen calls an hour). The subject is the called person (named in alerts only by its
pseudonym), read in stage 2, which sees every call to it whatever partition its callers are on.

Evidence, per caller and callee: the caller's attempts at the person within the pair window
(``features.pair_windows.callee``, 2 h by default), the newest at most ``params.member_active_s``
before the call evaluated, each weighted by the local time of day
(DIALWATCH_TIMEZONE): an attempt in the night hours ``params.night_from_hour`` to
``params.night_until_hour`` counts ``params.night_weight`` times. A caller whose weighted
attempts reach ``params.member_min_calls`` (scaled by the person's class factor) is a member.
The levels then read the person's own window (every call to it, from anyone): how few were
answered, and whether the answered ones were mostly short (a debtor hangs up; a relative at a
hospital bed or a parent who finally gets through talks for minutes). A level names the person's
number classes it applies to: a person's own line, never a 400 hotline (someone redialling a
busy hotline makes as many attempts, all unanswered).

Actions: the person's alert asks to protect it; each member gets its own alert to intercept
(spoofed callers never: their identity is not theirs), with its weighted attempts as evidence.

A caller's attempts must also span at least ``params.member_min_span_s`` (15 min) from the
first to the newest within the pair window: a flood of minutes is call bombing, whose own alert
already protects the victim (one ``protect`` per flood, not a second one for debt collection).

Complaint reports: a caller with an active report of category ``debt_collection`` (stage 2
reads the stage-1 complaint store for the callers it may name, ``snap.reported``) has its
member threshold multiplied by the complaints factor (12 -> 9 at 0.7); the alert carries
``complaints`` and a reason.

Contact circles (detectors.circles): ``contacts_of_person_called`` in the evidence is, for the
members, the most of a member's other callees found in the person's circle (numbers the person
called or was called by over the last days). It is evidence only: lowering the levels on it
was measured not to help (docs/scenario.md), so no level reads it.

Rarely answered: a level also fires, whatever the answered calls' length, when its first
window holds at least ``params.rare_min_calls`` (18) calls with at most
``params.rare_max_answer_rate`` (15%) answered (a collector's first answers may be 30-second
ones, which are not short).

Thresholds and levels: ``[detectors.debt_collection]`` in config/default_policy.toml. Reasons
written: the threshold reached (``"14 calls in 2h >= 6"``), each condition that held, then the
members' weighted attempts (``"a caller with 12 weighted attempts in 2h >= 12"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from config.policy import DetectorPolicy, Level
from detectors.levels import Conditions, describe, evidence_of, level_fires, scaled
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "debt_collection"

CONDITIONS: Conditions = {
    # Answered calls / calls to the person at most this.
    "max_answer_rate": lambda value, tally, _: tally.share("answered") <= value,
    # The answered calls hung up on: short / answered at least this. Holds when nothing was
    # answered (no call to judge).
    "min_short_share": lambda value, tally, _: tally.answered == 0 or tally.share("short") >= value,
    # Callers with at least member_min_calls weighted attempts: at least this many.
    "min_members": lambda value, _, members: members >= value,
}


def is_night(hour: int, night_from: int, night_until: int) -> bool:
    """Whether a local ``hour`` lies in the night ``[night_from, night_until)``, which may wrap
    midnight (22 to 7)."""
    if night_from <= night_until:
        return night_from <= hour < night_until
    return hour >= night_from or hour < night_until


def weighted_attempts(
    pairs: Mapping[str, tuple[tuple[int, int], ...]], params: Mapping[str, float], at_ms: int
) -> dict[str, int]:
    """Each caller's attempts, a night attempt counting ``night_weight`` times (rounded up);
    only callers whose newest attempt is at most ``member_active_s`` before ``at_ms`` (a
    campaign that stopped is not re-raised by someone else's call after its episode closed)
    and whose attempts span at least ``member_min_span_s`` (a flood of minutes is bombing)."""
    night_from = int(params.get("night_from_hour", 22))
    night_until = int(params.get("night_until_hour", 7))
    weight = float(params.get("night_weight", 1))
    since_s = at_ms // 1000 - int(params.get("member_active_s", 3600))
    span_s = int(params.get("member_min_span_s", 0))
    out = {}
    for caller, calls in pairs.items():
        if not calls or calls[-1][0] < since_s or calls[-1][0] - calls[0][0] < span_s:
            continue
        night = sum(1 for _, hour in calls if is_night(hour, night_from, night_until))
        out[caller] = len(calls) - night + math.ceil(night * weight)
    return out


def rarely_answered(snap: WindowSnapshot, policy: DetectorPolicy, level: Level) -> bool:
    """The level's other path: its first window holds at least ``params.rare_min_calls`` calls
    (times the class factor) with at most ``params.rare_max_answer_rate`` answered, whatever
    the answered calls' length (policy 2026.12.3); off without those params."""
    least = policy.params.get("rare_min_calls")
    rate = policy.params.get("rare_max_answer_rate")
    if least is None or rate is None or not level.thresholds:
        return False
    if level.classes and snap.number_class not in level.classes:
        return False
    tally = snap.windows.get(next(iter(level.thresholds)))
    if tally is None or tally.calls < scaled(int(least), snap.factor):
        return False
    return tally.share("answered") <= rate


@register(NAME, kind="callee", conditions=CONDITIONS)
def debt_collection(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    attempts = weighted_attempts(snap.pairs, policy.params, snap.at_ms)
    base = int(policy.params.get("member_min_calls", 1))
    least = scaled(base, snap.factor)

    # Circle evidence may lower a member's threshold (``contact_min`` hits, x ``contact_factor``);
    # the default policy leaves it off (contact_min = 0): measured not to help.
    contact_min = int(policy.params.get("contact_min", 0))
    contact_factor = float(policy.params.get("contact_factor", 1))

    def threshold(caller: str) -> int:
        factor = snap.factor
        report = snap.reported.get(caller)
        if report is not None:
            factor *= report[1]
        if contact_min and snap.circle_hits.get(caller, 0) >= contact_min:
            factor *= contact_factor
        return least if factor == snap.factor else scaled(base, factor)

    members = tuple(sorted(c for c, n in attempts.items() if n >= threshold(c)))
    for level in policy.levels:  # most severe first
        fired = level_fires(level, snap, snap.factor, CONDITIONS, len(members))
        rare = fired is None and bool(members) and rarely_answered(snap, policy, level)
        if fired is None and not rare:
            continue
        if fired is not None:
            window, tally = fired
            reasons = list(describe(window, tally, level, snap.factor))
        else:
            window = next(iter(level.thresholds))
            tally = snap.windows[window]
            limit = scaled(int(policy.params["rare_min_calls"]), snap.factor)
            reasons = [
                f"{tally.calls} calls in {window} >= {limit}",
                f"rarely answered: {tally.answered} of {tally.calls} "
                f"<= {policy.params['rare_max_answer_rate']:g}",
            ]
        evidence = {**evidence_of(tally), "members": len(members)}
        if members:
            evidence["max_member_attempts"] = max(attempts[m] for m in members)
            evidence["contacts_of_person_called"] = max(snap.circle_hits.get(m, 0) for m in members)
            reports = sum(snap.reported[m][0] for m in members if m in snap.reported)
            if reports:
                evidence["complaints"] = reports
                reasons.append(f"{reports} complaint report(s), latest: debt_collection")
        reasons += [
            f"a caller with {attempts[m]} weighted attempts >= {threshold(m)}" for m in members
        ]
        hits = [snap.circle_hits[m] for m in members if snap.circle_hits.get(m)]
        if hits:
            reasons.append(f"a caller rang {max(hits)} number(s) of the person's contact circle")
        return Finding(
            NAME,
            level.severity,
            level.action,
            policy.category,
            evidence,
            tuple(reasons),
            members=members,
            member_calls={m: attempts[m] for m in members},
        )
    return None
