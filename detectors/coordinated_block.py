"""Coordinated blocks: many numbers of one 100-number range (a SIM farm, a bought block of
virtual-operator numbers), each under the single-number thresholds but together dialling like
one bulk dialler. Members with at least member_min_calls calls in the peer window are
intercepted on the block's evidence."""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "coordinated_block"


@register(NAME, kind="block")
def coordinated_block(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy, snap.peers)
