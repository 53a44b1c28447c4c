"""The immutable view of one subject's windows that every detector reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Per-bucket feature vector, in this order (streams.state.base stores it trailing-zero trimmed).
FEATURES = ("calls", "answered", "short", "unallocated", "repeats", "sequential")
N_FEATURES = len(FEATURES)

# What a subject is: a calling number, a called number (a possible bombing victim), a
# 100-number block of callers, or an ingress trunk (for traffic with an unasserted identity).
KINDS = ("number", "callee", "block", "trunk")


@dataclass(frozen=True, slots=True)
class Tally:
    """Call attempts in one window and what they looked like."""

    calls: int = 0
    answered: int = 0
    short: int = 0  # answered and at most the policy's short_call_s long
    unallocated: int = 0  # released with Q.850 cause 1
    repeats: int = 0  # to a counterpart among the subject's last few counterparts
    sequential: int = 0  # counterpart a small step away from the previous one

    @property
    def distinct(self) -> int:
        """Calls to a counterpart not among the recent ones: a bounded distinct estimate."""
        return self.calls - self.repeats

    def share(self, feature: str) -> float:
        if feature == "distinct":
            return self.distinct / self.calls if self.calls else 0.0
        if feature == "short":  # of the answered calls: a robocall's answered calls are short
            return self.short / self.answered if self.answered else 0.0
        value: int = getattr(self, feature)
        return value / self.calls if self.calls else 0.0

    @classmethod
    def of(cls, vector: list[int] | tuple[int, ...]) -> Tally:
        return cls(*vector[:N_FEATURES])


EMPTY: Mapping[str, int] = MappingProxyType({})
EMPTY_PAIRS: Mapping[str, tuple[tuple[int, int], ...]] = MappingProxyType({})
EMPTY_REPORTED: Mapping[str, tuple[int, float]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class WindowSnapshot:
    subject: str  # normalised number, block prefix or trunk id
    kind: str  # one of KINDS
    number_class: str  # config.numbering.NumberClass value ("trunk" for trunks)
    at_ms: int  # evaluation time: the subject's newest start_time, epoch ms
    windows: Mapping[str, Tally]  # window name -> tally at at_ms
    # Counterparts (callers of a callee, members of a block) -> calls within the peer window.
    peers: Mapping[str, int] = field(default_factory=lambda: EMPTY)
    factor: float = 1.0  # the policy's threshold factor for number_class
    # Counterparts -> (epoch s, local hour 0-23 in DIALWATCH_TIMEZONE) of each of their calls
    # within the pair window (features.pair_windows), oldest first.
    pairs: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=lambda: EMPTY_PAIRS)
    # Counterparts with an active complaint report that applies here -> (the report count, the
    # factor their member thresholds are multiplied by): stage 2 reads the stage-1 complaint
    # store for the callers it may name (debt collection).
    reported: Mapping[str, tuple[int, float]] = field(default_factory=lambda: EMPTY_REPORTED)
    # Counterparts -> how many of their other callees are in the subject's contact circle
    # (detectors.circles), for the callers the engine looked up.
    circle_hits: Mapping[str, int] = field(default_factory=lambda: EMPTY)

    @property
    def number(self) -> str:
        return self.subject

    @property
    def counts(self) -> Mapping[str, int]:
        return {name: t.calls for name, t in self.windows.items()}


@dataclass(frozen=True, slots=True)
class Finding:
    """What a detector saw: the level it reached and the counts that prove it."""

    detector: str
    severity: str
    action: str
    category: str
    evidence: Mapping[str, int | float]
    reasons: tuple[str, ...] = field(default=())
    # Counterparts to act on with member_action (the callers of a bombed number, a block's
    # active members). Each gets its own alert with subject "number".
    members: tuple[str, ...] = field(default=())
    member_action: str = "intercept"
    # member -> the calls its own alert cites (default: its calls in the peer window)
    member_calls: Mapping[str, int] = field(default_factory=lambda: EMPTY)
