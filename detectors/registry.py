"""Detectors register here by name; the engine runs every registered detector in policy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from config.policy import DetectorPolicy
from detectors.snapshot import Finding, WindowSnapshot

DetectorFn = Callable[[WindowSnapshot, DetectorPolicy], Finding | None]


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    fn: DetectorFn
    # Monotone detectors fire only more readily as counts grow, so the engine may skip a number
    # whose counts cannot reach the lowest threshold even if every call in the batch counted.
    monotone: bool


DETECTORS: dict[str, Detector] = {}


def register(name: str, *, monotone: bool) -> Callable[[DetectorFn], DetectorFn]:
    def wrap(fn: DetectorFn) -> DetectorFn:
        if name in DETECTORS:
            raise ValueError(f"detector {name!r} registered twice")
        DETECTORS[name] = Detector(name, fn, monotone)
        return fn

    return wrap


def load_all() -> dict[str, Detector]:
    """Import every detector module so its ``@register`` runs."""
    from detectors import bulk_dialling  # noqa: F401

    return DETECTORS
