"""Robocall profile: a steady stream of calls to almost always different numbers, mostly
unanswered, the answered ones very short.

What it recognises: an automated dialler (or a person reading a script) at a pace below the
bulk thresholds: 30 calls in an hour is enough when the profile fits. Velocity alone cannot
tell a dialler from a busy line; the profile can. A courier or a taxi dispatcher also makes
dozens of calls an hour, but most are answered (couriers) or go to the same few numbers again
(dispatch); an estate agent on a bad afternoon is rarely answered, but the answered calls are
conversations of minutes, while a robocall's answered calls are hung up within seconds (the
policy's ``features.short_call_s``: 20 s in the default policy).

Thresholds and levels: ``[detectors.robocall]`` in config/default_policy.toml. Reasons written:
the threshold reached (``"30 calls in 1h >= 30"``), then each condition that held
(``"min_distinct_share 0.85 holds in 1h"``).
"""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import Conditions, match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "robocall"

CONDITIONS: Conditions = {
    # Mostly unanswered: answered / calls at most this.
    "max_answer_rate": lambda value, tally, _: tally.share("answered") <= value,
    # Almost always a different number: calls to numbers not among the subject's recent
    # counterparts / calls at least this (dispatchers call the same drivers again).
    "min_distinct_share": lambda value, tally, _: tally.share("distinct") >= value,
    # The answered calls hung up on: short / answered at least this. Holds when nothing was
    # answered (no call to judge).
    "min_short_share": lambda value, tally, _: tally.answered == 0 or tally.share("short") >= value,
}


@register(NAME, kind="number", conditions=CONDITIONS)
def robocall(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy, CONDITIONS)
