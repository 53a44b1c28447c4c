"""The multi-day leak scenario: businesses, their customers, and campaigns dialling leaked lists.

Profile FROZEN (docs/campaigns.md, "The leak scenario"): fixed before the campaign grouping and the
leak ranking were tuned; the tuning seeds are listed there. Do not change a profile to make the
ranking look better.

Every part draws from its own ``random.Random`` stream seeded from the spec, so one spec always
yields the same records and truth.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from streams.tools.simulate import (
    BUSY,
    NO_ANSWER,
    NO_USER_RESPONDING,
    NORMAL_CLEARING,
    REJECTED,
    UNALLOCATED,
)

BUSINESS: Final = "business"
POPULAR: Final = "popular_business"
LEAKING: Final = "leaking_business"
MEMBER: Final = "campaign_member"
LONE: Final = "lone_dialler"

_DAY_S: Final = 86400
_WAKING: Final = (8 * 3600, 21 * 3600)  # local seconds of the day in which people call
_MOBILE: Final = (*(f"13{d}" for d in range(10)), "150", "151", "152", "158", "159", "186", "188")
_DIALLER_CAUSES: Final = (
    NORMAL_CLEARING,
    NO_ANSWER,
    NO_USER_RESPONDING,
    BUSY,
    REJECTED,
    UNALLOCATED,
)
_DIALLER_CUM: Final = (0.30, 0.62, 0.80, 0.92, 0.97, 1.0)

# (offset s from the start, tie-breaker, caller, callee, cause, duration)
_Call = tuple[int, int, str, str, int, int]


@dataclass(frozen=True, slots=True)
class LeakSpec:
    start: datetime  # local midnight of the first day, timezone-aware
    seed: int = 1
    days: int = 14
    subscribers: int = 6000
    calls_per_day: float = 3.0  # ordinary calls per subscriber and day (family, friends, others)
    businesses: int = 30  # ordinary businesses (the leaking ones are drawn from these)
    popular: int = 4  # businesses a large share of all subscribers contacts (the confounders)
    leaks: int = 3  # businesses whose customer list leaks to a campaign
    random_campaigns: int = 1  # campaigns working a list of random subscribers (no leak)
    lone_diallers: int = 4  # single numbers dialling many subscribers, no campaign

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")
        if self.days < 6:
            raise ValueError("days must be at least 6 (a leak, then days of dialling)")
        if self.subscribers < 500:
            raise ValueError("subscribers must be at least 500")
        if self.leaks > self.businesses:
            raise ValueError("leaks must not exceed businesses")
        for name in ("businesses", "popular", "leaks", "random_campaigns", "lone_diallers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


@dataclass(frozen=True, slots=True)
class Campaign:
    members: tuple[str, ...]
    source: str | None  # the leaking business, None for a random list
    block: str  # the numbering block most members come from (first 9 digits)
    listed_at_s: int  # the leak: the list holds customers who contacted the source before it
    first_call_s: int


@dataclass(frozen=True, slots=True)
class LeakScenario:
    records: list[dict[str, object]]
    businesses: tuple[str, ...]  # ordinary, including the leaking ones
    popular: tuple[str, ...]
    campaigns: tuple[Campaign, ...]
    lone_diallers: tuple[str, ...]
    subscribers: tuple[str, ...] = field(repr=False)

    def labels(self) -> list[tuple[str, str]]:
        """(number, role); a campaign member's role is ``campaign_member:<index>``."""
        leaking = {c.source for c in self.campaigns if c.source}
        out = [(b, LEAKING if b in leaking else BUSINESS) for b in self.businesses]
        out += [(b, POPULAR) for b in self.popular]
        for i, campaign in enumerate(self.campaigns):
            out += [(m, f"{MEMBER}:{i}") for m in campaign.members]
        out += [(n, LONE) for n in self.lone_diallers]
        return out


def _rng(seed: int, stream: str) -> random.Random:
    return random.Random(f"dialwatch.leaks/{seed}/{stream}")


