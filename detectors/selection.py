"""Which detectors run on a subject kind, the windows they read and their lowest thresholds.

The engine builds one :class:`KindPlan` per subject kind it watches when it starts. The lowest
thresholds gate the work: a subject whose calls cannot reach any of them is not evaluated (the
detectors are monotone in calls, detectors.registry); an episode already open at a detector's
top severity cannot be raised further, so that detector is skipped until it closes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from config.policy import DetectorPolicy, Policy
from detectors.registry import Detector
from detectors.windows import WindowSpec


class _Open(Protocol):
    """An open episode, as far as the plan reads it."""

    severity: str


@dataclass(frozen=True, slots=True)
class KindPlan:
    """What the engine needs per subject kind: its detectors, windows and lowest thresholds."""

    detectors: tuple[tuple[Detector, DetectorPolicy], ...]
    specs: tuple[WindowSpec, ...]
    peer_spec: WindowSpec | None
    pair_spec: WindowSpec | None  # counterparts' calls listed with their local hours
    min_short: float
    min_long: float
    always: bool  # a non-monotone detector: evaluate every record
    # detector -> its most severe level, for detectors without members: once an episode is
    # open at that severity, nothing more can be raised by it until the episode closes.
    top: dict[str, str]
    classes: dict[str, frozenset[str]]  # detector -> number classes it applies to (empty: all)
    needs: dict[str, frozenset[str]]  # detector -> window names its levels read

    def active(
        self, number_class: str, episodes: Mapping[str, _Open]
    ) -> list[tuple[Detector, DetectorPolicy]]:
        """The detectors that could still raise something for this subject."""
        out = []
        for detector, dp in self.detectors:
            classes = self.classes[detector.name]
            if classes and number_class not in classes:
                continue
            top = self.top.get(detector.name)
            ep = episodes.get(detector.name)
            if top is not None and ep is not None and ep.severity == top:
                continue
            out.append((detector, dp))
        return out


def kind_plan(
    kind: str, policy: Policy, registry: Mapping[str, Detector], specs: Mapping[str, WindowSpec]
) -> KindPlan:
    """The plan for subjects of ``kind``: the policy's detectors that read that kind."""
    detectors = tuple(
        (registry[name], dp) for name, dp in policy.detectors.items() if registry[name].kind == kind
    )
    names = {w for _, dp in detectors for lv in dp.levels for w in lv.thresholds}
    names |= {w for d, _ in detectors for w in d.reads if w in specs}
    peer = policy.features.peer_windows.get(kind)
    if peer is not None:
        names.add(peer)
    pair = policy.features.pair_windows.get(kind)
    if pair is not None:
        names.add(pair)
    low = {False: float("inf"), True: float("inf")}
    for _, dp in detectors:
        for level in dp.levels:
            for window, limit in level.thresholds.items():
                is_long = specs[window].long
                low[is_long] = min(low[is_long], limit)
    return KindPlan(
        detectors=detectors,
        specs=tuple(s for n, s in specs.items() if n in names),
        peer_spec=specs[peer] if peer is not None else None,
        pair_spec=specs[pair] if pair is not None else None,
        min_short=low[False],
        min_long=low[True],
        always=any(not d.monotone for d, _ in detectors),
        top={
            d.name: dp.levels[0].severity
            for d, dp in detectors
            if dp.levels and "member_min_calls" not in dp.params
        },
        classes={
            d.name: frozenset()
            if any(not lv.classes for lv in dp.levels)
            else frozenset(c for lv in dp.levels for c in lv.classes)
            for d, dp in detectors
        },
        needs={
            d.name: frozenset(w for lv in dp.levels for w in lv.thresholds) for d, dp in detectors
        },
    )
