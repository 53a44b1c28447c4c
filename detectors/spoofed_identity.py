"""Spoofed caller identities: calls whose identity the network did not assert (attestation C,
or a domestic number arriving on an international trunk) are attributed to their ingress trunk,
never to the presented number, whose owner is usually innocent."""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "spoofed_identity"


@register(NAME, kind="trunk")
def spoofed_identity(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy)
