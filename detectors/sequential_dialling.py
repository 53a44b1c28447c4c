"""Sequential dialling: callees that step through a numbering block (n, n+1, n+2, or a fixed
small stride), the mark of a dialler working through a range rather than a list.

What it recognises: a dialler fed a number range instead of a customer list. A call counts as
sequential when its callee has as many digits as the previous callee and lies at most
``features.max_stride`` (100) away from it (detectors.features). Random dialling in a space of
hundreds of millions of numbers almost never lands within 100 of the previous callee, so a few
such steps within minutes are strong evidence even at a low call count: the default policy
intercepts 2 sequential steps among 3 different callees in ten minutes, with a robocall-like
answer profile (``robocall_profile``: nothing answered, most answered calls short, or few
conversations among the calls: at most 15%); stepping through a block while holding real
conversations (a company checking a client's direct-dial lines before a move) is only
monitored, with the evidence. Two steps, not three, because one of a dialler's first calls is
often delivered late (5% of records, by up to 10 minutes): in delivery order the dialler holds
only 3 of its first 4 calls when a 4-call rule would have fired. The distinct share keeps a caller
ringing two neighbouring numbers in turn (a family's lines) out; the answer profile keeps out
someone phoning colleagues in one office block and talking to them.

Thresholds and levels: ``[detectors.sequential_dialling]`` in config/default_policy.toml.
Reasons written: the threshold reached (``"3 calls in 10m >= 3"``), then each condition that
held (``"min_sequential 2 holds in 10m"``).
"""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import Conditions, match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "sequential_dialling"

CONDITIONS: Conditions = {
    # Calls a small step from the previous callee: at least this many in the window.
    "min_sequential": lambda value, tally, _: tally.sequential >= value,
    # Different numbers each time: calls to numbers not among the recent counterparts / calls
    # at least this.
    "min_distinct_share": lambda value, tally, _: tally.share("distinct") >= value,
    # The answered calls hung up on: short / answered at least this. Holds when nothing was
    # answered (no call to judge).
    "min_short_share": lambda value, tally, _: tally.answered == 0 or tally.share("short") >= value,
    # A robocall-like answer profile (policy 2026.12.2): nothing answered; or most of the
    # answered calls short (more than half); or conversations (answered calls longer than
    # short_call_s) at most this share of the calls. A caller stepping through a block while
    # holding conversations (line checks: mostly answered, 20-90 s) has none of these.
    "robocall_profile": lambda value, tally, _: (
        tally.answered == 0
        or tally.short * 2 > tally.answered
        or (tally.answered - tally.short) <= value * tally.calls
    ),
}


@register(NAME, kind="number", conditions=CONDITIONS)
def sequential_dialling(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy, CONDITIONS)
