"""Detectors register here by name, with the subject kind they read and the conditions their
policy levels may use; :func:`check_policy` holds a loaded policy to that vocabulary.

This module imports no detector (``detectors.catalogue`` does), so a detector may import it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from config.policy import DetectorPolicy, Policy
from detectors.levels import Conditions
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
    conditions: Conditions  # condition name -> predicate, the names its levels may use
    # Windows it reads besides its levels' thresholds (when the policy defines them), only to
    # confirm a finding: the engine computes them, and calls it again, once it has one.
    reads: tuple[str, ...] = ()


DETECTORS: dict[str, Detector] = {}


def register(
    name: str,
    *,
    kind: str,
    conditions: Conditions = MappingProxyType({}),
    monotone: bool = True,
    reads: tuple[str, ...] = (),
) -> Callable[[DetectorFn], DetectorFn]:
    if kind not in KINDS:
        raise ValueError(f"detector {name!r}: unknown subject kind {kind!r}")

    def wrap(fn: DetectorFn) -> DetectorFn:
        if name in DETECTORS:
            raise ValueError(f"detector {name!r} registered twice")
        DETECTORS[name] = Detector(
            name, fn, kind, monotone, MappingProxyType(dict(conditions)), reads
        )
        return fn

    return wrap


def check_policy(policy: Policy, detectors: Mapping[str, Detector]) -> None:
    """Refuse a policy that names a detector not registered, or gives a level a condition its
    detector does not know, naming the policy's file and the field."""
    unknown = sorted(set(policy.detectors) - set(detectors))
    if unknown:
        raise ValueError(
            f"{policy.source}: unknown detector(s) {unknown}; known: {tuple(sorted(detectors))}"
        )
    for name, dp in policy.detectors.items():
        known = detectors[name].conditions
        for level in dp.levels:
            for cond in level.conditions:
                if cond not in known:
                    raise ValueError(
                        f"{policy.source}: {name}: unknown condition {cond!r}; "
                        f"known: {tuple(known)}"
                    )
