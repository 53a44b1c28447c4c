"""The labelled detection benchmark: one working day of CDR traffic, legitimate and hostile.

The day mixes ordinary subscribers, legitimate busy callers that must never be intercepted (some
of them allowlisted, some looking like diallers on purpose) and eight harassment patterns. The
frozen profile of every class is in ``docs/scenario.md``; this module is its implementation.

Determinism: every class draws from its own ``random.Random`` stream
(``_rng(seed, "scenario/<class>")``), so adding, removing or rescaling one class leaves the draws
of every other class unchanged. Classes share only the set of numbers already in use, and a
collision there (which makes one class draw again) is vanishingly rare in the ~3e9 mobile space.

Every CDR is outgoing, ``answered`` is exactly ``release_cause == 16`` and an unanswered call has
duration 0. Domestic calls come in on ``core-1`` .. ``core-4`` (fixed per caller) with STIR/SHAKEN
attestation ``A``; international gateways carry no attestation.
"""

from __future__ import annotations

import csv
import gzip
import math
import random
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Final

from streams.tools.simulate import (
    _ACTIVITY_SIGMA,
    _MOBILE_PREFIXES,
    _MVNO_PREFIXES,
    BUSY,
    CDR_FIELDS,
    NO_ANSWER,
    NO_USER_RESPONDING,
    NORMAL_CLEARING,
    REJECTED,
    UNALLOCATED,
    SimSpec,
    _cell,
    _contacts,
    _fresh_callee,
    _mobile,
    _normal_call,
    _open_text,
    _poisson,
    _rng,
    _unique_numbers,
    delivery_keys,
)

__all__ = [
    "ALLOWLISTED_ROLES",
    "ATTACK_ROLES",
    "BASE_COUNTS",
    "BLOCK_ACTIVE",
    "EXPECT",
    "EXPECTS",
    "LEGIT_ROLES",
    "ROLES",
    "SCENARIO_FIELDS",
    "SPOOF_TRUNKS",
    "VICTIM_ROLES",
    "Scenario",
    "ScenarioLabel",
    "ScenarioSpec",
    "generate_scenario",
    "read_scenario_labels",
    "records_by_role",
    "units",
    "write_allowlist",
    "write_scenario_csv",
    "write_scenario_labels",
]

LEGIT_ROLES: Final[tuple[str, ...]] = (
    "normal",
    "courier",
    "estate_agent",
    "insurance_agent",
    "taxi_dispatch",
    "switchboard",
    "bank_callcentre",
    "notification_service",
    "intl_caller",
    "spoof_victim",
    "line_check",
    "hospital_caller",
    "hotline_redialler",
    "worried_parent",
)
ATTACK_ROLES: Final[tuple[str, ...]] = (
    "bulk_dialler",
    "new_hire",
    "sequential_dialler",
    "one_ring",
    "bomber",
    "bomb_crew",
    "block_member",
    "spoof_trunk",
    "debt_collector",
)
VICTIM_ROLES: Final[tuple[str, ...]] = ("bomb_victim", "debtor")
ROLES: Final[tuple[str, ...]] = LEGIT_ROLES + ATTACK_ROLES + VICTIM_ROLES
EXPECTS: Final[tuple[str, ...]] = ("intercept", "protect", "trunk", "none")
EXPECT: Final[Mapping[str, str]] = MappingProxyType(
    {
        **dict.fromkeys(LEGIT_ROLES, "none"),
        **dict.fromkeys(ATTACK_ROLES, "intercept"),
        "spoof_trunk": "trunk",
        "bomb_victim": "protect",
        "debtor": "protect",
    }
)
ALLOWLISTED_ROLES: Final[tuple[str, ...]] = ("bank_callcentre", "notification_service")

# Units of every non-normal class at scale 1: numbers, except bomb_crew (crews of 4-6 callers),
# block_member (blocks of BLOCK_ACTIVE numbers) and spoof_trunk (trunks). Victims follow from
# bombers, crews and spoofed calls.
BASE_COUNTS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "courier": 20,
        "estate_agent": 10,
        "insurance_agent": 10,
        "taxi_dispatch": 5,
        "switchboard": 5,
        "bank_callcentre": 3,
        "notification_service": 2,
        "intl_caller": 50,
        "bulk_dialler": 10,
        "new_hire": 20,
        "sequential_dialler": 5,
        "one_ring": 5,
        "bomber": 5,
        "bomb_crew": 3,
        "block_member": 2,
        "spoof_trunk": 2,
        "debt_collector": 4,
        "line_check": 3,
        "hospital_caller": 3,
        "hotline_redialler": 3,
        "worried_parent": 3,
    }
)
BLOCK_ACTIVE: Final = 20
# The first two are the ones the profile names; more appear only at scale > 1.
SPOOF_TRUNKS: Final = ("intl-gw-07", "intl-gw-09")
SCENARIO_FIELDS: Final = (*CDR_FIELDS, "ingress_trunk", "attestation")

_INTL_TRUNK: Final = "intl-gw-01"
_ONE_RING_TRUNK: Final = "intl-gw-02"
_INTL_CODES: Final = ("44", "1", "81", "65", "852")
_ONE_RING_CODES: Final = ("882", "216", "373", "225", "675")
_DIALLER_FAILS: Final = (NO_ANSWER, NO_USER_RESPONDING, BUSY, REJECTED)
_DIALLER_FAILS_CUM: Final = (0.45, 0.70, 0.88, 1.0)
_HOUR: Final = 3600
_TEN_MIN: Final = 600


