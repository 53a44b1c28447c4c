"""Daily Bloom-filter contact records against the exact ones they stand in for."""

from __future__ import annotations

import random

import pytest

from detectors.contact_bloom import BITS, BloomContacts, day_of, positions
from detectors.leak_sources import DAY_MS, ExactContacts, LeakPolicy, rank


def bloom(contacts: dict[int, list[int]]) -> BloomContacts:
    """Build the filters the way Redis SETBIT would lay them out."""
    days: dict[int, bytearray] = {}
    for subscriber, times in contacts.items():
        for at in times:
            bitmap = days.setdefault(day_of(at), bytearray(BITS // 8))
            for p in positions(subscriber):
                bitmap[p >> 3] |= 0x80 >> (p & 7)
    return BloomContacts({d: bytes(b) for d, b in days.items()})


RNG = random.Random(5)
SUBSCRIBERS = [RNG.getrandbits(64) for _ in range(3000)]
CONTACTS = {s: [10 * DAY_MS + RNG.randrange(5 * DAY_MS)] for s in SUBSCRIBERS[:1000]}


@pytest.mark.parametrize(
    ("subscriber", "since", "until", "expected"),
    [
        (SUBSCRIBERS[0], 0, 30 * DAY_MS, True),  # a customer, whole span
        (SUBSCRIBERS[0], 0, 10 * DAY_MS, False),  # before its contact
        (SUBSCRIBERS[0], 16 * DAY_MS, 30 * DAY_MS, False),  # after it
    ],
)
def test_contacted_in_a_window(subscriber: int, since: int, until: int, expected: bool) -> None:
    assert bloom(CONTACTS).contacted(subscriber, since, until) is expected


def test_false_positives_are_rare_and_counts_close() -> None:
    record = bloom(CONTACTS)
    false = sum(record.contacted(s, 0, 30 * DAY_MS) for s in SUBSCRIBERS[1000:])
    assert false <= 0.02 * 2000
    assert record.distinct(0, 30 * DAY_MS) == pytest.approx(1000, rel=0.05)
    assert record.distinct(20 * DAY_MS, 30 * DAY_MS) == 0


def test_ranking_over_filters_agrees_with_exact_records() -> None:
    victims = {s: 20 * DAY_MS for s in SUBSCRIBERS[500:700]}  # 100 of 200 were customers
    exact = rank(victims, {"95001": ExactContacts(CONTACTS)}, 3000, LeakPolicy())
    approx = rank(victims, {"95001": bloom(CONTACTS)}, 3000, LeakPolicy())
    assert [c.number for c in approx] == [c.number for c in exact] == ["95001"]
    assert approx[0].victims_contacted == pytest.approx(exact[0].victims_contacted, abs=5)
