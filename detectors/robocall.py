"""Robocall profile: a steady stream of calls to almost always different numbers, mostly
unanswered, the answered ones very short. Velocity alone cannot tell a dialler from a busy
switchboard; answer rate, call length and callee diversity can."""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "robocall"


@register(NAME, kind="number")
def robocall(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy)
