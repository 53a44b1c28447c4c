"""Bulk dialling: too many call attempts from one number in any configured window."""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "bulk_dialling"


@register(NAME, monotone=True)
def bulk_dialling(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    for level in policy.levels:  # most severe first
        reasons = tuple(
            f"{snap.counts[window]} calls in {window} >= {limit}"
            for window, limit in level.thresholds.items()
            if snap.counts.get(window, 0) >= limit
        )
        if reasons:
            evidence = {f"calls_{w}": snap.counts.get(w, 0) for w in level.thresholds}
            return Finding(NAME, level.severity, level.action, policy.category, evidence, reasons)
    return None