@dataclass(frozen=True, slots=True)
class ScenarioLabel:
    # A calling number; a victim's number (in clear: labels are synthetic test data); or a trunk id.
    subject: str
    role: str  # one of ROLES
    expect: str  # "intercept" | "protect" | "trunk" | "none"


@dataclass(frozen=True, slots=True)
class Scenario:
    records: list[dict[str, object]]  # CDR dicts in delivery order
    labels: list[ScenarioLabel]  # every non-normal subject; an unlabelled caller is "normal"
    allowlist: list[str]  # numbers of the allowlisted legitimate callers


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    start: datetime  # timezone-aware; the day runs from here for `hours`
    seed: int = 1
    subscribers: int = 20_000
    hours: float = 12.0
    scale: float = 1.0  # multiplies the count of every non-normal class (at least 1 each)
    late_fraction: float = 0.05
    max_late_s: int = 600

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")
        # Office hours (1 h .. hours - 2 h) must be non-empty and the taxi peaks must not overlap.
        if not self.hours >= 4:
            raise ValueError("hours must be at least 4")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError("scale must be positive")
        if not 0.0 <= self.late_fraction <= 1.0:
            raise ValueError("late_fraction must be within [0, 1]")
        if self.max_late_s < 0:
            raise ValueError("max_late_s must not be negative")
        victims = units("bomber", self.scale) + units("bomb_crew", self.scale)
        if self.subscribers < max(100, 4 * victims):
            raise ValueError("too few subscribers for the victims this scale needs")

    @property
    def period_s(self) -> int:
        return round(self.hours * _HOUR)


def units(role: str, scale: float) -> int:
    """How many units of ``role`` (see ``BASE_COUNTS``) a scenario at ``scale`` has."""
    return max(1, math.floor(BASE_COUNTS[role] * scale + 0.5))


# (offset s from the start, caller, callee, release cause, duration s, trunk, attestation)
_Row = tuple[int, str, str, int, int, str, str | None]
_Outcome = tuple[int, int]  # (release cause, duration s)


@dataclass(slots=True)
class _Ctx:
    spec: ScenarioSpec
    period: int
    office: tuple[int, int]
    taken: set[str]  # every number given to a caller so far
    subscribers: list[str] = field(default_factory=list)
    # Subscribers with a role already (bomb victims, presented by a spoofing trunk, debtors, the
    # people the repetitive legitimate callers ring): no subscriber gets two.
    victims: set[str] = field(default_factory=set)
    # A subscriber's family and friends (the numbers its everyday calls go to), for the classes
    # that call a person and the people around them.
    circles: dict[str, list[str]] = field(default_factory=dict)

    def rng(self, name: str) -> random.Random:
        return _rng(self.spec.seed, f"scenario/{name}")

    def count(self, role: str) -> int:
        return units(role, self.spec.scale)

    def numbers(self, count: int, draw: Callable[[], str]) -> list[str]:
        return _unique_numbers(count, self.taken, draw)


@dataclass(slots=True)
class _Part:
    rows: list[_Row] = field(default_factory=list)
    labels: list[ScenarioLabel] = field(default_factory=list)

    def label(self, subject: str, role: str) -> None:
        self.labels.append(ScenarioLabel(subject, role, EXPECT[role]))


# --- numbers, times and call outcomes ---------------------------------------------------------


def _core(caller: str) -> str:
    """The core trunk a domestic caller is homed on; fixed per number, no random draw."""
    return f"core-{zlib.crc32(caller.encode()) % 4 + 1}"


def _domestic(at: int, caller: str, callee: str, outcome: _Outcome) -> _Row:
    return (at, caller, callee, outcome[0], outcome[1], _core(caller), "A")


def _ordinary_mobile(rng: random.Random) -> str:
    return f"{rng.choice(_MOBILE_PREFIXES)}{rng.randrange(100_000_000):08d}"


def _mvno(rng: random.Random) -> str:
    return f"{rng.choice(_MVNO_PREFIXES)}{rng.randrange(100_000_000):08d}"


def _international(rng: random.Random, codes: Sequence[str], digits: tuple[int, int]) -> str:
    width = rng.randint(*digits)
    return f"00{rng.choice(codes)}{rng.randrange(10**width):0{width}d}"


def _company(rng: random.Random) -> str:
    """A switchboard: a Beijing (10) or Shanghai (21) fixed line, or a 400 hotline."""
    kind = rng.randrange(3)
    if kind == 2:
        return f"400{rng.randrange(10**7):07d}"
    return f"{('10', '21')[kind]}{rng.randrange(10**8):08d}"


def _paced(rng: random.Random, start: float, interval: float, n: int) -> list[int]:
    """``n`` increasing times, one at a random point of each ``interval``-long slot.

    Any ``n' <= n`` consecutive slots fit in a closed span of ``n' * interval`` seconds, so a
    caller paced at r per 40 min shows r calls in some 40-minute span.
    """
    return [int(start + (k + rng.random()) * interval) for k in range(n)]


def _spread(rng: random.Random, lo: int, hi: int, n: int) -> list[int]:
    """``n`` calls evenly spread (with jitter) over ``[lo, hi)``."""
    return _paced(rng, lo, (hi - lo) / n, n) if n else []


def _scatter(rng: random.Random, lo: int, hi: int, n: int) -> list[int]:
    """``n`` independent uniform times in ``[lo, hi)``, sorted."""
    return sorted(rng.randrange(lo, max(lo + 1, hi)) for _ in range(n))


def _window(rng: random.Random, lo: int, hi: int, length: int) -> int:
    """Start of a ``length``-second window inside ``[lo, hi]`` (at ``lo`` if it does not fit)."""
    return rng.randint(lo, max(lo, hi - length))


