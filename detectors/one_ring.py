"""One-ring (wangiri) calls: bursts of unanswered calls from international numbers to many
distinct callees, hoping for an expensive call back."""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "one_ring"


@register(NAME, kind="number")
def one_ring(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy)
