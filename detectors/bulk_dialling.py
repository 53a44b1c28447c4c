"""Bulk dialling: call velocity at several time scales, read early from short windows.

What it recognises: a telemarketer working a list. The field's trained telemarketer dials about
250 numbers in 40 minutes and 2,000 a day; nobody else on a subscriber line comes close. At that
rate a 5-minute window already holds about 31 calls, so a short window with a proportional
threshold flags the dialler within minutes, while the 40-minute and 24-hour thresholds catch
slower and steadier dialling.

Why the conditions: velocity alone cannot tell a dialler from a busy switchboard, whose calls
are mostly answered (three in four) and are conversations. A dialler reaches few people and
is hung up on: intercepting needs a low answer rate and short answered calls; the raw counts
alone (a lower level in the default policy) only ask for monitoring.

Thresholds and levels: ``[detectors.bulk_dialling]`` in config/default_policy.toml. Reasons
written: the threshold reached (``"31 calls in 5m >= 22"``), then each condition that held
(``"max_answer_rate 0.45 holds in 5m"``).
"""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import Conditions, match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "bulk_dialling"

CONDITIONS: Conditions = {
    # A dialler reaches few people: answered / calls at most this.
    "max_answer_rate": lambda value, tally, _: tally.share("answered") <= value,
    # Its answered calls are hung up on: short / answered at least this. Holds when nothing was
    # answered (no call to judge).
    "min_short_share": lambda value, tally, _: tally.answered == 0 or tally.share("short") >= value,
    # A list is dialled once: calls to numbers not among the recent ones / calls at least this.
    "min_distinct_share": lambda value, tally, _: tally.share("distinct") >= value,
}


@register(NAME, kind="number", conditions=CONDITIONS)
def bulk_dialling(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy, CONDITIONS)