def _humped(rng: random.Random, lo: int, hi: int, n: int) -> list[int]:
    """``n`` times over office hours with a morning and an afternoon peak (lunch dip).

    The intensity 0.65 + 0.35 sin²(2πx) peaks at 1.21 times its mean, so 1,500 calls over 9 h
    give a busiest hour of about 200.
    """
    times: list[int] = []
    width = hi - lo
    while len(times) < n:
        x = rng.random()
        if rng.random() < 0.65 + 0.35 * math.sin(2 * math.pi * x) ** 2:
            times.append(lo + int(x * width))
    return sorted(times)


def _lognormal_s(rng: random.Random, median_s: float, sigma: float, lo: int, hi: int) -> int:
    return min(hi, max(lo, round(rng.lognormvariate(math.log(median_s), sigma))))


def _outcome(
    rng: random.Random, answered: float, talk: Callable[[], int], fails: Sequence[int]
) -> _Outcome:
    if rng.random() < answered:
        return NORMAL_CLEARING, talk()
    return rng.choice(fails), 0


def _dialler_talk(rng: random.Random) -> int:
    """Mostly 2-20 s (the callee hangs up on the pitch), some up to a minute."""
    return rng.randint(2, 20) if rng.random() < 0.85 else rng.randint(21, 60)


def _dialler(
    rng: random.Random, answered: float = 0.30, unallocated: float = 0.03, talk_max: int = 0
) -> _Outcome:
    """The bulk_dialler call profile: few answered, a few unallocated, the rest 19/18/17/21.

    ``talk_max`` > 0 replaces the dialler talk time by a uniform 5..talk_max seconds.
    """
    u = rng.random()
    if u < answered:
        return NORMAL_CLEARING, rng.randint(5, talk_max) if talk_max else _dialler_talk(rng)
    if u < answered + unallocated:
        return UNALLOCATED, 0
    return rng.choices(_DIALLER_FAILS, cum_weights=_DIALLER_FAILS_CUM)[0], 0


# --- legitimate classes -----------------------------------------------------------------------


def _normal(ctx: _Ctx) -> _Part:
    """Ordinary subscribers, as in streams.tools.simulate: ~10 calls a day each, lognormal
    activity."""
    rng = ctx.rng("normal")
    part = _Part()
    ctx.subscribers = subscribers = ctx.numbers(ctx.spec.subscribers, partial(_mobile, rng))
    per_subscriber = 10.0 * ctx.period / 86_400
    sigma = _ACTIVITY_SIGMA
    for number in subscribers:
        activity = rng.lognormvariate(-sigma * sigma / 2, sigma)
        n_calls = _poisson(rng, per_subscriber * activity)
        if not n_calls:
            continue
        contacts = _contacts(rng, number, subscribers)
        ctx.circles[number] = contacts
        trunk = _core(number)
        for _ in range(n_calls):
            at, _, _, callee, cause, duration = _normal_call(
                rng, number, contacts, rng.randrange(ctx.period), 0
            )
            part.rows.append((at, number, callee, cause, duration, trunk, "A"))
    return part


def _courier(ctx: _Ctx) -> _Part:
    """Delivery drivers: many distinct customers a day, short answered calls, some call back."""
    rng = ctx.rng("courier")
    part = _Part()
    lo, hi = ctx.office

    def talk() -> int:
        return rng.randint(15, 60)

    for number in ctx.numbers(ctx.count("courier"), partial(_ordinary_mobile, rng)):
        part.label(number, "courier")
        customers: list[str] = []
        for at in _scatter(rng, lo, hi, rng.randint(120, 200)):
            if customers and rng.random() < 0.05:
                callee = rng.choice(customers)
            else:
                callee = ctx.numbers(1, partial(_mobile, rng))[0]
                customers.append(callee)
                if rng.random() < 0.10:
                    back = min(ctx.period - 1, at + rng.randint(120, 3600))
                    outcome = _outcome(rng, 0.85, talk, (NO_ANSWER, BUSY))
                    part.rows.append(_domestic(back, callee, number, outcome))
            part.rows.append(
                _domestic(at, number, callee, _outcome(rng, 0.85, talk, (NO_ANSWER, BUSY)))
            )
    return part


def _agent(ctx: _Ctx, role: str) -> _Part:
    """Estate and insurance agents: new leads plus a list of 30 clients, calls of 2-3 min."""
    rng = ctx.rng(role)
    part = _Part()
    lo, hi = ctx.office

    def talk() -> int:
        return _lognormal_s(rng, 150, 0.5, 20, 1800)

    for number in ctx.numbers(ctx.count(role), partial(_mobile, rng)):
        part.label(number, role)
        clients = [_mobile(rng) for _ in range(30)]
        dialled: set[str] = set(clients)
        for at in _scatter(rng, lo, hi, rng.randint(60, 120)):
            callee = rng.choice(clients) if rng.random() < 0.30 else _fresh_callee(rng, dialled)
            outcome = _outcome(rng, 0.60, talk, (NO_ANSWER, BUSY, NO_USER_RESPONDING))
            part.rows.append(_domestic(at, number, callee, outcome))
    return part


def _estate_agent(ctx: _Ctx) -> _Part:
    return _agent(ctx, "estate_agent")


def _insurance_agent(ctx: _Ctx) -> _Part:
    return _agent(ctx, "insurance_agent")


