"""Leak sources: which business a campaign's list most likely came from.

For each victim of a campaign (a subscriber its members dialled), look at the business numbers
the victim was in contact with, in either direction, in the ``days`` before the victim's first
call from the campaign. A business whose customers the list was taken from shows up in far more
victims' recent contacts than in the subscriber population's (the base rate, over the same
``days`` before the campaign's median first call); a popular business everyone calls shows up in
both alike. Per business::

    victim_share = k / n          k of the n victims contacted it in their windows
    base_share   = (b + 1) / (N + 2)   b of the N subscribers did, in the reference window
    lift         = victim_share / base_share
    p            = P(X >= k), X ~ Binomial(n, base_share)    (one-sided binomial tail)

A business is a candidate when the campaign has at least ``min_victims`` victims, at least
``min_shared`` of them contacted it, its lift is at least ``min_lift`` and its p-value, times the
number of businesses tested (Bonferroni), is at most ``max_p``. Candidates are ranked by p-value
(smallest first), then lift. Subscribers are only ever keyed hashes here.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

DAY_MS = 86_400_000


class ContactRecord(Protocol):
    """Which subscribers (keyed hashes) were in contact with one business number, and when."""

    def contacted(self, subscriber: int, since_ms: int, until_ms: int) -> bool: ...

    def distinct(self, since_ms: int, until_ms: int) -> int: ...


@dataclass(frozen=True, slots=True)
class ExactContacts:
    """A ContactRecord holding every contact time (the offline command's)."""

    times: Mapping[int, Sequence[int]]  # subscriber hash -> contact times, ascending

    def contacted(self, subscriber: int, since_ms: int, until_ms: int) -> bool:
        times = self.times.get(subscriber)
        if not times:
            return False

        i = bisect.bisect_left(times, since_ms)
        return i < len(times) and times[i] < until_ms

    def distinct(self, since_ms: int, until_ms: int) -> int:
        return sum(1 for s in self.times if self.contacted(s, since_ms, until_ms))


@dataclass(frozen=True, slots=True)
class LeakPolicy:
    days: int = 30
    min_victims: int = 20  # no candidate for a smaller campaign: nobody can be singled out
    min_shared: int = 5  # victims who contacted a business, at least
    min_lift: float = 2.0
    max_p: float = 1e-3  # after Bonferroni over the businesses tested


@dataclass(frozen=True, slots=True)
class Candidate:
    number: str
    victims_contacted: int
    victims: int
    victim_share: float
    base_contacted: int
    population: int
    base_share: float
    lift: float
    log10_p: float  # log10 of the one-sided binomial p-value, before Bonferroni
    p_value: float  # Bonferroni-adjusted, at most 1

    def as_dict(self) -> dict[str, object]:
        return {
            "number": self.number,
            "victims_contacted": self.victims_contacted,
            "victim_share": round(self.victim_share, 4),
            "base_contacted": self.base_contacted,
            "population": self.population,
            "base_share": round(self.base_share, 6),
            "lift": round(self.lift, 2),
            "log10_p": round(self.log10_p, 2),
            "p_value": float(f"{self.p_value:.3g}"),
        }


def log_binomial_sf(k: int, n: int, p: float) -> float:
    """Natural log of P(X >= k) for X ~ Binomial(n, p), 0 < p < 1, summed in log space."""
    if k <= 0:
        return 0.0
    if k > n:
        return -math.inf
    lp, lq = math.log(p), math.log1p(-p)
    lgn = math.lgamma(n + 1)
    terms = [
        lgn - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(0.0, top + math.log(sum(math.exp(t - top) for t in terms)))


def rank(
    victims: Mapping[int, int],
    businesses: Mapping[str, ContactRecord],
    population: int,
    policy: LeakPolicy,
) -> list[Candidate]:
    """Candidates for one campaign, best first. ``victims``: subscriber hash -> first call ms."""
    n = len(victims)
    if n < policy.min_victims or not businesses or population <= 0:
        return []
    window = policy.days * DAY_MS
    reference = int(statistics.median_low(sorted(victims.values())))
    tested = len(businesses)
    out = []
    for number in sorted(businesses):
        record = businesses[number]
        k = sum(1 for v, at in victims.items() if record.contacted(v, at - window, at))
        if k < policy.min_shared:
            continue
        b = record.distinct(reference - window, reference)
        base = (b + 1) / (population + 2)
        lift = (k / n) / base
        if lift < policy.min_lift:
            continue
        log10_p = log_binomial_sf(k, n, base) / math.log(10)
        adjusted = min(1.0, 10**log10_p * tested)
        if adjusted > policy.max_p:
            continue
        out.append(Candidate(number, k, n, k / n, b, population, base, lift, log10_p, adjusted))
    out.sort(key=lambda c: (c.log10_p, -c.lift, c.number))
    return out
