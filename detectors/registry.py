"""Detectors register here by name; the engine runs every registered detector in policy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from config.policy import DetectorPolicy
from detectors.snapshot import KINDS, Finding, WindowSnapshot

DetectorFn = Callable[[WindowSnapshot, DetectorPolicy], Finding | None]


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    fn: DetectorFn
    kind: str  # the subject kind whose snapshots it reads (detectors.snapshot.KINDS)
    # Monotone detectors fire only when some window's calls reach a threshold, so the engine
    # may skip a subject whose calls cannot reach the lowest threshold even if all counted.
    monotone: bool


DETECTORS: dict[str, Detector] = {}


def register(name: str, *, kind: str, monotone: bool = True) -> Callable[[DetectorFn], DetectorFn]:
    if kind not in KINDS:
        raise ValueError(f"detector {name!r}: unknown subject kind {kind!r}")

    def wrap(fn: DetectorFn) -> DetectorFn:
        if name in DETECTORS:
            raise ValueError(f"detector {name!r} registered twice")
        DETECTORS[name] = Detector(name, fn, kind, monotone)
        return fn

    return wrap


def load_all() -> dict[str, Detector]:
    """Import every detector module so its ``@register`` runs."""
    from detectors import (  # noqa: F401
        bulk_dialling,
        call_bombing,
        coordinated_block,
        one_ring,
        quota_dialling,
        robocall,
        sequential_dialling,
        spoofed_identity,
    )

    return DETECTORS
