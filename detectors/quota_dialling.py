"""Quota dialling: the new hire's quota, read over the 24-hour window.

What it recognises: a telemarketer told to make about 300 calls a day, spread thinly enough
over the working day to stay under every hourly threshold. Over a
day the count is unmistakable for a subscriber line, but a busy office line can also make 250
calls a day, so the robocall profile must hold over the whole day as well: mostly unanswered,
to different numbers, the answered calls short.

Thresholds and levels: ``[detectors.quota_dialling]`` in config/default_policy.toml. Reasons
written: the threshold reached (``"250 calls in 24h >= 250"``), then each condition that held
(``"max_answer_rate 0.5 holds in 24h"``).
"""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import Conditions, match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "quota_dialling"

CONDITIONS: Conditions = {
    # Mostly unanswered: answered / calls at most this.
    "max_answer_rate": lambda value, tally, _: tally.share("answered") <= value,
    # To different numbers: calls to numbers not among the recent counterparts / calls.
    "min_distinct_share": lambda value, tally, _: tally.share("distinct") >= value,
    # The answered calls hung up on: short / answered at least this. Holds when nothing was
    # answered (no call to judge).
    "min_short_share": lambda value, tally, _: tally.answered == 0 or tally.share("short") >= value,
}


@register(NAME, kind="number", conditions=CONDITIONS)
def quota_dialling(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy, CONDITIONS)
