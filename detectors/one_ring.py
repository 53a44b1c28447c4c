"""One-ring (wangiri) calls: bursts of unanswered calls from international numbers to many
distinct callees, hoping for an expensive call back.

What it recognises: the fraudster lets each phone ring once and hangs up before it can be
answered; the missed-call list shows a foreign number, and whoever calls back pays premium
rates to the fraudster's number. So the calls come from an international number (the level's
``classes``), in a burst (10 in 5 minutes by default), almost never answered, each to a
different callee. Generated number ranges also hit numbers nobody holds, released with Q.850
cause 1 (``min_unallocated``).

Thresholds and levels: ``[detectors.one_ring]`` in config/default_policy.toml. Reasons written:
the threshold reached (``"10 calls in 5m >= 10"``), then each condition that held
(``"max_answer_rate 0.2 holds in 5m"``).
"""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import Conditions, match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "one_ring"

CONDITIONS: Conditions = {
    # Hung up before anyone answers: answered / calls at most this.
    "max_answer_rate": lambda value, tally, _: tally.share("answered") <= value,
    # Each to a different callee: calls to numbers not among the recent ones / calls.
    "min_distinct_share": lambda value, tally, _: tally.share("distinct") >= value,
    # Calls to unallocated numbers (a generated range): at least this many.
    "min_unallocated": lambda value, tally, _: tally.unallocated >= value,
}


@register(NAME, kind="number", conditions=CONDITIONS)
def one_ring(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy, CONDITIONS)
