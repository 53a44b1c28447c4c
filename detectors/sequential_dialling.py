"""Sequential dialling: callees that step through a numbering block (n, n+1, n+2, or a fixed
small stride), the mark of a dialler working through a range rather than a list."""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "sequential_dialling"


@register(NAME, kind="number")
def sequential_dialling(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy)
