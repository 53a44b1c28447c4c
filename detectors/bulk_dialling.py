"""Bulk dialling: call velocity at several time scales, read early from short windows.

A 250-calls-per-40-minutes dialler makes about 31 calls in 5 minutes, so a short window with a
proportional threshold (and a robocall-like answer rate) flags it within minutes, while the
40-minute and 24-hour thresholds catch slower and steadier dialling."""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "bulk_dialling"


@register(NAME, kind="number")
def bulk_dialling(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy)
