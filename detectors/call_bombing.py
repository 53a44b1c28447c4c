"""Call bombing (呼死你): one callee flooded within minutes, by one caller or by several.

What it recognises: harassment services that ring a victim's phone again and again (debt
collectors, revenge, extortion), often from a handful of numbers in turn so no single caller
stands out. The subject is the called number (named in alerts only by its pseudonym): 10 calls
to it in 5 minutes by default, mostly from callers it has just heard from (a popular hotline
gets many calls too, but each from someone new).

Members: every caller with at least ``params.member_min_calls`` calls to the victim in the peer
window (``features.peer_windows.callee``) is a member; the victim's alert asks to protect it,
each member gets its own alert to intercept (spoofed callers never: their identity is not
theirs).

Thresholds and levels: ``[detectors.call_bombing]`` in config/default_policy.toml. Reasons
written: the threshold reached (``"12 calls in 5m >= 10"``), then each condition that held
(``"max_distinct_share 0.6 holds in 5m"``).
"""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import Conditions, match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "call_bombing"

CONDITIONS: Conditions = {
    # From callers it has just heard from: calls from a caller not among the recent ones /
    # calls at most this.
    "max_distinct_share": lambda value, tally, _: tally.share("distinct") <= value,
    # Callers with at least member_min_calls calls in the peer window: at least this many.
    "min_members": lambda value, _, members: members >= value,
}


@register(NAME, kind="callee", conditions=CONDITIONS)
def call_bombing(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy, CONDITIONS, snap.peers)
