"""The debt-collection detector, table-driven against the bundled default policy: attempts of one
caller at one person over the pair window, night attempts weighted, the answer profile, the
person's number class, members no longer active; and the engine's pair evidence (local hours,
the busiest window) as the detector receives it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from config.policy import load_policy
from config.settings import DEFAULT_POLICY_FILE
from detectors.catalogue import load_all
from detectors.debt_collection import is_night, weighted_attempts
from detectors.snapshot import Finding, Tally, WindowSnapshot

POLICY = load_policy(DEFAULT_POLICY_FILE)
DEBT = POLICY.detectors["debt_collection"]
TZ = ZoneInfo("Asia/Shanghai")
# 2026-12-01 15:00 local: the evaluated call
AT_S = int(datetime(2026, 12, 1, 15, tzinfo=TZ).timestamp())
COLLECTOR, OTHER = "17099958768", "13912345678"


def attempts(
    n: int, every_s: int = 300, hour: int = 14, last_s: int = AT_S
) -> tuple[tuple[int, int], ...]:
    """``n`` attempts ``every_s`` apart ending at ``last_s``, all at local ``hour``."""
    return tuple((last_s - k * every_s, hour) for k in reversed(range(n)))


def snap(
    calls: int,
    answered: int = 0,
    short: int = 0,
    pairs: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    number_class: str = "mobile",
) -> WindowSnapshot:
    tally = Tally(calls=calls, answered=answered, short=short, repeats=calls - 1)
    return WindowSnapshot(
        "13774575215",
        "callee",
        number_class,
        AT_S * 1000,
        {"2h": tally},
        factor=POLICY.factor(number_class),
        pairs=MappingProxyType({k: tuple(v) for k, v in (pairs or {}).items()}),
    )


def run(s: WindowSnapshot) -> Finding | None:
    return load_all()["debt_collection"].fn(s, DEBT)


PROTECT = ("critical", "protect")
NIGHT = 23  # local hour

CASES = [
    # 12 attempts by one caller in 2 h, none answered: the person protected, the caller a member
    ("twelve unanswered", snap(12, pairs={COLLECTOR: attempts(12)}), PROTECT, (COLLECTOR,)),
    ("eleven unanswered", snap(11, pairs={COLLECTOR: attempts(11)}), None, ()),
    # answered calls hung up on are the collector's profile; conversations are not
    ("answered short", snap(14, 5, 4, {COLLECTOR: attempts(14)}), PROTECT, (COLLECTOR,)),
    ("answered long", snap(14, 5, 1, {COLLECTOR: attempts(14)}), None, ()),
    ("most answered", snap(14, 8, 8, {COLLECTOR: attempts(14)}), None, ()),
    # six night attempts weigh as twelve
    ("night", snap(6, pairs={COLLECTOR: attempts(6, hour=NIGHT)}), PROTECT, (COLLECTOR,)),
    ("night five", snap(5, pairs={COLLECTOR: attempts(5, hour=NIGHT)}), None, ()),
    ("early morning", snap(6, pairs={COLLECTOR: attempts(6, hour=6)}), PROTECT, (COLLECTOR,)),
    ("morning", snap(6, pairs={COLLECTOR: attempts(6, hour=7)}), None, ()),
    # many callers with a few calls each is not one caller harassing a person
    (
        "spread over callers",
        snap(24, pairs={f"1390000000{i}": attempts(3) for i in range(8)}),
        None,
        (),
    ),
    # a hotline is redialled, not harassed; an MVNO person's thresholds are 20% tighter
    ("hotline", snap(30, pairs={COLLECTOR: attempts(30)}, number_class="hotline_400"), None, ()),
    ("mvno ten", snap(10, pairs={COLLECTOR: attempts(10)}, number_class="mvno"), PROTECT, None),
    ("mvno nine", snap(9, pairs={COLLECTOR: attempts(9)}, number_class="mvno"), None, ()),
    # a campaign that stopped more than an hour ago is not re-raised by someone else's call
    (
        "stopped",
        snap(13, pairs={COLLECTOR: attempts(12, last_s=AT_S - 3700), OTHER: attempts(1)}),
        None,
        (),
    ),
    (
        "still going",
        snap(13, pairs={COLLECTOR: attempts(12, last_s=AT_S - 3500), OTHER: attempts(1)}),
        PROTECT,
        (COLLECTOR,),
    ),
    # a flood of minutes is call bombing (its own protect), not debt collection: the attempts
    # must span 15 minutes
    ("flood", snap(20, pairs={COLLECTOR: attempts(20, every_s=30)}), None, ()),
    ("fifteen minutes", snap(12, pairs={COLLECTOR: attempts(12, every_s=82)}), PROTECT, None),
    ("under fifteen", snap(12, pairs={COLLECTOR: attempts(12, every_s=81)}), None, ()),
    # a caller reported for debt collection needs 9 attempts (12 x 0.7), not 12
    (
        "reported nine",
        replace(snap(9, pairs={COLLECTOR: attempts(9)}), reported={COLLECTOR: (1, 0.7)}),
        PROTECT,
        (COLLECTOR,),
    ),
    (
        "reported eight",
        replace(snap(8, pairs={COLLECTOR: attempts(8)}), reported={COLLECTOR: (1, 0.7)}),
        None,
        (),
    ),
    (
        "other caller reported",
        replace(snap(9, pairs={COLLECTOR: attempts(9)}), reported={OTHER: (1, 0.7)}),
        None,
        (),
    ),
    # rarely answered: 18 calls, at most 15% answered, fire however long the answered ones were
    ("rarely answered", snap(18, 2, 0, {COLLECTOR: attempts(18)}), PROTECT, (COLLECTOR,)),
    ("answered 3 of 18", snap(18, 3, 0, {COLLECTOR: attempts(18)}), None, ()),
    ("answered 2 of 17", snap(17, 2, 0, {COLLECTOR: attempts(17)}), None, ()),
    (
        "rarely answered hotline",
        snap(30, 2, 0, {COLLECTOR: attempts(30)}, number_class="hotline_400"),
        None,
        (),
    ),
    # circle evidence is evidence only: it lowers nothing
    (
        "circle alone",
        replace(snap(11, pairs={COLLECTOR: attempts(11)}), circle_hits={COLLECTOR: 5}),
        None,
        (),
    ),
]


@pytest.mark.parametrize(("case", "s", "expected", "members"), CASES, ids=[c[0] for c in CASES])
def test_default_policy(
    case: str,
    s: WindowSnapshot,
    expected: tuple[str, str] | None,
    members: tuple[str, ...] | None,
) -> None:
    finding = run(s)
    assert (None if finding is None else (finding.severity, finding.action)) == expected, case
    if finding is not None:
        assert finding.category == "debt_collection"
        assert finding.member_action == "intercept"
        if members is not None:
            assert finding.members == members
        for m in finding.members:
            assert finding.member_calls[m] >= (9 if s.reported else 10)
        # reasons and evidence name no number (the person is shown by pseudonym)
        assert not any(COLLECTOR in r or "13774575215" in r for r in finding.reasons)


@pytest.mark.parametrize(
    ("hour", "lo", "hi", "night"),
    [
        (23, 22, 7, True),
        (6, 22, 7, True),
        (7, 22, 7, False),
        (12, 22, 7, False),
        (1, 0, 6, True),
        (6, 0, 6, False),
    ],
)
def test_is_night(hour: int, lo: int, hi: int, night: bool) -> None:
    assert is_night(hour, lo, hi) is night


def test_evidence_carries_reports_and_circle_contacts() -> None:
    s = replace(
        snap(10, pairs={COLLECTOR: attempts(10), OTHER: attempts(2)}),
        reported={COLLECTOR: (2, 0.7)},
        circle_hits={COLLECTOR: 4, OTHER: 6},
    )
    finding = run(s)
    assert finding is not None and finding.members == (COLLECTOR,)
    assert finding.evidence["complaints"] == 2
    # only members count: OTHER's 6 are not a member's
    assert finding.evidence["contacts_of_person_called"] == 4
    assert "2 complaint report(s), latest: debt_collection" in finding.reasons
    assert "a caller with 10 weighted attempts >= 9" in finding.reasons
    plain = run(snap(12, pairs={COLLECTOR: attempts(12)}))
    assert plain is not None and plain.evidence["contacts_of_person_called"] == 0
    assert "complaints" not in plain.evidence


def test_weighted_attempts_rounds_night_weight_up() -> None:
    pairs = {COLLECTOR: ((AT_S - 60, 23), (AT_S, 12))}
    params = {"night_weight": 1.5, "member_active_s": 3600}
    assert weighted_attempts(pairs, params, AT_S * 1000) == {COLLECTOR: 3}  # 1 + ceil(1.5)


async def test_engine_gives_the_detector_local_hours_over_the_pair_window() -> None:
    """Through stage 2: a collector's 6 attempts from 23:00 local time weigh as 12: the person is
    protected and the collector intercepted at the sixth, with 12 weighted attempts."""
    from config.settings import Settings
    from streams.engine import Engine
    from streams.items import DERIVED_KINDS
    from streams.observe import Obs
    from streams.reorder import Progress
    from streams.state.memory import MemoryStore

    settings = Settings(timezone="Asia/Shanghai")
    start = int(datetime(2026, 12, 1, 23, tzinfo=TZ).timestamp() * 1000)
    engine = Engine(
        settings, POLICY, MemoryStore(), clock_ms=lambda: start + 86_400_000, kinds=DERIVED_KINDS
    )
    person = "13774575215"
    calls = [
        Obs("callee", person, f"c{k}", start + k * 300_000, False, 0, 21, COLLECTOR, 0)
        for k in range(6)
    ]
    items: list[tuple[int, object]] = [(k + 1, obs) for k, obs in enumerate(calls)]
    items.append((len(items) + 1, Progress(0, start + 3_600_000, True)))
    out = await engine.process(0, items)  # type: ignore[arg-type]
    raised = [a for a in out.alerts if a.detector == "debt_collection" and a.state == "raised"]
    assert [(a.subject, a.action) for a in raised] == [
        ("callee", "protect"),
        ("number", "intercept"),
    ]
    assert raised[1].number == COLLECTOR
    assert raised[1].evidence["member_calls"] == 12  # six night attempts, each counting twice
    assert raised[0].number.startswith("ps:")
    assert raised[0].event_ms == calls[-1].start_ms  # on the sixth attempt


@pytest.mark.parametrize(
    ("category", "attempts_made", "fires"),
    [
        ("debt_collection", 9, True),  # 12 x 0.7 -> 9
        ("debt_collection", 8, False),
        ("telemarketing", 9, False),  # a report of another category leaves debt's levels alone
        (None, 9, False),
    ],
)
async def test_stage_two_reads_stage_one_reports_of_the_collector(
    category: str | None, attempts_made: int, fires: bool
) -> None:
    """A debt-collection report about the collector, stored by stage 1 (its caller partition),
    lowers its member threshold in stage 2 (the person's partition), and from its reported_at
    only; and its other callees found in the person's circle are counted as evidence."""
    from config.settings import Settings
    from streams.complaints import Complaint, record
    from streams.factory import build_engines
    from streams.observe import Obs
    from streams.reorder import Progress

    settings = Settings(timezone="Asia/Shanghai", redis="")
    callers, derived = build_engines(settings)
    start = int(datetime(2026, 12, 1, 14, tzinfo=TZ).timestamp() * 1000)
    clock = start + 86_400_000
    callers.clock_ms = derived.clock_ms = lambda: clock
    if category is not None:
        report = Complaint("r-1", COLLECTOR, category, start - 60_000)
        await record(callers.store, 0, [report], POLICY.complaints.horizon_s * 1000)
    person, friend = "13774575215", "13800000042"
    # the person called a friend earlier; the collector rings the friend, then the person
    calls = [
        Obs("callee", friend, "p0", start - 3_600_000, True, 60, 16, person, 0),
        Obs("callee", friend, "k0", start - 600_000, True, 30, 16, COLLECTOR, 0),
    ]
    calls += [
        Obs("callee", person, f"c{k}", start + k * 300_000, False, 0, 21, COLLECTOR, 0)
        for k in range(attempts_made)
    ]
    outs = []
    for n, batch in enumerate((calls[:2], calls[2:])):  # circles are read at a batch's start
        items: list[tuple[int, object]] = [(10 * n + k + 1, o) for k, o in enumerate(batch)]
        items.append((10 * n + 9, Progress(0, batch[-1].start_ms, n == 1)))
        outs.append(await derived.process(0, items))  # type: ignore[arg-type]
    raised = [a for a in outs[1].alerts if a.detector == "debt_collection" and a.state == "raised"]
    assert bool(raised) is fires
    if fires:
        assert [(a.subject, a.action) for a in raised] == [
            ("callee", "protect"),
            ("number", "intercept"),
        ]
        assert raised[0].evidence["complaints"] == 1
        assert raised[0].evidence["contacts_of_person_called"] == 1  # the friend
        assert any("complaint report" in r for r in raised[0].reasons)
