"""Contact circles: bounded, order-independent, idempotent keyed-hash sets (detectors.circles),
the in-memory store (streams.circles), and the evidence stage 2 derives from them."""

from __future__ import annotations

import random

from detectors.circles import (
    CAP,
    ENTRY,
    contact_hash,
    contacts_of_person_called,
    decode,
    encode,
    merge,
)
from streams.circles import Circles

KEY = b"test-key"


def test_hash_is_keyed_and_64_bits() -> None:
    h = contact_hash("13912345678", KEY)
    assert 0 <= h < 2**64
    assert h == contact_hash("13912345678", KEY)
    assert h != contact_hash("13912345678", b"other-key")
    assert ENTRY.size == 12


def test_merge_is_bounded_order_independent_and_idempotent() -> None:
    rng = random.Random(5)
    added = [(rng.getrandbits(64), rng.randrange(10**9)) for _ in range(100)]
    one = merge({}, added)
    shuffled = added[:]
    rng.shuffle(shuffled)
    two: dict[int, int] = {}
    for i in range(0, 100, 7):  # in pieces, another order
        two = merge(two, shuffled[i : i + 7])
    assert one == two
    assert len(one) == CAP
    assert set(one) == set(sorted(h for h, _ in added)[:CAP])
    assert merge(one, added) == one
    assert decode(encode(one)) == one
    assert len(encode(one)) == 12 * CAP


def test_contacts_of_person_called_leaves_out_the_two_ends() -> None:
    person, caller = 1, 2
    assert (
        contacts_of_person_called(person, caller, frozenset({2, 5, 6, 7}), frozenset({1, 5, 6, 9}))
        == 2
    )


async def test_store_notes_both_ends_per_day_and_reads_recent_days() -> None:
    circles = Circles(KEY, partitions=4, days=3)
    day = 20_000 * 86_400
    circles.note("13900000001", "13900000002", day + 10)
    circles.note("13900000001", "13900000003", day - 86_400)  # the day before
    circles.note("13900000001", "13900000004", day - 3 * 86_400)  # too old for 3 days
    await circles.flush()
    got = await circles.read(["13900000001", "13900000002"], day + 100)
    h = circles.hash_of
    assert got["13900000001"] == {h("13900000002"), h("13900000003")}
    assert got["13900000002"] == {h("13900000001")}
    assert circles.pending() == 0
