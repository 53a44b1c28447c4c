"""Campaign grouping and leak ranking (pure logic), table-driven."""

from __future__ import annotations

import math
import random

import pytest

from detectors.campaigns import (
    CallerSketch,
    GroupingPolicy,
    K,
    SketchBuilder,
    group,
    keyed_hash,
    members_to_intercept,
    similarity,
)
from detectors.leak_sources import DAY_MS, ExactContacts, LeakPolicy, log_binomial_sf, rank

KEY = b"test-key"


def _sketch(number: str, callees: list[str], at_ms: int = 0, answered: int = 0) -> CallerSketch:
    b = SketchBuilder(number)
    for i, callee in enumerate(callees):
        b.add(keyed_hash(callee, KEY), at_ms + i * 1000, i < answered)
    return b.freeze()


def _callees(n: int, base: int = 0) -> list[str]:
    return [f"139{base + i:08d}" for i in range(n)]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (_callees(50), _callees(50), 1.0),  # same set
        (_callees(50), _callees(50, 50), 0.0),  # disjoint
        (_callees(60), _callees(60, 30), 30 / 90),  # exact below K
    ],
)
def test_similarity_is_the_jaccard_overlap(a: list[str], b: list[str], expected: float) -> None:
    overlap, _ = similarity(_sketch("1", a), _sketch("2", b))
    assert overlap == pytest.approx(expected)


def test_similarity_estimates_large_sets_within_a_few_points() -> None:
    a, b = _callees(4000), _callees(4000, 2000)  # J = 2000 / 6000
    overlap, _ = similarity(_sketch("1", a), _sketch("2", b))
    assert abs(overlap - 1 / 3) < 0.12
    assert len(_sketch("1", a).mins) == K
    assert _sketch("1", a).distinct == pytest.approx(4000, rel=0.3)


def test_a_sketch_does_not_depend_on_call_order_or_repeats() -> None:
    callees = _callees(300)
    shuffled = callees[:] + callees[:40]
    random.Random(3).shuffle(shuffled)
    assert _sketch("1", callees).mins == _sketch("1", shuffled).mins


def test_the_hash_is_keyed() -> None:
    assert keyed_hash("13900000001", b"a") != keyed_hash("13900000001", b"b")


