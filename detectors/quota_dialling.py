"""The new hire's quota: about 300 calls a day with the robocall profile, spread thinly enough to
stay under any hourly threshold. Read over the 24-hour window."""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "quota_dialling"


@register(NAME, kind="number")
def quota_dialling(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy)
