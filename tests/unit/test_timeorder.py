"""Scan's bounded reorder buffer (streams.timeorder): the global sort's order and alerts
whenever records are at most the allowed lateness late, too_late rejects beyond it."""

from __future__ import annotations

import asyncio
import io
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.numbering import CHINA
from config.settings import Settings
from streams import fastgate
from streams.cdr import CDR, Reject
from streams.factory import build_engines
from streams.files import RejectLog, read_located
from streams.items import Outcome
from streams.scan import _count, replay_reference, scan
from streams.timeorder import in_time_order
from streams.tools.scenario import ScenarioSpec, generate_scenario

NOW_MS = int(datetime(2026, 11, 3, tzinfo=UTC).timestamp() * 1000)
DAY = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
LATENESS_MS = Settings(redis=None).allowed_lateness_s * 1000
T0 = 1_793_581_200_000


@pytest.fixture(autouse=True)
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path's gate in small slices (streams.fastgate), as at scale."""
    monkeypatch.setattr(fastgate, "SLICE_ROWS", 37)


def cdr(n: int, start_ms: int) -> CDR:
    return CDR(f"c{n}", "13800138000", "13900139000", start_ms, 0, False)


def jittered(starts: list[int], bound_ms: int, seed: int) -> list[int]:
    """Positions of ``starts`` in an order where each is at most ``bound_ms`` behind the newest
    before it: sorted by start plus a random delay below the bound."""
    rng = random.Random(seed)
    keys = [s + rng.randrange(bound_ms) for s in starts]
    return sorted(range(len(starts)), key=lambda i: keys[i])


