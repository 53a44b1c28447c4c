"""Every detector module, imported so its ``@register`` runs: the one module that knows them all
(the detectors import ``detectors.registry``, never this module or each other)."""

from __future__ import annotations

from detectors import (
    bulk_dialling,
    call_bombing,
    coordinated_block,
    debt_collection,
    one_ring,
    quota_dialling,
    robocall,
    sequential_dialling,
    spoofed_identity,
)
from detectors.registry import DETECTORS, Detector

MODULES = (
    bulk_dialling,
    call_bombing,
    coordinated_block,
    debt_collection,
    one_ring,
    quota_dialling,
    robocall,
    sequential_dialling,
    spoofed_identity,
)


def load_all() -> dict[str, Detector]:
    """The registered detectors by name (all of them, once this module is imported)."""
    return DETECTORS
