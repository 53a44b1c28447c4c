"""The immutable view of one number's windows that every detector reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class WindowSnapshot:
    number: str  # normalised subject number
    number_class: str  # detectors.numbering.NumberClass value
    at_ms: int  # evaluation time: the number's newest start_time, epoch ms
    counts: Mapping[str, int]  # window name -> calls in that window at at_ms


@dataclass(frozen=True, slots=True)
class Finding:
    """What a detector saw: the level it reached and the counts that prove it."""

    detector: str
    severity: str
    action: str
    category: str
    evidence: Mapping[str, int]
    reasons: tuple[str, ...] = field(default=())
