"""Contact circles: the numbers a subscriber called or was called by over the last days, as
keyed 64-bit hashes, for debt-collection evidence (issue 19).

The pattern: an illegal debt collector rings one debtor again and again and, between those
calls, rings the debtor's family and friends to shame and pressure. The operator sees who calls
whom, so a caller that rings a person repeatedly and also rings numbers of that person's own
circle is working the person's contact list. ``contacts_of_person_called`` counts, for a
collector and a person, how many of the collector's other callees (its own circle, less the
person) are in the person's circle.

A circle is kept per subscriber and UTC day and is bounded: at most ``CAP`` (32) contacts, the
32 smallest hashes of everything added that day (a bottom-k sample). Adding is a set union, so
the circle is the same whatever order its contacts were added in, and adding one twice changes
nothing (a replayed batch). Each contact is 12 bytes: its 64-bit hash and the newest second it
was seen (32 bits). Only keyed hashes are kept (``contact_hash``, BLAKE2b under the pseudonym
key), never numbers. Everything here is pure: the store is streams.circles.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping, Sequence

CAP = 32  # contacts kept per subscriber and day
ENTRY = struct.Struct(">QI")  # hash, newest epoch second: 12 bytes, sorted by hash
DAY_S = 86_400


def contact_hash(number: str, key: bytes) -> int:
    """The keyed 64-bit hash naming a number in circles."""
    return int.from_bytes(
        hashlib.blake2b(number.encode(), digest_size=8, key=key[:64], person=b"dw-circle").digest()
    )


def day_of(t_s: int) -> int:
    return t_s // DAY_S


def decode(blob: bytes | None) -> dict[int, int]:
    """A stored circle: hash -> newest second."""
    if not blob:
        return {}
    return {h: t for h, t in ENTRY.iter_unpack(blob[: len(blob) // ENTRY.size * ENTRY.size])}


def encode(circle: Mapping[int, int]) -> bytes:
    return b"".join(ENTRY.pack(h, circle[h]) for h in sorted(circle))


def merge(
    circle: Mapping[int, int], added: Iterable[tuple[int, int]], cap: int = CAP
) -> dict[int, int]:
    """The union of ``circle`` and ``added`` (hash, second) pairs, newest second per hash, cut
    to the ``cap`` smallest hashes."""
    out = dict(circle)
    for h, t in added:
        if out.get(h, -1) < t:
            out[h] = t
    if len(out) > cap:
        out = {h: out[h] for h in sorted(out)[:cap]}
    return out


def union(days: Sequence[Mapping[int, int]]) -> frozenset[int]:
    """The contacts of several days' circles."""
    return frozenset(h for day in days for h in day)


def contacts_of_person_called(
    person: int, caller: int, person_circle: frozenset[int], caller_circle: frozenset[int]
) -> int:
    """How many of the caller's other callees (its circle, less the person and itself) are in
    the person's circle."""
    return len((caller_circle & person_circle) - {person, caller})