def _rotation(block: str, n: int, victims: list[str], per: int, day_ms: int) -> list[CallerSketch]:
    """n numbers of one block each dialling a slice of the list plus a few of the next."""
    out = []
    for i in range(n):
        part = victims[i * per : (i + 1) * per] + victims[(i + 1) * per : (i + 1) * per + per // 4]
        out.append(_sketch(f"{block}{i:02d}", part, at_ms=i * day_ms // 2, answered=per // 4))
    return out


CASES = [
    # (name, sketches, expected groups as sorted member tuples)
    (
        "a rotation of one block is one campaign",
        _rotation("170123456", 6, _callees(200), 30, DAY_MS),
        [tuple(f"170123456{i:02d}" for i in range(6))],
    ),
    (
        "unrelated diallers stay apart",
        [_sketch(f"13800000{i:03d}", _callees(40, 1000 * i)) for i in range(5)],
        [],
    ),
    (
        "a business calling its customers back (mostly answered) is not a member",
        [
            *_rotation("170123456", 3, _callees(120), 30, DAY_MS),
            _sketch("4001234567", _callees(120), answered=110),
        ],
        [tuple(f"170123456{i:02d}" for i in range(3))],
    ),
    (
        "far apart in time, no link",
        [
            _sketch("13800000001", _callees(40), at_ms=0),
            _sketch("13800000002", _callees(40), at_ms=10 * DAY_MS),
        ],
        [],
    ),
    (
        "a rotation's one-call tail from the campaign's block joins it",
        [
            *_rotation("170123456", 4, _callees(160), 30, DAY_MS),
            _sketch("17012345699", ["13900000007"]),
        ],
        [(*(f"170123456{i:02d}" for i in range(4)), "17012345699")],
    ),
    (
        "a one-call number from another block does not join (too little evidence)",
        [
            *_rotation("170123456", 4, _callees(160), 30, DAY_MS),
            _sketch("13812345699", ["13900000007"]),
        ],
        [tuple(f"170123456{i:02d}" for i in range(4))],
    ),
    (
        "a five-call tail from elsewhere joins when most of its callees are the campaign's",
        [
            *_rotation("170123456", 4, _callees(160), 30, DAY_MS),
            _sketch("13812345699", [*_callees(3, 10), *_callees(2, 9000)], answered=4),
        ],
        [(*(f"170123456{i:02d}" for i in range(4)), "13812345699")],
    ),
    (
        "a subscriber who called two of the list among many others does not join",
        [
            *_rotation("170123456", 4, _callees(160), 30, DAY_MS),
            _sketch("13812345699", [*_callees(2, 10), *_callees(3, 9000)]),
        ],
        [tuple(f"170123456{i:02d}" for i in range(4))],
    ),
    (
        # Two stretches of one list, each linked inside, barely overlapping pairwise: the
        # smaller's callees are mostly the larger's, so they are one campaign.
        "a stretch whose numbers overlap each other more than the rest joins the campaign",
        [
            *_rotation("170123456", 5, _callees(150), 30, DAY_MS),
            _sketch("13800000001", [*_callees(14, 0), *_callees(6, 7000)]),
            _sketch("13800000002", [*_callees(14, 60), *_callees(6, 7000)]),
        ],
        [(*(f"170123456{i:02d}" for i in range(5)), "13800000001", "13800000002")],
    ),
    (
        "two campaigns working different lists stay two",
        [
            *_rotation("170123456", 5, _callees(150), 30, DAY_MS),
            *_rotation("170654321", 3, [*_callees(3, 140), *_callees(87, 7000)], 30, DAY_MS),
        ],
        [
            tuple(f"170123456{i:02d}" for i in range(5)),
            tuple(f"170654321{i:02d}" for i in range(3)),
        ],
    ),
]


@pytest.mark.parametrize(("name", "sketches", "expected"), CASES, ids=[c[0] for c in CASES])
def test_grouping(name: str, sketches: list[CallerSketch], expected: list[tuple[str, ...]]) -> None:
    groups = group(sketches, GroupingPolicy())
    assert sorted(g.members for g in groups) == sorted(tuple(sorted(e)) for e in expected), name


def test_grouping_and_ids_do_not_depend_on_order() -> None:
    sketches = _rotation("170123456", 6, _callees(200), 30, DAY_MS) + _rotation(
        "170654321", 4, _callees(150, 5000), 30, DAY_MS
    )
    first = group(sketches, GroupingPolicy())
    shuffled = sketches[:]
    random.Random(1).shuffle(shuffled)
    assert group(shuffled, GroupingPolicy()) == first
    assert len({g.campaign_id for g in first}) == 2
    # The id names the earliest member: it stays when a later number joins.
    grown = group(
        [*sketches, *_rotation("170123456", 7, _callees(200), 30, DAY_MS)[6:]], GroupingPolicy()
    )
    assert {g.campaign_id for g in grown} == {g.campaign_id for g in first}


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [(0, 10, 0.1), (1, 10, 0.1), (5, 10, 0.5), (10, 10, 0.5), (3, 20, 0.05), (40, 100, 0.3)],
)
def test_binomial_tail_matches_the_direct_sum(k: int, n: int, p: float) -> None:
    direct = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert math.exp(log_binomial_sf(k, n, p)) == pytest.approx(direct, rel=1e-9)


def _contacts(subscribers: range, at_ms: int) -> ExactContacts:
    return ExactContacts({s: (at_ms,) for s in subscribers})


T0 = 40 * DAY_MS  # first harassing calls from here on

RANK_CASES = [
    # (name, victims, businesses, population, expected ranking)
    (
        "the leaking business, not the popular one",
        {v: T0 for v in range(100)},
        {
            "95001": _contacts(range(0, 70), T0 - 5 * DAY_MS),  # 70% of victims, 70 of 10,000
            "95999": _contacts(range(0, 10_000, 3), T0 - 5 * DAY_MS),  # everyone's: 1 in 3
        },
        10_000,
        ["95001"],
    ),
    (
        "contacts after the first call or before the window do not count",
        {v: T0 for v in range(100)},
        {
            "95001": _contacts(range(0, 70), T0 + DAY_MS),
            "95002": _contacts(range(0, 70), T0 - 31 * DAY_MS),
        },
        10_000,
        [],
    ),
    (
        "too few victims: nothing reported",
        {v: T0 for v in range(19)},
        {"95001": _contacts(range(0, 19), T0 - DAY_MS)},
        10_000,
        [],
    ),
    (
        "two sources ranked by significance",
        {v: T0 for v in range(200)},
        {
            "95001": _contacts(range(0, 60), T0 - DAY_MS),
            "95002": _contacts(range(100, 200), T0 - DAY_MS),
        },
        10_000,
        ["95002", "95001"],
    ),
]


@pytest.mark.parametrize(
    ("name", "victims", "businesses", "population", "expected"),
    RANK_CASES,
    ids=[c[0] for c in RANK_CASES],
)
def test_rank(
    name: str,
    victims: dict[int, int],
    businesses: dict[str, ExactContacts],
    population: int,
    expected: list[str],
) -> None:
    ranked = rank(victims, businesses, population, LeakPolicy())
    assert [c.number for c in ranked] == expected, name


def test_a_candidate_carries_its_counts() -> None:
    [c] = rank(
        {v: T0 for v in range(100)},
        {"95001": _contacts(range(0, 70), T0 - DAY_MS)},
        10_000,
        LeakPolicy(),
    )
    assert (c.victims_contacted, c.victims, c.base_contacted, c.population) == (70, 100, 70, 10_000)
    assert c.victim_share == 0.7
    assert c.base_share == pytest.approx(71 / 10_002)
    assert c.lift == pytest.approx(0.7 / (71 / 10_002))
    assert c.log10_p < -50 and 0 <= c.p_value < 1e-50


@pytest.mark.parametrize(
    ("flagged", "share", "min_flagged", "expected"),
    [
        ({"a", "b"}, 0.5, 2, ("c", "d")),  # half of four flagged: the rest
        ({"a"}, 0.5, 2, ()),  # one is not enough
        ({"a", "b"}, 0.75, 2, ()),  # share not reached
        ({"a"}, 0.25, 1, ("b", "c", "d")),
        ({"a", "b", "c", "d"}, 0.5, 2, ()),  # all flagged already
        ({"a", "b", "x", "y"}, 0.5, 2, ("c", "d")),  # numbers outside the campaign do not count
        ({"x", "y", "z"}, 0.5, 2, ()),
    ],
)
def test_members_to_intercept(
    flagged: set[str], share: float, min_flagged: int, expected: tuple[str, ...]
) -> None:
    assert members_to_intercept(["a", "b", "c", "d"], flagged, share, min_flagged) == expected


def test_settled_sketches_fold_periods_into_the_offline_sketch() -> None:
    """The worker's per-period samples folded (streams.campaignwork.Settled) give the sketch the
    offline command builds from all calls at once, whatever the split into periods."""
    from streams.campaignwork import CALLS, Settled, calls_from_sample
    from streams.items import id_hash

    rng = random.Random(7)
    calls = [(f"139{rng.randrange(400):08d}", i * 60_000, rng.random() < 0.3) for i in range(900)]
    offline = SketchBuilder("17012345600")
    for callee, at, answered in calls:
        offline.add(keyed_hash(callee, KEY), at, answered)
    for cut in (1, 7, 50):
        settled = Settled()
        for part in (calls[i::cut] for i in range(cut)):
            settled.fold(
                sorted({keyed_hash(c, KEY) for c, _, _ in part})[:K],
                sorted((id_hash(f"id{at}"), a) for _, at, a in part)[:CALLS],
                [at for _, at, _ in part],
                [(keyed_hash(c, KEY), at) for c, at, _ in part],
            )
        assert settled.sketch("17012345600") == offline.freeze()
        assert len(settled.victims) == len({c for c, _, _ in calls})
    # Beyond CALLS calls in a period, the count is the bottom-k estimate.
    sample = sorted((id_hash(f"x{i}"), i % 2 == 0) for i in range(20_000))[:CALLS]
    estimated, answered_calls = calls_from_sample(sample)
    assert abs(estimated - 20_000) < 0.1 * 20_000 and abs(answered_calls / estimated - 0.5) < 0.06
