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
someone phoning colleagues in one office block and talking to them. Since policy 2026.12.3 a
call to an unallocated number (Q.850 cause 1: stepping through a range, not dialling a list)
also makes the profile robocall-like, and an intercept is vetoed, down to ``monitor`` with the
evidence, when more than ``params.veto_conversation_share`` (0.5) of the caller's attempts in
the last hour were conversations (a line check's quiet stretch of unanswered lines).

Thresholds and levels: ``[detectors.sequential_dialling]`` in config/default_policy.toml.
Reasons written: the threshold reached (``"3 calls in 10m >= 3"``), then each condition that
held (``"min_sequential 2 holds in 10m"``).
"""

from __future__ import annotations

from dataclasses import replace

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
    # A robocall-like answer profile (policy 2026.12.2): nothing answered; or a call to an
    # unallocated number (a range, not a list: policy 2026.12.3); or most of the
    # answered calls short (more than half); or conversations (answered calls longer than
    # short_call_s) at most this share of the calls. A caller stepping through a block while
    # holding conversations (line checks: mostly answered, 20-90 s) has none of these.
    "robocall_profile": lambda value, tally, _: (
        tally.answered == 0
        or tally.unallocated > 0
        or tally.short * 2 > tally.answered
        or (tally.answered - tally.short) <= value * tally.calls
    ),
}


# The caller's last hour: an intercept is vetoed when most of its attempts there were
# conversations (answered and longer than short_call_s), whatever its last ten minutes show.
VETO_WINDOW = "1h"


@register(NAME, kind="number", conditions=CONDITIONS, reads=(VETO_WINDOW,))
def sequential_dialling(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    finding = match(NAME, snap, policy, CONDITIONS)
    if finding is None or finding.action != "intercept":
        return finding
    hour = snap.windows.get(VETO_WINDOW)  # the engine adds it once there is a finding
    share = float(policy.params.get("veto_conversation_share", 1))
    if hour is None or not hour.calls:
        return finding
    conversations = hour.answered - hour.short
    if conversations <= share * hour.calls:
        return finding
    # Vetoed: the levels below the intercept, with the hour's conversations as evidence.
    lower = replace(policy, levels=tuple(lv for lv in policy.levels if lv.action != "intercept"))
    finding = match(NAME, snap, lower, CONDITIONS)
    if finding is None:
        return None
    return replace(
        finding,
        evidence={**finding.evidence, "conversations_1h": conversations, "calls_1h": hour.calls},
        reasons=(
            *finding.reasons,
            f"intercept vetoed: {conversations} of {hour.calls} calls in {VETO_WINDOW} "
            f"were conversations (> {share:g})",
        ),
    )
