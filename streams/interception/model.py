"""What a published alert asks of the interception list: pure decisions, no I/O.

An alert becomes at most one ``Intent``:

- ``list``: an ``intercept`` alert about a calling number (``subject`` ``number``) raised or
  escalated: list it, ``auto`` (active at once) or ``approve`` (pending) by its number class,
  nothing in ``shadow``; the entry lasts ``open_max_s`` while its episode is open.
- ``clear``: the episode of a listed number (or of a protected victim) was cleared: its entry now
  expires ``after_clear_s`` from now (only when the entry still belongs to that episode).
- ``protect``: a bombing victim's ``protect`` alert (``subject`` ``callee``, named by pseudonym):
  the victim's protection entry, once the worker resolved the pseudonym to the number.
- ``member``: a bombing member's ``intercept`` alert adds its caller to its victim's entry (and,
  as any intercept, lists the caller).

Emergency numbers are never listed or protected. Expiry and the breaker run on the wall clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from config.numbering import NumberClass, NumberingPlan, classify, is_emergency

BOMBING = "call_bombing"
# Detectors whose alerts name a victim (subject "callee", action "protect") and the callers
# harassing it (subject "number"): each such caller's entry is tied to the victim's protection.
VICTIM_DETECTORS = frozenset({BOMBING, "debt_collection"})


class Mode(StrEnum):
    SHADOW = "shadow"  # alerts only, nothing listed
    APPROVE = "approve"  # entries wait for an operator, apart from the active keys
    AUTO = "auto"  # listed at once


# Defaults per number class (issue 13): short service numbers and 400/800 hotlines wait for an
# operator; classes that are not a subscriber's own line (local without area code, short,
# unknown) are only alerted on.
DEFAULT_MODES: Mapping[str, Mode] = {
    NumberClass.MOBILE: Mode.AUTO,
    NumberClass.MVNO: Mode.AUTO,
    NumberClass.FIXED: Mode.AUTO,
    NumberClass.INTERNATIONAL: Mode.AUTO,
    NumberClass.CALL_CENTRE: Mode.AUTO,
    NumberClass.SERVICE: Mode.APPROVE,
    NumberClass.HOTLINE: Mode.APPROVE,
    NumberClass.LOCAL: Mode.APPROVE,
    NumberClass.SHORT: Mode.SHADOW,
    NumberClass.UNKNOWN: Mode.SHADOW,
}


def parse_modes(text: str) -> dict[str, Mode]:
    """``DEFAULT_MODES`` with ``class=mode,...`` overrides (``DIALWATCH_INTERCEPT_MODES``)."""
    modes: dict[str, Mode] = {str(k): v for k, v in DEFAULT_MODES.items()}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or name not in modes:
            raise ValueError(
                f"intercept_modes: {part.strip()!r}: expected class=mode with a class among "
                f"{', '.join(sorted(modes))}"
            )
        try:
            modes[name] = Mode(value)
        except ValueError:
            raise ValueError(
                f"intercept_modes: {name}={value!r}: the mode must be shadow, approve or auto"
            ) from None
    return modes


@dataclass(frozen=True, slots=True)
class Timing:
    open_max_s: int = 7 * 86_400  # an entry's life while its episode stays open
    after_clear_s: int = 86_400  # and after the episode cleared

    def expires_at(self, now_ms: int, cleared: bool) -> int:
        return now_ms + 1000 * (self.after_clear_s if cleared else self.open_max_s)


@dataclass(frozen=True, slots=True)
class Intent:
    op: str  # "list" | "clear" | "protect" | "member"
    number: str  # the listed number; for protect and member: the victim's pseudonym
    alert_id: str
    detector: str
    episode_id: str
    expires_at_ms: int
    mode: Mode = Mode.AUTO
    escalated: bool = False
    caller: str = ""  # member: the bomber to reject on calls to the victim
    number_class: str = ""
    severity: str = ""
    reason: str = ""


def decide(
    alert: Mapping[str, Any],
    modes: Mapping[str, Mode],
    plan: NumberingPlan,
    timing: Timing,
    now_ms: int,
) -> Intent | None:
    """The list change ``alert`` asks for, or None."""
    subject, action, state = alert.get("subject"), alert.get("action"), alert.get("state")
    number, detector = str(alert.get("number", "")), str(alert.get("detector", ""))
    common: dict[str, Any] = {
        "alert_id": str(alert.get("alert_id", "")),
        "detector": detector,
        "episode_id": str(alert.get("episode_id", "")),
        "number_class": str(alert.get("number_class", "")),
        "severity": str(alert.get("severity", "")),
        "reason": "; ".join(str(r) for r in alert.get("reasons", ()))[:500],
    }
    if state == "cleared":
        if subject in ("number", "callee"):
            return Intent("clear", number, expires_at_ms=timing.expires_at(now_ms, True), **common)
        return None
    if subject == "callee" and action == "protect":
        return Intent("protect", number, expires_at_ms=timing.expires_at(now_ms, False), **common)
    if subject != "number" or action != "intercept" or alert.get("allowlisted"):
        return None
    if is_emergency(number, plan):
        return None
    mode = modes.get(str(classify(number, plan)), Mode.SHADOW)
    if mode is Mode.SHADOW:
        return None
    return Intent(
        "list",
        number,
        expires_at_ms=timing.expires_at(now_ms, False),
        mode=mode,
        escalated=state == "escalated",
        **common,
    )


def breaker_open(recent_listings: int, limit: int) -> bool:
    """More than ``limit`` auto-listings within the window: new entries wait for approval.
    (The same rule runs inside intercept_list.lua, atomically with the listing.)"""
    return recent_listings >= limit