class _Numbers:
    """Numbers handed out once each, so that no number has two roles."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def draw(self, make: Callable[[], str]) -> str:
        while True:
            number = make()
            if number not in self.taken:
                self.taken.add(number)
                return number


def _mobile(rng: random.Random) -> str:
    return f"{rng.choice(_MOBILE)}{rng.randrange(100_000_000):08d}"


def _business_number(rng: random.Random, i: int) -> str:
    kind = i % 3
    if kind == 0:
        return f"95{rng.randrange(1000):03d}"  # 95xxx service number
    if kind == 1:
        return f"400{rng.randrange(10_000_000):07d}"
    return f"{rng.choice(('10', '21', '20'))}{rng.randrange(10_000_000, 100_000_000)}"


def _waking_time(rng: random.Random, day: int) -> int:
    return day * _DAY_S + rng.randrange(*_WAKING)


def _answered_call(rng: random.Random, caller: str, callee: str, at: int) -> _Call:
    if rng.random() < 0.85:
        duration = min(1200, max(15, round(rng.lognormvariate(4.6, 0.8))))
        return (at, rng.randrange(1 << 30), caller, callee, NORMAL_CLEARING, duration)
    return (at, rng.randrange(1 << 30), caller, callee, rng.choice((NO_ANSWER, BUSY)), 0)


def _dialler_call(rng: random.Random, caller: str, callee: str, at: int) -> _Call:
    cause = rng.choices(_DIALLER_CAUSES, cum_weights=_DIALLER_CUM)[0]
    duration = round(rng.triangular(2, 60, 8)) if cause == NORMAL_CLEARING else 0
    return (at, rng.randrange(1 << 30), caller, callee, cause, duration)


def generate_leaks(spec: LeakSpec) -> LeakScenario:
    numbers = _Numbers()
    calls: list[_Call] = []
    rng = _rng(spec.seed, "subscribers")
    subscribers = [numbers.draw(lambda: _mobile(rng)) for _ in range(spec.subscribers)]
    _ordinary_traffic(rng, spec, subscribers, calls)

    rng = _rng(spec.seed, "businesses")
    ordinary = [
        numbers.draw(lambda i=i: _business_number(rng, i))  # type: ignore[misc]
        for i in range(spec.businesses)
    ]
    popular = [
        numbers.draw(lambda i=i: _business_number(rng, i))  # type: ignore[misc]
        for i in range(spec.popular)
    ]
    leaking = set(rng.sample(ordinary, spec.leaks))
    first_contact: dict[str, dict[str, int]] = {}
    for business in [*ordinary, *popular]:
        if business in popular:
            share = rng.uniform(0.25, 0.40)
        elif business in leaking:
            share = rng.uniform(0.04, 0.08)
        else:
            share = rng.uniform(0.01, 0.06)
        customers = rng.sample(subscribers, max(1, round(share * len(subscribers))))
        first_contact[business] = _customer_contacts(rng, spec, business, customers, calls)

    campaigns: list[Campaign] = []
    rng = _rng(spec.seed, "leaks")
    for business in (b for b in ordinary if b in leaking):
        leak_day = rng.randint(3, max(3, spec.days // 2))
        listed = sorted(s for s, at in first_contact[business].items() if at < leak_day * _DAY_S)
        victims = rng.sample(listed, round(0.8 * len(listed)))
        # Lists are sold merged: a quarter of the entries come from elsewhere.
        victims += rng.sample(subscribers, round(0.25 * len(victims)))
        campaigns.append(
            _campaign(rng, spec, numbers, sorted(set(victims)), business, leak_day, calls)
        )
    rng = _rng(spec.seed, "random-campaigns")
    for _ in range(spec.random_campaigns):
        victims = sorted(rng.sample(subscribers, rng.randint(150, 250)))
        leak_day = rng.randint(2, spec.days // 2)
        campaigns.append(_campaign(rng, spec, numbers, victims, None, leak_day, calls))

    rng = _rng(spec.seed, "lone")
    lone: list[str] = []
    for _ in range(spec.lone_diallers):
        number = numbers.draw(lambda: _mobile(rng))
        lone.append(number)
        day = rng.randrange(1, spec.days - 1)
        for callee in rng.sample(subscribers, rng.randint(150, 300)):
            calls.append(_dialler_call(rng, number, callee, _waking_time(rng, day)))

    return LeakScenario(
        records=_records(spec, calls),
        businesses=tuple(ordinary),
        popular=tuple(popular),
        campaigns=tuple(campaigns),
        lone_diallers=tuple(lone),
        subscribers=tuple(subscribers),
    )


def _ordinary_traffic(
    rng: random.Random, spec: LeakSpec, subscribers: list[str], calls: list[_Call]
) -> None:
    """Family and friends (half of them other subscribers) and the occasional other number."""
    for number in subscribers:
        contacts = [
            rng.choice(subscribers) if rng.random() < 0.5 else _mobile(rng)
            for _ in range(rng.randint(2, 6))
        ]
        activity = rng.lognormvariate(-0.18, 0.6)
        for day in range(spec.days):
            mean = spec.calls_per_day * activity
            for _ in range(_poisson(rng, mean)):
                callee = rng.choice(contacts) if rng.random() < 0.7 else _mobile(rng)
                if callee != number:
                    calls.append(_answered_call(rng, number, callee, _waking_time(rng, day)))


def _customer_contacts(
    rng: random.Random, spec: LeakSpec, business: str, customers: list[str], calls: list[_Call]
) -> dict[str, int]:
    """Each customer contacts the business 1-3 times over the period; a fifth of the contacts
    are the business calling the customer (confirmations, deliveries). Returns the first
    contact's offset per customer."""
    first: dict[str, int] = {}
    for customer in customers:
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            at = _waking_time(rng, rng.randrange(spec.days))
            if rng.random() < 0.2:
                calls.append(_answered_call(rng, business, customer, at))
            else:
                calls.append(_answered_call(rng, customer, business, at))
            first[customer] = min(at, first.get(customer, at))
    return first


