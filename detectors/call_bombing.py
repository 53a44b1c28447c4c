"""Call bombing (呼死你): one callee flooded within minutes, by one caller or by several.

The subject is the called number (named in alerts only by its pseudonym); the victim's alert
asks to protect it, and every caller with at least member_min_calls calls to it in the peer
window is a member to intercept."""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "call_bombing"


@register(NAME, kind="callee")
def call_bombing(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy, snap.peers)
