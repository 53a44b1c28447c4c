"""Complaint reports: parsing, the stored per-number list, and their effect on detection."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from config.numbering import CHINA
from config.policy import load_policy
from config.settings import Settings
from streams.cdr import CDR, Reject
from streams.complaints import (
    CATEGORIES,
    MAX_PER_NUMBER,
    Complaint,
    active,
    decode_complaints,
    merge,
    parse_complaint,
    record,
)
from streams.engine import Engine
from streams.items import Outcome
from streams.state.memory import MemoryStore
from tests.factories import T0

DAY_MS = 86_400_000
HORIZON_MS = 30 * DAY_MS
NOW_MS = (T0 + 30 * 86_400) * 1000
GOOD = {
    "complaint_id": "12321-0001",
    "number": "+86 170 1234 5678",
    "category": "loan_finance",
    "reported_at": "2026-11-02T08:00:00+08:00",
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"complaint_id": ""}, "bad_id"),
        ({"complaint_id": 7}, "bad_id"),
        ({"complaint_id": "x" * 129}, "bad_id"),
        ({"number": "call me"}, "bad_number"),
        ({"number": 17012345678}, "bad_number"),
        ({"number": "1" * 41}, "bad_number"),
        ({"category": "spam"}, "bad_type"),
        ({"category": None}, "bad_type"),
        ({"reported_at": "yesterday"}, "bad_time"),
        ({"reported_at": "2026-11-02T08:00:00"}, "bad_time"),  # no offset
        ({"reported_at": 1.0}, "bad_time"),  # 1970
    ],
)
def test_parse_complaint(change: dict[str, Any], reason: str | None) -> None:
    got = parse_complaint({**GOOD, **change}, CHINA)
    if reason is None:
        assert got == Complaint("12321-0001", "17012345678", "loan_finance", 1_793_577_600_000)
    else:
        assert isinstance(got, Reject) and got.reason == reason
        assert "1701234" not in got.detail  # reasons never carry the number


@pytest.mark.parametrize(
    ("value", "reasons"),
    [
        (orjson.dumps(GOOD), [None]),
        (orjson.dumps([GOOD, {**GOOD, "category": "x"}]), [None, "bad_type"]),
        (b"{nope", ["malformed_json"]),
        (b"", ["malformed_json"]),
        (b"[1]", ["not_an_object"]),
    ],
)
def test_decode_complaints(value: bytes, reasons: list[str | None]) -> None:
    got = decode_complaints(value, CHINA)
    assert [r.reason if isinstance(r, Reject) else None for r in got] == reasons


def complaint(n: int, at_ms: int, category: str = "fraud") -> Complaint:
    return Complaint(f"c{n}", "17012345678", category, at_ms)


def test_merge_counts_each_report_once_and_keeps_the_newest() -> None:
    blob = merge(None, [complaint(1, 1000), complaint(2, 2000)], HORIZON_MS)
    again = merge(blob, [complaint(1, 1000)], HORIZON_MS)  # redelivered
    assert again == blob
    many = merge(blob, [complaint(n, 3000 + n) for n in range(3, 20)], HORIZON_MS)
    assert len(orjson.loads(many)) == MAX_PER_NUMBER
    assert orjson.loads(many)[-1][1] == 3019


def test_merge_drops_reports_beyond_the_horizon_of_the_newest() -> None:
    blob = merge(None, [complaint(1, 0), complaint(2, HORIZON_MS + 5)], HORIZON_MS)
    assert [e[1] for e in orjson.loads(blob)] == [HORIZON_MS + 5]


@pytest.mark.parametrize(
    ("at_ms", "count", "category"),
    [
        (999, 0, None),  # before any report: reports never act on earlier calls
        (1000, 1, "fraud"),
        (5000, 2, "debt_collection"),  # the latest report names the category
        (1000 + HORIZON_MS, 2, "debt_collection"),
        (5001 + HORIZON_MS, 0, None),  # all beyond the horizon
    ],
)
def test_active_reports_at_an_event_time(at_ms: int, count: int, category: str | None) -> None:
    blob = merge(None, [complaint(1, 1000), complaint(2, 5000, "debt_collection")], HORIZON_MS)
    got = active(blob, at_ms, HORIZON_MS)
    assert (got.count, got.category) == (count, category)


class RacyStore(MemoryStore):
    """Another writer changes the list between our read and our swap, twice."""

    def __init__(self) -> None:
        super().__init__()
        self.races = 2

    async def swap_complaints(
        self, partition: int, expected: dict[str, bytes | None], new: dict[str, bytes]
    ) -> bool:
        if self.races:
            self.races -= 1
            current = await self.complaint_blobs(partition, ["17012345678"])
            other = merge(current["17012345678"], [complaint(100 + self.races, 500)], HORIZON_MS)
            assert await super().swap_complaints(partition, current, {"17012345678": other})
        return await super().swap_complaints(partition, expected, new)


async def test_record_retries_a_race_and_loses_nothing() -> None:
    store = RacyStore()
    await record(store, 0, [complaint(1, 1000)], HORIZON_MS)
    blob = (await store.complaint_blobs(0, ["17012345678"]))["17012345678"]
    assert blob is not None
    assert active(blob, 2000, HORIZON_MS).count == 3  # both racers' reports and ours


def burst(caller: str, calls: int, start_s: int) -> list[CDR]:
    rng = random.Random(caller)
    return [
        CDR(
            f"{caller}-{i}",
            caller,
            f"13{rng.randrange(10**9):09d}",
            (start_s + i * 12) * 1000,
            0,
            False,
        )
        for i in range(calls)
    ]


async def run(calls: list[CDR], reports: list[Complaint]) -> Outcome:
    settings = Settings()
    engine = Engine(
        settings, load_policy(settings.policy_file), MemoryStore(), clock_ms=lambda: NOW_MS
    )
    await record(engine.store, 0, reports, HORIZON_MS)
    return await engine.process(0, list(enumerate(calls)))


@pytest.mark.parametrize("category", CATEGORIES)
async def test_a_reported_number_is_flagged_earlier_with_the_reported_category(
    category: str,
) -> None:
    calls = burst("13612345678", 18, T0)  # 18 in 4 minutes: under 22 in 5m, over 22 * 0.7
    assert not (await run(calls, [])).alerts
    report = Complaint("r1", "13612345678", category, (T0 - 3600) * 1000)
    alerts = (await run(calls, [report])).alerts
    assert [(a.detector, a.action, a.category) for a in alerts] == [
        ("bulk_dialling", "intercept", category)
    ]
    assert alerts[0].evidence["complaints"] == 1
    assert alerts[0].reasons[-1] == f"1 complaint report(s), latest: {category}"


async def test_a_report_made_after_the_calls_does_not_act_on_them() -> None:
    calls = burst("13612345678", 18, T0)
    report = Complaint("r1", "13612345678", "fraud", (T0 + 3600) * 1000)
    assert not (await run(calls, [report])).alerts