@settings(max_examples=60, deadline=None)
@given(
    starts=st.lists(st.integers(0, 4 * 3600_000), max_size=300),
    seed=st.integers(0, 1000),
    ties=st.booleans(),
)
def test_records_at_most_the_lateness_late_come_out_as_the_stable_sort(
    starts: list[int], seed: int, ties: bool
) -> None:
    if ties:  # many equal starts: the file order must decide
        starts = [s // 600_000 * 600_000 for s in starts]
    order = jittered(starts, LATENESS_MS + 1, seed)  # a record exactly the lateness late: kept
    located = [(line, cdr(i, T0 + starts[i])) for line, i in enumerate(order, 1)]
    rejected: list[tuple[int, int, Reject]] = []
    got = list(in_time_order([located], LATENESS_MS, lambda *r: rejected.append(r)))
    assert rejected == []
    assert got == sorted((r for _, r in located), key=lambda r: r.start_ms)


def test_a_record_later_than_the_lateness_is_rejected_too_late_with_its_line() -> None:
    located: list[tuple[int, CDR | Reject]] = [
        (1, cdr(1, T0)),
        (2, cdr(2, T0 + LATENESS_MS + 60_000)),
        (3, Reject("bad_id", "x")),
        (4, cdr(3, T0 + 30_000)),  # 31 minutes behind the newest: too late
        (5, cdr(4, T0 + 60_000)),  # exactly the lateness behind: kept
    ]
    rejected: list[tuple[int, int, Reject]] = []
    got = list(in_time_order([located], LATENESS_MS, lambda *r: rejected.append(r)))
    assert [r.cdr_id for r in got] == ["c1", "c4", "c2"]
    assert [(line, r.reason) for _, line, r in rejected] == [(3, "bad_id"), (4, "too_late")]


def test_files_are_merged_whatever_their_order_ties_in_argument_order() -> None:
    late_day = [(n, cdr(100 + n, T0 + 86_400_000 + n * 1000)) for n in range(1, 50)]
    early_day = [(n, cdr(n, T0 + n * 1000)) for n in range(1, 50)]
    tie = [(1, cdr(999, T0 + 1000))]
    got = list(in_time_order([late_day, early_day, tie], LATENESS_MS, lambda *r: None))
    assert got[:3] == [early_day[0][1], tie[0][1], early_day[1][1]]
    everything = [r for _, r in late_day + early_day + tie]
    assert got == sorted(everything, key=lambda r: r.start_ms)  # stable: argument order


def test_the_buffer_holds_only_what_is_within_the_lateness() -> None:
    # 20 hours, a record a second, each up to 29 minutes out of place.
    starts = [n * 1000 for n in range(72_000)]
    order = jittered(starts, 29 * 60_000, 7)
    read = released = held = 0

    def source() -> object:
        nonlocal read
        for line, i in enumerate(order, 1):
            read += 1
            yield line, cdr(i, T0 + starts[i])

    for _ in in_time_order([source()], LATENESS_MS, lambda *r: None):  # type: ignore[list-item]
        released += 1
        held = max(held, read - released)
    assert released == len(starts)
    # At most the records of the lateness plus the jitter (59 minutes at one a second).
    assert 1800 <= held <= 59 * 60 + 1


def write_rows(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def global_sort_scan(paths: list[Path], **changes: object) -> tuple[str, Counter[str]]:
    """The scan as it was before streaming: every file read whole, one stable sort, the
    reference replay (the oracle)."""
    engine, derived = build_engines(Settings(redis=None).with_(**changes))
    engine.clock_ms = derived.clock_ms = lambda: NOW_MS
    totals: Counter[str] = Counter()
    records: list[CDR] = []
    for path in paths:
        for _, rec in read_located(str(path), CHINA, engine.tz):
            if isinstance(rec, Reject):
                totals[f"rejected:{rec.reason}"] += 1
            else:
                records.append(rec)
    totals["read"] = len(records) + sum(totals.values())
    records.sort(key=lambda r: r.start_ms)
    out = io.StringIO()

    def emit(outcome: Outcome, stage: int) -> None:
        _count(outcome, totals, out, engine, stage)

    asyncio.run(replay_reference(engine, derived, records, emit))
    return out.getvalue(), totals


def streaming_scan(
    paths: list[Path], rejects: io.StringIO | None = None, **changes: object
) -> dict[str, tuple[str, Counter[str]]]:
    results = {}
    for way in ("reference", "fast"):
        engine, derived = build_engines(Settings(redis=None).with_(scan_path=way, **changes))
        engine.clock_ms = derived.clock_ms = lambda: NOW_MS
        out = io.StringIO()
        log = None if rejects is None else RejectLog(rejects)
        totals = asyncio.run(
            scan(engine, [str(p) for p in paths], out, io.StringIO(), derived, rejects=log)
        )
        del totals["seconds_x1000"]
        results[way] = (out.getvalue(), totals)
    return results


def shuffled_within_lateness(rows: list[dict[str, object]], seed: int) -> list[dict[str, object]]:
    starts = [int(datetime.fromisoformat(str(r["start_time"])).timestamp() * 1000) for r in rows]
    return [rows[i] for i in jittered(starts, LATENESS_MS, seed)]


def scenario_rows(seed: int) -> list[dict[str, object]]:
    spec = ScenarioSpec(start=DAY, seed=seed, subscribers=1200, hours=5, scale=0.3)
    return [dict(r) for r in generate_scenario(spec).records]


def test_scenario_seeds_out_of_order_within_the_lateness_give_the_global_sorts_alerts(
    tmp_path: Path,
) -> None:
    for seed in (1, 2):
        rows = scenario_rows(seed)
        rows += [dict(r) for r in rows[::97]]  # duplicates, moved near their copies below
        rows = shuffled_within_lateness(rows, seed)
        # Two files, the later hours first on the command line: they are merged.
        half = len(rows) // 2
        first, second = tmp_path / f"a{seed}.jsonl", tmp_path / f"b{seed}.jsonl"
        write_rows(first, rows[half:])
        write_rows(second, rows[:half])
        oracle = global_sort_scan([first, second], chunk_records=3000)
        assert oracle[0].count("\n") > 10
        for way, (alerts, totals) in streaming_scan([first, second], chunk_records=3000).items():
            assert totals == oracle[1], way
            assert alerts.splitlines() == oracle[0].splitlines(), way


event = st.tuples(
    st.integers(0, 5),  # caller
    st.integers(0, 7),  # callee
    st.integers(0, 3 * 3600),  # start, seconds into the day
    st.booleans(),  # answered
    st.integers(0, 30),  # 0-2: a copy of an earlier record (a duplicate)
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(event, min_size=1, max_size=250),
    burst=st.integers(0, 60),
    batch=st.sampled_from([1, 7, 50, 10**6]),
    seed=st.integers(0, 100),
)
def test_generated_streams_within_the_lateness_give_the_global_sorts_alerts(
    tmp_path_factory: object,
    events: list[tuple[int, int, int, bool, int]],
    burst: int,
    batch: int,
    seed: int,
) -> None:
    rows: list[dict[str, object]] = []
    for n in range(burst):
        at = DAY.timestamp() + n * 7
        rows.append(row(f"x{n}", "13912345678", f"1371111{n:04d}", at, n % 5 == 0))
    for n, (caller, callee, start_s, answered, copy) in enumerate(events):
        if rows and copy < 3:
            rows.append(dict(rows[(n * 31) % len(rows)]))
        else:
            at = DAY.timestamp() + start_s
            rows.append(row(f"e{n}", f"1380000{caller:04d}", f"1370000{callee:04d}", at, answered))
    path = tmp_path_factory.mktemp("gen") / "g.jsonl"  # type: ignore[attr-defined]
    write_rows(path, shuffled_within_lateness(rows, seed))
    oracle = global_sort_scan([path], chunk_records=batch)
    for way, got in streaming_scan([path], chunk_records=batch).items():
        assert got[1] == oracle[1], way
        assert got[0].splitlines() == oracle[0].splitlines(), way


def row(cdr_id: str, caller: str, callee: str, at: float, answered: bool) -> dict[str, object]:
    return {
        "cdr_id": cdr_id,
        "caller": caller,
        "callee": callee,
        "start_time": datetime.fromtimestamp(at, UTC).isoformat(),
        "duration_s": 30 if answered else 0,
        "answered": answered,
    }


def test_records_later_than_the_lateness_are_counted_and_logged_not_lost(tmp_path: Path) -> None:
    rows = [
        row(f"r{n}", "13800138000", f"1390013{n:04d}", DAY.timestamp() + n * 60, True)
        for n in range(60)
    ]
    rows.append(row("old", "13800138001", "13900139999", DAY.timestamp(), True))  # 59 min late
    path = tmp_path / "late.jsonl"
    write_rows(path, rows)
    log = io.StringIO()
    for way, (_, totals) in streaming_scan([path], rejects=log).items():
        assert totals["rejected:too_late"] == 1, way
        assert totals["read"] == 61 and totals["accepted"] == 60, way
    assert log.getvalue().splitlines() == [f"{path}:61 too_late: {TOO_LATE_DETAIL}"] * 2


TOO_LATE_DETAIL = "older than allowed lateness behind the file's newest record"