def _campaign(
    rng: random.Random,
    spec: LeakSpec,
    numbers: _Numbers,
    victims: list[str],
    source: str | None,
    leak_day: int,
    calls: list[_Call],
) -> Campaign:
    """Dial every victim 1-3 times from the day after the leak (1-3 days later) to the end,
    rotating through numbers: each takes the next 20-40 calls, a fifth of its calls going to a
    neighbour in the rotation; three in four numbers come from one MVNO block."""
    start_day = min(spec.days - 1, leak_day + rng.randint(1, 3))
    times = sorted(
        (_waking_time(rng, rng.randrange(start_day, spec.days)), victim)
        for victim in victims
        for _ in range(rng.choice((1, 2, 2, 3)))
    )
    block = f"170{rng.randrange(1_000_000):06d}"
    members: list[str] = []
    per_number = rng.randint(20, 40)
    for _ in range(math.ceil(len(times) / per_number)):
        if rng.random() < 0.75:
            members.append(numbers.draw(lambda: f"{block}{rng.randrange(100):02d}"))
        else:
            members.append(numbers.draw(lambda: _mobile(rng)))
    for i, (at, victim) in enumerate(times):
        slot = i // per_number
        if rng.random() < 0.2:
            slot = min(len(members) - 1, max(0, slot + rng.choice((-1, 1))))
        calls.append(_dialler_call(rng, members[slot], victim, at))
    return Campaign(tuple(members), source, block, leak_day * _DAY_S, times[0][0])


def _poisson(rng: random.Random, mean: float) -> int:
    limit = math.exp(-mean)
    k, p = 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _records(spec: LeakSpec, calls: list[_Call]) -> list[dict[str, object]]:
    calls.sort()
    base = spec.start.astimezone(UTC)
    tz = spec.start.tzinfo
    return [
        {
            "cdr_id": f"lk{spec.seed}-{n:09d}",
            "caller": caller,
            "callee": callee,
            "start_time": (base + timedelta(seconds=at)).astimezone(tz).isoformat("T", "seconds"),
            "duration_s": duration,
            "answered": cause == NORMAL_CLEARING,
            "release_cause": cause,
            "direction": "outgoing",
        }
        for n, (at, _, caller, callee, cause, duration) in enumerate(calls)
    ]


def write_leak_labels(path: Path | str, labels: Iterable[tuple[str, str]]) -> int:
    """CSV ``number,role`` with a header row (numbers in clear: all of this is synthetic)."""
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("number", "role"))
        for row in labels:
            writer.writerow(row)
            count += 1
    return count
