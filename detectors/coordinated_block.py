"""Coordinated blocks: many numbers of one 100-number range dialling together like one bulk
dialler.

What it recognises: a SIM farm or a bought block of virtual-operator numbers, where each number
stays under the single-number thresholds but together they make
120 or more calls in an hour through at least five active members, mostly unanswered. The
subject is the block (the caller number without its last two digits).

Members: every number of the block with at least ``params.member_min_calls`` calls in the peer
window (``features.peer_windows.block``) is a member, intercepted on the block's evidence; the
block's own alert is for monitoring.

Thresholds and levels: ``[detectors.coordinated_block]`` in config/default_policy.toml. Reasons
written: the threshold reached (``"120 calls in 1h >= 120"``), then each condition that held
(``"min_members 5 holds in 1h"``).
"""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import Conditions, match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "coordinated_block"

CONDITIONS: Conditions = {
    # Numbers of the block with at least member_min_calls calls in the peer window: at least
    # this many (one busy office number is not a farm).
    "min_members": lambda value, _, members: members >= value,
    # Dialling, not talking: answered / calls at most this.
    "max_answer_rate": lambda value, tally, _: tally.share("answered") <= value,
}


@register(NAME, kind="block", conditions=CONDITIONS)
def coordinated_block(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy, CONDITIONS, snap.peers)
