"""Spoofed caller identities, attributed to their ingress trunk.

What it recognises: traffic whose caller identity the network did not assert: STIR/SHAKEN
attestation C, or a domestic number arriving on an international ingress trunk. Such calls are
counted for their ingress trunk, never for the presented number, whose owner is usually
innocent, whatever they look like (many presented numbers, or a spoofed flood of one
callee): 20 in 10 minutes by default. The action asks the switch to reject unasserted calls
from that trunk. No condition: the lack of attestation is the evidence.

Thresholds and levels: ``[detectors.spoofed_identity]`` in config/default_policy.toml. Reasons
written: the threshold reached (``"20 calls in 10m >= 20"``).
"""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import Conditions, match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "spoofed_identity"

CONDITIONS: Conditions = {}


@register(NAME, kind="trunk", conditions=CONDITIONS)
def spoofed_identity(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy, CONDITIONS)
