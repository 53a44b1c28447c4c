"""When stage 1 tells stage 2 that a caller partition is idle (docs/ordering.md "Idle sources").

An idle source stops holding back stage 2's canonical release, so telling it idle too early
lets a later input be placed before what was released: alert ids then depend on timing. A
partition whose stored offset has stayed at the end of its log is told idle after
``progress_idle_s`` while another partition of the worker is still receiving input (the quiet
one is merely idle: others go on); when no partition of the worker receives input (the input
stopped, or paused for all: a producer's pause, a broker frozen), only after
``progress_stopped_s``. Pure: the heartbeat (streams.agents.tell_idle) measures, this decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


def idle_due(quiet: Mapping[int, float], idle_s: float, stopped_s: float) -> frozenset[int]:
    """The partitions to tell idle. ``quiet``: each partition seen this round -> seconds its
    stored offset has stayed at the end of its log, 0 when it is receiving input (input left
    to read, or its offset moved since the last round)."""
    receiving = any(q <= 0 for q in quiet.values())
    wait = idle_s if receiving else stopped_s
    return frozenset(p for p, q in quiet.items() if q > 0 and q >= wait)


@dataclass
class Idle:
    """What the idle heartbeat remembers between rounds (cleared on a rebalance, and on a
    round the broker or the store did not answer: nothing is known of that time)."""

    # partition -> (offset seen at the end, since when: time.monotonic())
    caught: dict[int, tuple[int, float]] = field(default_factory=dict)
    told: dict[int, tuple[int, int]] = field(default_factory=dict)  # -> (offset, front) told

    def clear(self) -> None:
        self.caught.clear()
        self.told.clear()
