"""Sequential dialling: callees that step through a numbering block (n, n+1, n+2, or a fixed
small stride), the mark of a dialler working through a range rather than a list.

What it recognises: a dialler fed a number range instead of a customer list. A call counts as
sequential when its callee has as many digits as the previous callee and lies at most
``features.max_stride`` (100) away from it (detectors.features). Random dialling in a space of
hundreds of millions of numbers almost never lands within 100 of the previous callee, so a few
such steps within minutes are strong evidence even at a low call count: the default policy
intercepts 3 sequential calls among 4 in ten minutes.

Thresholds and levels: ``[detectors.sequential_dialling]`` in config/default_policy.toml.
Reasons written: the threshold reached (``"4 calls in 10m >= 4"``), then each condition that
held (``"min_sequential 3 holds in 10m"``).
"""

from __future__ import annotations

from config.policy import DetectorPolicy
from detectors.levels import Conditions, match
from detectors.registry import register
from detectors.snapshot import Finding, WindowSnapshot

NAME = "sequential_dialling"

CONDITIONS: Conditions = {
    # Calls a small step from the previous callee: at least this many in the window.
    "min_sequential": lambda value, tally, _: tally.sequential >= value,
}


@register(NAME, kind="number", conditions=CONDITIONS)
def sequential_dialling(snap: WindowSnapshot, policy: DetectorPolicy) -> Finding | None:
    return match(NAME, snap, policy, CONDITIONS)
