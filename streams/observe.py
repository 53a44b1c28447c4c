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
from collections.abc import Iterable
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

    def to_wire(self) -> list[object]:
        """The first eight fields; the source travels once per message."""
        return list(self[:8])

    @classmethod
    def from_wire(cls, item: object, source: int) -> Obs | Reject:
        """Decode one derived-stream item; dialwatch wrote it, but check it all the same."""
        if not isinstance(item, list) or len(item) != 8:
            return Reject("bad_type", "derived item is not an 8-field array")
        kind, subject, cdr_id, start, answered, duration, cause, other = item
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
        )
        if not ok:
            return Reject("bad_type", "derived item has a field of the wrong type")
        return cls(kind, subject, cdr_id, start, answered, duration, cause, other, source)


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


def _obs(kind: str, subject: str, cdr: CDR, other: str, source: int = -1) -> Obs:
    cause = -1 if cdr.release_cause is None else cdr.release_cause
    return Obs(
        kind, subject, cdr.cdr_id, cdr.start_ms, cdr.answered, cdr.duration_s, cause, other, source
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
) -> list[Obs]:
    """The callee, block and trunk observations of ``cdrs`` (read from stage-1 partition
    ``source``), in order."""
    out: list[Obs] = []
    for cdr in cdrs:
        if is_spoofed(cdr, international_trunks, plan):
            out.append(_obs("trunk", trunk_id(cdr.ingress_trunk), cdr, cdr.caller, source))
            # The presented number still tells repeats apart (a spoofed flood is still a flood),
            # but marked, so it can never become a member to intercept.
            out.append(_obs("callee", cdr.callee, cdr, UNASSERTED + cdr.caller, source))
            continue
        out.append(_obs("callee", cdr.callee, cdr, cdr.caller, source))
        if classify(cdr.caller, plan) in _BLOCK_CLASSES:
            out.append(_obs("block", cdr.caller[:-BLOCK_DIGITS], cdr, cdr.caller, source))
    return out
