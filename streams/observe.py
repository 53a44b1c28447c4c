"""Observations: what one CDR tells each subject the detectors watch.

A CDR is an observation of its caller (subject kind "number"). It is also an observation of
its callee (kind "callee", for call bombing), of the caller's 100-number block (kind "block",
mobile and virtual-operator callers only) and, when the network did not assert the caller's
identity, of its ingress trunk (kind "trunk") INSTEAD of the caller: the presented number of a
spoofed call is usually an innocent subscriber's.

The caller observation is handled by the partition the CDR arrived on (the input is keyed by
caller); the others are re-keyed by their subject (README "Derived stream").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from config.numbering import NumberClass, NumberingPlan, classify
from streams.cdr import CDR, Reject

UNASSERTED = "~"  # marks a counterpart whose identity the network did not assert
BLOCK_DIGITS = 2  # a block is the numbers sharing all but their last two digits
_BLOCK_CLASSES = frozenset({NumberClass.MOBILE, NumberClass.MVNO})
_DOMESTIC = frozenset(
    {
        NumberClass.MOBILE,
        NumberClass.MVNO,
        NumberClass.FIXED,
        NumberClass.LOCAL,
        NumberClass.SERVICE,
        NumberClass.CALL_CENTRE,
    }
)
_SAFE_TRUNK = re.compile(r"[A-Za-z0-9._-]{1,40}")


class Obs(NamedTuple):
    kind: str  # detectors.snapshot.KINDS
    subject: str  # number, block prefix or trunk id: validated, bounded (safe in a key name)
    cdr_id: str
    start_ms: int
    answered: bool
    duration_s: int
    cause: int  # Q.850 release cause, -1 when absent
    other: str  # the counterpart: callee of a caller, caller of a callee or block, "" if none
    source: int = -1  # the stage-1 partition it came from (derived observations), else -1
    # Stage 1's front when the CDR was read: the newest start_time that had arrived on its
    # partition before it (0: none, or not known). A late CDR takes its place in stage 2's
    # canonical order there, not at its start time (docs/ordering.md, "Late records").
    after_ms: int = 0

    @property
    def order_ms(self) -> int:
        """Where stage 2's canonical order places it (streams.reorder.order_key)."""
        return max(self.start_ms, self.after_ms)

    def to_wire(self) -> list[object]:
        """The first eight fields, and ``after_ms`` when it is past the start (a late CDR); the
        source travels once per message."""
        head = list(self[:8])
        return [*head, self.after_ms] if self.after_ms > self.start_ms else head

    @classmethod
    def from_wire(cls, item: object, source: int) -> Obs | Reject:
        """Decode one derived-stream item; dialwatch wrote it, but check it all the same."""
        if not isinstance(item, list) or len(item) not in (8, 9):
            return Reject("bad_type", "derived item is not an 8- or 9-field array")
        kind, subject, cdr_id, start, answered, duration, cause, other = item[:8]
        after = item[8] if len(item) == 9 else 0
        ok = (
            kind in ("callee", "block", "trunk")
            and isinstance(subject, str)
            and _SAFE_TRUNK.fullmatch(subject) is not None
            and isinstance(cdr_id, str)
            and 0 < len(cdr_id) <= 128
            and type(start) is int
            and isinstance(answered, bool)
            and type(duration) is int
            and type(cause) is int
            and isinstance(other, str)
            and len(other) <= 24
            and type(after) is int
            and after >= 0
        )
        if not ok:
            return Reject("bad_type", "derived item has a field of the wrong type")
        return cls(kind, subject, cdr_id, start, answered, duration, cause, other, source, after)


def trunk_id(raw: str | None) -> str:
    """A trunk name safe for keys and labels: kept when short and plain, else hashed."""
    if not raw:
        return "unknown"
    if _SAFE_TRUNK.fullmatch(raw):
        return raw
    return "h-" + hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


def is_spoofed(cdr: CDR, international_trunks: tuple[str, ...], plan: NumberingPlan) -> bool:
    """The network did not assert the caller's identity: attestation C, or a domestic number
    presented on an international ingress trunk."""
    if cdr.attestation is not None and cdr.attestation.strip().upper() == "C":
        return True
    trunk = cdr.ingress_trunk
    return (
        trunk is not None
        and trunk.startswith(international_trunks)
        and classify(cdr.caller, plan) in _DOMESTIC
    )


def _obs(kind: str, subject: str, cdr: CDR, other: str, source: int = -1, after: int = 0) -> Obs:
    cause = -1 if cdr.release_cause is None else cdr.release_cause
    return Obs(
        kind,
        subject,
        cdr.cdr_id,
        cdr.start_ms,
        cdr.answered,
        cdr.duration_s,
        cause,
        other,
        source,
        after if after > cdr.start_ms else 0,
    )


def caller_obs(cdr: CDR, international_trunks: tuple[str, ...], plan: NumberingPlan) -> Obs | None:
    """The caller-side observation, or None when the identity is not asserted."""
    if is_spoofed(cdr, international_trunks, plan):
        return None
    return _obs("number", cdr.caller, cdr, cdr.callee)


def derived_obs(
    cdrs: Iterable[CDR],
    international_trunks: tuple[str, ...],
    source: int,
    plan: NumberingPlan,
    fronts: Sequence[int] = (),
) -> list[Obs]:
    """The callee, block and trunk observations of ``cdrs`` (read from stage-1 partition
    ``source``), in order. ``fronts``: stage 1's front before each CDR (``Outcome.fronts``,
    ``Obs.after_ms``); none given, each is placed at its start time."""
    out: list[Obs] = []
    for i, cdr in enumerate(cdrs):
        after = fronts[i] if i < len(fronts) else 0
        if is_spoofed(cdr, international_trunks, plan):
            out.append(_obs("trunk", trunk_id(cdr.ingress_trunk), cdr, cdr.caller, source, after))
            # The presented number still tells repeats apart (a spoofed flood is still a flood),
            # but marked, so it can never become a member to intercept.
            out.append(_obs("callee", cdr.callee, cdr, UNASSERTED + cdr.caller, source, after))
            continue
        out.append(_obs("callee", cdr.callee, cdr, cdr.caller, source, after))
        if classify(cdr.caller, plan) in _BLOCK_CLASSES:
            out.append(_obs("block", cdr.caller[:-BLOCK_DIGITS], cdr, cdr.caller, source, after))
    return out