def _taxi_dispatch(ctx: _Ctx) -> _Part:
    """400-700 calls over the whole day, ~80/h in the first and the last two hours."""
    rng = ctx.rng("taxi_dispatch")
    part = _Part()
    period = ctx.period
    peak = 2 * _HOUR

    def talk() -> int:
        return rng.randint(10, 40)

    for number in ctx.numbers(ctx.count("taxi_dispatch"), partial(_ordinary_mobile, rng)):
        part.label(number, "taxi_dispatch")
        total = rng.randint(400, 700)
        per_peak = min(total // 2, rng.randint(140, 170))
        times = _scatter(rng, 0, peak, per_peak) + _scatter(rng, period - peak, period, per_peak)
        quiet = (peak, period - peak) if period - peak > peak else (0, period)
        times = sorted(times + _scatter(rng, *quiet, total - 2 * per_peak))
        drivers = [_mobile(rng) for _ in range(40)]
        dialled: set[str] = set(drivers)
        for at in times:
            callee = rng.choice(drivers) if rng.random() < 0.60 else _fresh_callee(rng, dialled)
            part.rows.append(
                _domestic(at, number, callee, _outcome(rng, 0.90, talk, (NO_ANSWER, BUSY)))
            )
    return part


def _switchboard(ctx: _Ctx) -> _Part:
    """Company numbers: 800-1,500 calls in office hours, busiest hour up to ~200."""
    rng = ctx.rng("switchboard")
    part = _Part()
    lo, hi = ctx.office

    def talk() -> int:
        return _lognormal_s(rng, 180, 0.6, 15, 3600)

    for number in ctx.numbers(ctx.count("switchboard"), partial(_company, rng)):
        part.label(number, "switchboard")
        dialled: set[str] = set()
        previous: list[str] = []
        for at in _humped(rng, lo, hi, rng.randint(800, 1500)):
            if previous and rng.random() < 0.10:
                callee = rng.choice(previous)
            else:
                callee = _fresh_callee(rng, dialled)
                previous.append(callee)
            outcome = _outcome(rng, 0.75, talk, (NO_ANSWER, BUSY, NO_USER_RESPONDING))
            part.rows.append(_domestic(at, number, callee, outcome))
    return part


def _bank_callcentre(ctx: _Ctx) -> _Part:
    """Allowlisted 95xxx outbound centres: 300-500 calls/h all office hours, dialler-like."""
    rng = ctx.rng("bank_callcentre")
    part = _Part()
    lo, hi = ctx.office

    def draw() -> str:
        return f"95{rng.randrange(1000):03d}"

    for number in ctx.numbers(ctx.count("bank_callcentre"), draw):
        part.label(number, "bank_callcentre")
        per_hour = rng.randint(300, 500)
        dialled: set[str] = set()
        for at in _spread(rng, lo, hi, round(per_hour * (hi - lo) / _HOUR)):
            outcome = _dialler(rng, answered=0.45, unallocated=0.02, talk_max=90)
            part.rows.append(_domestic(at, number, _fresh_callee(rng, dialled), outcome))
    return part


def _notification_service(ctx: _Ctx) -> _Part:
    """Allowlisted 96xxxxxx voice notifications: two bursts of 500-800 calls within an hour."""
    rng = ctx.rng("notification_service")
    part = _Part()
    lo, hi = ctx.office
    mid = (lo + hi) // 2

    def talk() -> int:
        return rng.randint(10, 20)

    def draw() -> str:
        return f"96{rng.randrange(1_000_000):06d}"

    for number in ctx.numbers(ctx.count("notification_service"), draw):
        part.label(number, "notification_service")
        dialled: set[str] = set()
        for first, last in ((lo, mid), (mid, hi)):
            start = _window(rng, first, last, _HOUR)
            for at in _scatter(rng, start, start + _HOUR, rng.randint(500, 800)):
                outcome = _outcome(rng, 0.70, talk, (NO_ANSWER, BUSY, NO_USER_RESPONDING))
                part.rows.append(_domestic(at, number, _fresh_callee(rng, dialled), outcome))
    return part


def _intl_caller(ctx: _Ctx) -> _Part:
    """Relatives and business partners abroad: a few long calls to subscribers, no attestation."""
    rng = ctx.rng("intl_caller")
    part = _Part()

    def talk() -> int:
        return _lognormal_s(rng, 240, 0.7, 30, 3600)

    draw = partial(_international, rng, _INTL_CODES, (8, 10))
    for number in ctx.numbers(ctx.count("intl_caller"), draw):
        part.label(number, "intl_caller")
        for at in _scatter(rng, 0, ctx.period, rng.randint(1, 5)):
            callee = rng.choice(ctx.subscribers)
            cause, duration = _outcome(rng, 0.70, talk, (NO_ANSWER, BUSY, NO_USER_RESPONDING))
            part.rows.append((at, number, callee, cause, duration, _INTL_TRUNK, None))
    return part


# --- attacks ----------------------------------------------------------------------------------


def _bulk_number(rng: random.Random, index: int) -> str:
    """Bulk diallers rotate through 95xxxxxx service numbers, MVNO and ordinary mobiles."""
    if index % 3 == 0:
        return f"95{rng.randrange(1_000_000):06d}"
    return _mvno(rng) if index % 3 == 1 else _ordinary_mobile(rng)


def _bulk_dialler(ctx: _Ctx) -> _Part:
    """One shift of 2-4 h from somewhere in office hours at a steady 250-300 calls per 40 min."""
    rng = ctx.rng("bulk_dialler")
    part = _Part()
    lo, hi = ctx.office
    for i in range(ctx.count("bulk_dialler")):
        number = ctx.numbers(1, partial(_bulk_number, rng, i))[0]
        part.label(number, "bulk_dialler")
        shift = min(round(rng.uniform(2, 4) * _HOUR), ctx.period - lo)
        start = rng.randint(lo, max(lo, min(hi, ctx.period - shift)))
        interval = 2400 / rng.randint(250, 300)
        dialled: set[str] = set()
        for at in _paced(rng, start, interval, int(shift / interval)):
            part.rows.append(_domestic(at, number, _fresh_callee(rng, dialled), _dialler(rng)))
    return part


def _new_hire(ctx: _Ctx) -> _Part:
    """A dialler kept under every rate threshold: 300-350 calls evenly over office hours."""
    rng = ctx.rng("new_hire")
    part = _Part()
    lo, hi = ctx.office
    for number in ctx.numbers(ctx.count("new_hire"), partial(_mobile, rng)):
        part.label(number, "new_hire")
        dialled: set[str] = set()
        for at in _spread(rng, lo, hi, rng.randint(300, 350)):
            part.rows.append(_domestic(at, number, _fresh_callee(rng, dialled), _dialler(rng)))
    return part


def _sequential_dialler(ctx: _Ctx) -> _Part:
    """War-dialling a mobile block: callee n, n+s, n+2s ... at 60-120 calls/h for 1-3 h."""
    rng = ctx.rng("sequential_dialler")
    part = _Part()
    lo, hi = ctx.office
    for number in ctx.numbers(ctx.count("sequential_dialler"), partial(_mobile, rng)):
        part.label(number, "sequential_dialler")
        interval = _HOUR / rng.randint(60, 120)
        span = round(rng.uniform(1, 3) * _HOUR)
        n = int(span / interval)
        stride = rng.choice((1, 2, 3, 10))
        prefix = rng.choice(_MOBILE_PREFIXES)
        first = rng.randrange(100_000_000 - stride * n)
        start = _window(rng, lo, hi, span)
        for k, at in enumerate(_paced(rng, start, interval, n)):
            callee = f"{prefix}{first + k * stride:08d}"
            outcome = _dialler(rng, answered=0.25, unallocated=0.20)
            part.rows.append(_domestic(at, number, callee, outcome))
    return part


def _one_ring(ctx: _Ctx) -> _Part:
    """Wangiri: premium-rate international numbers ring 50-150 mobiles in 10 min, hang up."""
    rng = ctx.rng("one_ring")
    part = _Part()
    draw = partial(_international, rng, _ONE_RING_CODES, (8, 8))
    for number in ctx.numbers(ctx.count("one_ring"), draw):
        part.label(number, "one_ring")
        bursts = rng.randint(2, 4)
        segment = ctx.period // bursts
        dialled: set[str] = set()
        for b in range(bursts):
            start = _window(rng, b * segment, (b + 1) * segment, _TEN_MIN)
            for at in _scatter(rng, start, start + _TEN_MIN, rng.randint(50, 150)):
                callee = rng.choice(ctx.subscribers) if rng.random() < 0.5 else ""
                if not callee or callee in dialled:
                    callee = _fresh_callee(rng, dialled)
                dialled.add(callee)
                cause = rng.choice((NO_ANSWER, NO_USER_RESPONDING))
                part.rows.append((at, number, callee, cause, 0, _ONE_RING_TRUNK, None))
    return part


def _victim(ctx: _Ctx, rng: random.Random, part: _Part) -> str:
    """A normal subscriber not yet a victim; labelled bomb_victim ("protect")."""
    while True:
        victim = rng.choice(ctx.subscribers)
        if victim not in ctx.victims:
            ctx.victims.add(victim)
            part.label(victim, "bomb_victim")
            return victim


def _bomb_outcome(rng: random.Random) -> _Outcome:
    """Mostly rejected or unanswered; the victim sometimes picks up and hangs up at once."""
    return _outcome(rng, 0.15, lambda: rng.randint(1, 5), (BUSY, NO_ANSWER, REJECTED))


def _bomber(ctx: _Ctx) -> _Part:
    """One caller floods one subscriber with 30-60 calls within 10 minutes."""
    rng = ctx.rng("bomber")
    part = _Part()
    for i in range(ctx.count("bomber")):
        draw = partial(_mvno if i % 2 else _ordinary_mobile, rng)
        number = ctx.numbers(1, draw)[0]
        part.label(number, "bomber")
        victim = _victim(ctx, rng, part)
        start = _window(rng, 0, ctx.period, _TEN_MIN)
        for at in _scatter(rng, start, start + _TEN_MIN, rng.randint(30, 60)):
            part.rows.append(_domestic(at, number, victim, _bomb_outcome(rng)))
    return part


def _split(rng: random.Random, total: int, parts: int, low: int, high: int) -> list[int]:
    """``parts`` random counts within ``[low, high]`` summing to ``total``."""
    counts = [low] * parts
    for _ in range(total - low * parts):
        counts[rng.choice([k for k in range(parts) if counts[k] < high])] += 1
    return counts


def _bomb_crew(ctx: _Ctx) -> _Part:
    """4-6 callers share one flood: 40-80 calls in 10 minutes, 8-15 each, to one subscriber."""
    rng = ctx.rng("bomb_crew")
    part = _Part()
    for _ in range(ctx.count("bomb_crew")):
        size = rng.randint(4, 6)
        total = rng.randint(max(40, 8 * size), min(80, 15 * size))
        members = ctx.numbers(size, partial(_mobile, rng))
        for number in members:
            part.label(number, "bomb_crew")
        victim = _victim(ctx, rng, part)
        start = _window(rng, 0, ctx.period, _TEN_MIN)
        for number, n in zip(members, _split(rng, total, size, 8, 15), strict=True):
            for at in _scatter(rng, start, start + _TEN_MIN, n):
                part.rows.append(_domestic(at, number, victim, _bomb_outcome(rng)))
    return part


def _block_prefix(ctx: _Ctx, rng: random.Random) -> str:
    """A 9-digit MVNO prefix none of whose 100 numbers is in use yet."""
    while True:
        prefix = _mvno(rng)[:9]
        if not any(f"{prefix}{k:02d}" in ctx.taken for k in range(100)):
            return prefix


def _block_member(ctx: _Ctx) -> _Part:
    """A rented 100-number MVNO block: 20 active numbers, each under single-number thresholds."""
    rng = ctx.rng("block_member")
    part = _Part()
    lo, hi = ctx.office
    for _ in range(ctx.count("block_member")):
        prefix = _block_prefix(ctx, rng)
        for k in sorted(rng.sample(range(100), BLOCK_ACTIVE)):
            number = f"{prefix}{k:02d}"
            ctx.taken.add(number)
            part.label(number, "block_member")
            dialled: set[str] = set()
            for at in _scatter(rng, lo, hi, rng.randint(100, 180)):
                outcome = _dialler(rng)
                part.rows.append(_domestic(at, number, _fresh_callee(rng, dialled), outcome))
    return part


def _spoof_trunk_ids(count: int) -> list[str]:
    return [f"intl-gw-{7 + 2 * i:02d}" for i in range(count)]


def _spoof_trunk(ctx: _Ctx) -> _Part:
    """International trunks presenting domestic mobiles: 200-300 calls/h for 2 h each.

    30% of the presented numbers belong to real subscribers (never a bomb victim), the rest are
    unused mobiles; every presented number is labelled spoof_victim, the trunk spoof_trunk.
    """
    rng = ctx.rng("spoof_trunk")
    part = _Part()
    lo, hi = ctx.office
    presented: dict[str, None] = {}  # insertion-ordered set, for stable labels
    for trunk in _spoof_trunk_ids(ctx.count("spoof_trunk")):
        part.label(trunk, "spoof_trunk")
        start = _window(rng, lo, hi, 2 * _HOUR)
        dialled: set[str] = set()
        for at in _spread(rng, start, start + 2 * _HOUR, 2 * rng.randint(200, 300)):
            if rng.random() < 0.30:
                caller = rng.choice(ctx.subscribers)
                while caller in ctx.victims:
                    caller = rng.choice(ctx.subscribers)
            else:
                caller = ctx.numbers(1, partial(_mobile, rng))[0]
            presented[caller] = None
            attestation = "C" if rng.random() < 0.5 else None
            cause, duration = _dialler(rng)
            callee = _fresh_callee(rng, dialled)
            part.rows.append((at, caller, callee, cause, duration, trunk, attestation))
    for number in presented:
        part.label(number, "spoof_victim")
    ctx.victims.update(presented)
    return part


# --- issue 19: repeated calls to one person ---------------------------------------------------


def _person(ctx: _Ctx, rng: random.Random, min_circle: int) -> str:
    """A subscriber with no role yet and at least ``min_circle`` numbers in its circle."""
    while True:
        person = rng.choice(ctx.subscribers)
        if person not in ctx.victims and len(ctx.circles.get(person, ())) >= min_circle:
            ctx.victims.add(person)
            return person


def _circle_calls(
    rng: random.Random, caller: str, circle: Sequence[str], times: Sequence[int], answered: float
) -> list[_Row]:
    """Calls at ``times`` to numbers of a person's circle, conversations when answered."""
    talk = partial(_lognormal_s, rng, 60, 0.6, 20, 600)
    return [
        _domestic(
            at,
            caller,
            rng.choice(circle),
            _outcome(rng, answered, talk, (NO_ANSWER, BUSY, NO_USER_RESPONDING)),
        )
        for at in times
    ]


def _debt_collector(ctx: _Ctx) -> _Part:
    """Illegal debt collection: 24-60 attempts at one debtor over 1-2 h, mostly unanswered or
    rejected, and 6-12 calls to 3-6 numbers of the debtor's circle in between."""
    rng = ctx.rng("debt_collector")
    part = _Part()
    for i in range(ctx.count("debt_collector")):
        number = ctx.numbers(1, partial(_mvno if i % 2 else _ordinary_mobile, rng))[0]
        part.label(number, "debt_collector")
        debtor = _person(ctx, rng, 3)
        part.label(debtor, "debtor")
        span = rng.randint(60, 120) * 60
        start = _window(rng, 0, ctx.period, span)
        for at in _spread(rng, start, start + span, rng.randint(24, 60)):
            u = rng.random()
            if u < 0.20:  # picks up, hears who it is and hangs up, or is shouted at briefly
                outcome = (NORMAL_CLEARING, rng.randint(2, 15) if rng.random() < 0.8 else 30)
            else:
                outcome = (
                    rng.choices((REJECTED, NO_ANSWER, BUSY), cum_weights=(0.4, 0.75, 1))[0],
                    0,
                )
            part.rows.append(_domestic(at, number, debtor, outcome))
        circle = rng.sample(ctx.circles[debtor], min(len(ctx.circles[debtor]), rng.randint(3, 6)))
        times = _scatter(rng, start, start + span, rng.randint(6, 12))
        part.rows.extend(_circle_calls(rng, number, circle, times, 0.6))
    return part


def _line_check(ctx: _Ctx) -> _Part:
    """A company line checking a client's block of direct-dial numbers in order before a move:
    1-2 sessions of 20-50 consecutive numbers, a call every 1-3 min, mostly real answers."""
    rng = ctx.rng("line_check")
    part = _Part()
    lo, hi = ctx.office
    for number in ctx.numbers(ctx.count("line_check"), partial(_company, rng)):
        part.label(number, "line_check")
        for _ in range(rng.randint(1, 2)):
            size = rng.randint(20, 50)
            area = rng.choice(("10", "21"))
            first = rng.randrange(10**7) * 10 // 100 * 100  # the block starts at ...00
            at = _window(rng, lo, hi, size * 180)
            for k in range(size):
                callee = f"{area}{first + k:08d}"
                outcome = _outcome(
                    rng, 0.80, partial(rng.randint, 20, 90), (NO_ANSWER, BUSY, NO_USER_RESPONDING)
                )
                part.rows.append(_domestic(at, number, callee, outcome))
                at += rng.randint(60, 180)
    return part


def _hospital_caller(ctx: _Ctx) -> _Part:
    """Someone calling a relative in hospital all evening: 10-20 calls over 2-4 h in the last
    4 h of the day, 45% answered with conversations, and 3-8 calls to the rest of the family."""
    rng = ctx.rng("hospital_caller")
    part = _Part()
    talk = partial(_lognormal_s, rng, 120, 0.8, 20, 1800)
    for number in ctx.numbers(ctx.count("hospital_caller"), partial(_ordinary_mobile, rng)):
        part.label(number, "hospital_caller")
        patient = _person(ctx, rng, 2)
        span = rng.randint(2, 4) * _HOUR
        start = _window(rng, max(0, ctx.period - 4 * _HOUR), ctx.period, span)
        for at in _scatter(rng, start, start + span, rng.randint(10, 20)):
            outcome = _outcome(rng, 0.45, talk, (NO_ANSWER, NO_USER_RESPONDING, BUSY))
            part.rows.append(_domestic(at, number, patient, outcome))
        times = _scatter(rng, start, start + span, rng.randint(3, 8))
        part.rows.extend(_circle_calls(rng, number, ctx.circles[patient], times, 0.7))
    return part


def _hotline_redialler(ctx: _Ctx) -> _Part:
    """A fixed line redialling a busy 400 hotline: 15-40 attempts 30-120 s apart, all busy but
    the last, which gets through for 3-20 min."""
    rng = ctx.rng("hotline_redialler")
    part = _Part()
    lo, hi = ctx.office

    def fixed() -> str:
        return f"{rng.choice(('10', '21'))}{rng.randrange(10**8):08d}"

    for number in ctx.numbers(ctx.count("hotline_redialler"), fixed):
        part.label(number, "hotline_redialler")
        hotline = f"400{rng.randrange(10**7):07d}"
        n = rng.randint(15, 40)
        at = _window(rng, lo, hi, n * 120)
        for k in range(n):
            outcome = (NORMAL_CLEARING, rng.randint(180, 1200)) if k == n - 1 else (BUSY, 0)
            part.rows.append(_domestic(at, number, hotline, outcome))
            at += rng.randint(30, 120)
    return part


def _worried_parent(ctx: _Ctx) -> _Part:
    """A parent who cannot reach their child in the evening: 6-12 unanswered calls over 1-2 h in
    the last 3 h of the day until the child answers (1-10 min), and 2-5 calls to the child's
    friends."""
    rng = ctx.rng("worried_parent")
    part = _Part()
    for number in ctx.numbers(ctx.count("worried_parent"), partial(_ordinary_mobile, rng)):
        part.label(number, "worried_parent")
        child = _person(ctx, rng, 2)
        span = rng.randint(60, 120) * 60
        start = _window(rng, max(0, ctx.period - 3 * _HOUR), ctx.period, span)
        times = _scatter(rng, start, start + span, rng.randint(6, 12))
        for k, at in enumerate(times):
            last = k == len(times) - 1
            outcome = (
                (NORMAL_CLEARING, rng.randint(60, 600))
                if last
                else (rng.choice((NO_ANSWER, NO_USER_RESPONDING)), 0)
            )
            part.rows.append(_domestic(at, number, child, outcome))
        friends = _scatter(rng, start, start + span, rng.randint(2, 5))
        part.rows.extend(_circle_calls(rng, number, ctx.circles[child], friends, 0.6))
    return part


# Added by issue 19 (after the profile of 2026-12-01): numbered and delayed apart from the rest,
# so the classes before them keep their records' ids and delivery.
_ADDED_CLASSES: Final = frozenset(
    {"debt_collector", "line_check", "hospital_caller", "hotline_redialler", "worried_parent"}
)

# Generation order; only the shared set of used numbers links one class to the next.
_CLASSES: Final[tuple[tuple[str, Callable[[_Ctx], _Part]], ...]] = (
    ("normal", _normal),
    ("courier", _courier),
    ("estate_agent", _estate_agent),
    ("insurance_agent", _insurance_agent),
    ("taxi_dispatch", _taxi_dispatch),
    ("switchboard", _switchboard),
    ("bank_callcentre", _bank_callcentre),
    ("notification_service", _notification_service),
    ("intl_caller", _intl_caller),
    ("bulk_dialler", _bulk_dialler),
    ("new_hire", _new_hire),
    ("sequential_dialler", _sequential_dialler),
    ("one_ring", _one_ring),
    ("bomber", _bomber),
    ("bomb_crew", _bomb_crew),
    ("block_member", _block_member),
    ("spoof_trunk", _spoof_trunk),
    ("debt_collector", _debt_collector),
    ("line_check", _line_check),
    ("hospital_caller", _hospital_caller),
    ("hotline_redialler", _hotline_redialler),
    ("worried_parent", _worried_parent),
)


def generate_scenario(spec: ScenarioSpec) -> Scenario:
    """The whole labelled day: records in delivery order, labels, and the allowlist.

    The classes of the first profile (up to ``spoof_trunk``) keep their ids ``sc{seed}-{n}`` and
    their delivery exactly as before issue 19 added classes; the added classes' records are
    numbered ``sc{seed}-r19-{n}`` and delayed from their own random stream, and the two are
    merged by arrival time (docs/scenario.md)."""
    period = spec.period_s
    ctx = _Ctx(spec=spec, period=period, office=(_HOUR, period - 2 * _HOUR), taken=set())
    groups: list[list[tuple[int, int, int, _Row]]] = [[], []]
    labels: list[ScenarioLabel] = []
    for index, (role, build) in enumerate(_CLASSES):
        part = build(ctx)
        group = groups[role in _ADDED_CLASSES]
        group.extend((row[0], index, seq, row) for seq, row in enumerate(part.rows))
        labels.extend(part.labels)
    stamp = _stamper(spec.start)
    late = SimSpec(
        start=spec.start,
        seed=spec.seed,
        late_fraction=spec.late_fraction,
        max_late_s=spec.max_late_s,
    )
    merged: list[tuple[float, int, int, dict[str, object]]] = []
    names = ((f"sc{spec.seed}-", "delivery"), (f"sc{spec.seed}-r19-", "delivery/r19"))
    for rank, (group, (prefix, stream)) in enumerate(zip(groups, names, strict=True)):
        group.sort(key=lambda k: (k[0], k[1], k[2]))
        records = [_record(f"{prefix}{n:09d}", row, stamp) for n, (*_, row) in enumerate(group)]
        merged.extend((at, rank, i, rec) for at, i, rec in delivery_keys(records, late, stream))
    merged.sort(key=lambda k: (k[0], k[1], k[2]))
    allowlist = [label.subject for label in labels if label.role in ALLOWLISTED_ROLES]
    return Scenario([rec for *_, rec in merged], labels, allowlist)


def _stamper(start: datetime) -> Callable[[int], str]:
    """ISO-8601 start_time (with the offset of ``start``'s zone) of an offset in seconds."""
    base = start.astimezone(UTC).replace(microsecond=0)
    tz = start.tzinfo
    cache: dict[int, str] = {}

    def stamp(offset: int) -> str:
        text = cache.get(offset)
        if text is None:
            moment = (base + timedelta(seconds=offset)).astimezone(tz)
            text = cache[offset] = moment.isoformat(timespec="seconds")
        return text

    return stamp


def _record(cdr_id: str, row: _Row, stamp: Callable[[int], str]) -> dict[str, object]:
    at, caller, callee, cause, duration, trunk, attestation = row
    record: dict[str, object] = {
        "cdr_id": cdr_id,
        "caller": caller,
        "callee": callee,
        "start_time": stamp(at),
        "duration_s": duration,
        "answered": cause == NORMAL_CLEARING,
        "release_cause": cause,
        "direction": "outgoing",
        "ingress_trunk": trunk,
    }
    if attestation is not None:
        record["attestation"] = attestation
    return record


def records_by_role(scenario: Scenario) -> Counter[str]:
    """Records per class: a spoof trunk's records by trunk, the rest by the caller's label.

    A caller without a label counts as ``normal`` (courier customers calling back included);
    a spoof victim's or bomb victim's own everyday calls count under that role.
    """
    trunks: set[str] = set()
    role_of: dict[str, str] = {}
    for label in scenario.labels:
        if label.role == "spoof_trunk":
            trunks.add(label.subject)
        else:
            role_of.setdefault(label.subject, label.role)
    counts: Counter[str] = Counter()
    for record in scenario.records:
        if record.get("ingress_trunk") in trunks:
            counts["spoof_trunk"] += 1
        else:
            counts[role_of.get(str(record["caller"]), "normal")] += 1
    return counts


def write_scenario_csv(path: Path | str, records: Iterable[Mapping[str, object]]) -> int:
    """Like ``simulate.write_csv`` with the trunk and attestation columns too."""
    count = 0
    with _open_text(path) as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(SCENARIO_FIELDS)
        for record in records:
            writer.writerow([_cell(record.get(name)) for name in SCENARIO_FIELDS])
            count += 1
    return count


def write_scenario_labels(path: Path | str, labels: Iterable[ScenarioLabel]) -> int:
    """CSV ``subject,role,expect`` with a header row (``-`` is stdout, ``.gz`` gzips)."""
    count = 0
    with _open_text(path) as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("subject", "role", "expect"))
        for label in labels:
            writer.writerow((label.subject, label.role, label.expect))
            count += 1
    return count


def read_scenario_labels(path: Path | str) -> list[ScenarioLabel]:
    """Labels written by ``write_scenario_labels``; ValueError on an unknown role or expect."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != ["subject", "role", "expect"]:
            raise ValueError(f"{path}: expected the header subject,role,expect")
        labels: list[ScenarioLabel] = []
        for lineno, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) != 3 or row[1] not in ROLES or row[2] not in EXPECTS or not row[0]:
                raise ValueError(f"{path}:{lineno}: not a scenario label")
            labels.append(ScenarioLabel(row[0], row[1], row[2]))
    return labels


def write_allowlist(path: Path | str, numbers: Iterable[str]) -> int:
    """An allowlist file (streams.allowlist format): a comment header, one number per line."""
    count = 0
    with _open_text(path) as out:
        out.write("# dialwatch scenario allowlist: bank call centres and notification services\n")
        out.write("# generated by streams.tools.scenario; one number per line\n")
        for number in numbers:
            out.write(f"{number}\n")
            count += 1
    return count
