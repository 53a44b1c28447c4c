"""Scan's fast path (streams.fastscan) against the reference engine, its oracle.

Both paths scan the same file with the same fixed clock; the alerts (ids, times, evidence,
order: the whole JSON line) and the summary counts must be equal. Scenario seeds, generated
streams with late, duplicate and out-of-order records, and batch sizes from 1 to the whole
file.
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import Settings
from detectors.windows import WindowSpec
from streams import fastgate
from streams.cdr import CDR
from streams.factory import build_engines
from streams.fastgate import window_calls
from streams.fastscan import reference_forces
from streams.files import read_located
from streams.observe import caller_obs, derived_obs
from streams.scan import scan
from streams.tools.scenario import ScenarioSpec, generate_scenario
from streams.tools.simulate import write_jsonl

NOW_MS = int(datetime(2026, 11, 3, tzinfo=UTC).timestamp() * 1000)
DAY = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


@pytest.fixture(autouse=True)
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small gate slices (each with the rows before it as context) and a small filter, so the
    streaming gate's slicing and its filter's false hits are exercised at test sizes."""
    monkeypatch.setattr(fastgate, "SLICE_ROWS", 37)
    monkeypatch.setattr(fastgate, "FILTER_BITS", 1 << 20)
    monkeypatch.setattr(fastgate, "EXACT_MAX", 500)


def scan_both(
    path: Path, complaints: Path | None = None, **changes: object
) -> dict[str, tuple[str, Counter[str]]]:
    results = {}
    for way in ("reference", "fast"):
        base = Settings(redis=None).with_(scan_path=way, **changes)
        engine, derived = build_engines(base)
        engine.clock_ms = derived.clock_ms = lambda: NOW_MS
        out, err = io.StringIO(), io.StringIO()
        totals = asyncio.run(
            scan(
                engine,
                [str(path)],
                out,
                err,
                derived=derived,
                complaints=None if complaints is None else str(complaints),
            )
        )
        del totals["seconds_x1000"]
        results[way] = (out.getvalue(), totals)
    return results


def assert_same(results: dict[str, tuple[str, Counter[str]]]) -> None:
    assert results["fast"][1] == results["reference"][1]
    assert results["fast"][0].splitlines() == results["reference"][0].splitlines()


@pytest.mark.parametrize("seed", [1, 2])
def test_scenario_seeds_give_the_reference_alerts(tmp_path: Path, seed: int) -> None:
    spec = ScenarioSpec(start=DAY, seed=seed, subscribers=1200, hours=5, scale=0.3)
    path = tmp_path / "day.jsonl"
    write_jsonl(path, generate_scenario(spec).records)
    results = scan_both(path, chunk_records=3000)
    assert results["reference"][0].count("\n") > 10  # the scenario's offenders are found
    assert_same(results)


@pytest.mark.parametrize("batch", [1, 13, 400, 10**6])
def test_batch_sizes_give_the_reference_alerts(tmp_path: Path, batch: int) -> None:
    path = tmp_path / "s.jsonl"
    write_jsonl(path, burst_stream(seed=batch))
    results = scan_both(path, chunk_records=batch)
    assert "intercept" in results["reference"][0]
    assert_same(results)


def burst_stream(seed: int) -> list[dict[str, object]]:
    """A few quiet callers and two diallers crossing bulk dialling's 22 in 5 minutes, spread
    over two hours, with late, duplicated and spoofed records."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, object]] = []
    for n in range(400):
        dialler = n < 120
        caller = f"1390000000{n % 2}" if dialler else f"1380000{n % 40:04d}"
        at = DAY + timedelta(seconds=int(rng.integers(0, 600 if dialler else 7200)))
        out.append(record(f"b{n}", caller, f"1370000{n % 97:04d}", at, bool(rng.random() < 0.2)))
    for n in range(0, 400, 37):
        out.append(dict(out[n]))  # duplicates, later in the file
    out.append({**out[5], "attestation": "C"})
    # Out of order, each record at most 25 minutes behind the newest before it (the lateness
    # is 30): the scan's reorder buffer puts them back in order (streams.timeorder).
    jitter = rng.integers(0, 25 * 60, len(out))
    keys = [
        datetime.fromisoformat(str(r["start_time"])).timestamp() + j
        for r, j in zip(out, jitter, strict=True)
    ]
    return [r for _, r in sorted(zip(keys, out, strict=True), key=lambda kv: kv[0], reverse=False)]


def record(
    cdr_id: str, caller: str, callee: str, at: datetime, answered: bool
) -> dict[str, object]:
    return {
        "cdr_id": cdr_id,
        "caller": caller,
        "callee": callee,
        "start_time": at.isoformat(),
        "duration_s": 30 if answered else 0,
        "answered": answered,
    }


event = st.tuples(
    st.integers(0, 5),  # caller
    st.integers(0, 7),  # callee
    st.integers(0, 3 * 3600),  # start, seconds into the day
    st.booleans(),  # answered
    st.sampled_from(["", "", "", "A", "C"]),  # attestation
    st.integers(0, 40),  # copy of an earlier record (0-3: duplicate id, 4: same id, new time)
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(event, min_size=1, max_size=300),
    burst=st.integers(0, 60),
    batch=st.sampled_from([1, 7, 50, 10**6]),
)
def test_generated_streams_give_the_reference_alerts(
    tmp_path_factory: pytest.TempPathFactory,
    events: list[tuple[int, int, int, bool, str, int]],
    burst: int,
    batch: int,
) -> None:
    rows: list[dict[str, object]] = []
    # One caller bursting (one caller, many callees, some sequential): thresholds are crossed.
    for n in range(burst):
        at = DAY + timedelta(seconds=n * 7)
        rows.append(record(f"x{n}", "13912345678", f"1371111{n:04d}", at, n % 5 == 0))
    for n, (caller, callee, start_s, answered, attestation, copy) in enumerate(events):
        at = DAY + timedelta(seconds=start_s)
        row = record(f"e{n}", f"1380000{caller:04d}", f"1370000{callee:04d}", at, answered)
        if attestation:
            row["attestation"] = attestation
        if rows and copy < 4:
            row = dict(rows[copy * 997 % len(rows)])
        elif rows and copy == 4:
            row = {**rows[n % len(rows)], "start_time": at.isoformat()}
        rows.append(row)
    path = tmp_path_factory.mktemp("gen") / "g.jsonl"
    write_jsonl(path, rows)
    assert_same(scan_both(path, chunk_records=batch))


def test_complaints_and_an_allowlist_give_the_reference_alerts(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_jsonl(path, burst_stream(seed=3))
    reports = tmp_path / "complaints.jsonl"
    reports.write_text(
        '{"complaint_id": "c1", "number": "13800000003", "category": "fraud",'
        f' "reported_at": "{DAY.isoformat()}"}}\n'
    )
    allow = tmp_path / "allow.txt"
    allow.write_text("13900000001\n")
    results = scan_both(path, reports, chunk_records=100, allowlist_file=allow)
    assert results["reference"][1]["complaints"] == 1
    assert_same(results)


@pytest.mark.parametrize("batch", [1, 4, 10**6])
def test_a_stage_2_alert_on_the_last_record_is_released_by_the_last_progress(
    tmp_path: Path, batch: int
) -> None:
    """Stage 2 holds the observations at stage 1's front until the scan's last progress says
    the input is read (streams.reorder): the fast path must send it too."""
    rows = [record(f"q{n}", f"1380000{n:04d}", f"1370000{n:04d}", DAY, False) for n in range(5)]
    for n in range(10):  # the 10th call in 5 minutes bombs the victim: the file's last record
        at = DAY + timedelta(seconds=60 + n * 20)
        rows.append(record(f"v{n}", f"1390000000{n % 3}", "13711112222", at, False))
    path = tmp_path / "s.jsonl"
    write_jsonl(path, rows)
    results = scan_both(path, chunk_records=batch)
    assert '"call_bombing"' in results["reference"][0]
    assert_same(results)


def test_a_stage_2_hold_over_its_cap_gives_the_reference_alerts(tmp_path: Path) -> None:
    """The reference's stage 2 releases early beyond reorder_max_held; the fast path holds
    fewer, so it must see that coming and replay with the reference instead."""
    path = tmp_path / "s.jsonl"
    write_jsonl(path, burst_stream(seed=4))
    engine, _ = build_engines(Settings(redis=None))
    cdrs = sorted(
        (r for _, r in read_located(str(path), engine.numbering, engine.tz) if isinstance(r, CDR)),
        key=lambda r: r.start_ms,
    )
    batch = 13
    callers = [caller_obs(r, engine.trunks, engine.numbering) for r in cdrs]
    observed = [
        derived_obs(cdrs[i : i + batch], engine.trunks, 0, engine.numbering)
        for i in range(0, len(cdrs), batch)
    ]
    assert reference_forces(callers, observed, batch, cap=1)
    assert not reference_forces(callers, observed, batch, cap=len(cdrs) * 2)
    assert_same(scan_both(path, chunk_records=batch, reorder_max_held=1))


def test_window_calls_counts_the_window_ending_in_each_records_bucket() -> None:
    spec = WindowSpec("3m", 180, 60, False)
    index = np.array([0, 0, 0, 0, 1, 1], dtype=np.int64)
    starts = np.array([0, 59_000, 60_000, 200_000, 0, 190_000], dtype=np.int64)
    # subject 0: buckets 0,0,1,3 -> windows (-2..0)=2, (-2..0)=2, (-1..1)=3, (1..3)=2
    calls, known = window_calls(np.zeros(0, np.int64), index, starts, spec)
    assert calls.tolist() == [2, 2, 3, 2, 1, 1]
    assert known.tolist() == sorted(known.tolist()) and len(known) == 6
    # In two slices, the first's keys the second's context: the same counts.
    head, context = window_calls(np.zeros(0, np.int64), index[:3], starts[:3], spec)
    tail, _ = window_calls(context, index[3:], starts[3:], spec)
    assert head.tolist() + tail.tolist() == [2, 2, 3, 2, 1, 1]


@settings(max_examples=40, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 10**6)), min_size=1, max_size=300),
    copies=st.lists(st.integers(0, 10**6), max_size=20),
    bits=st.sampled_from([1 << 10, 1 << 14, 1 << 20, 0]),
)
def test_the_repeat_filter_never_misses_a_repeated_id(
    pairs: list[tuple[int, int]], copies: list[int], bits: int
) -> None:
    """Every subject with a repeated (subject, id) is gated, however small the filter (a false
    hit only gates more), across slices: the copies come after the rest, in later slices."""
    pairs = pairs + [pairs[c % len(pairs)] for c in copies]
    engine, _ = build_engines(Settings(redis=None))
    old = fastgate.FILTER_BITS, fastgate.SLICE_ROWS, fastgate.EXACT_MAX
    # A slice per add below; bits 0: the exact hashes throughout, else the filter from the
    # 20th hash on.
    fastgate.FILTER_BITS, fastgate.SLICE_ROWS = bits or 1 << 10, 1
    fastgate.EXACT_MAX = 10**9 if not bits else 20
    try:
        gate = fastgate.StageGate(engine, lambda k: "number", frozenset())
        obs = []
        for n, (s, i) in enumerate(pairs):
            start = NOW_MS - 10**10 + 7_200_000 * n  # two hours apart: no threshold is reached
            o = caller_obs(
                CDR(f"i{i}", f"1380{s:07d}", "13900139000", start, 0, False), (), engine.numbering
            )
            assert o is not None
            obs.append(o)
        for n in range(0, len(obs), 3):
            gate.add([o.subject for o in obs[n : n + 3]], obs[n : n + 3])
        gate.finish()
    finally:
        fastgate.FILTER_BITS, fastgate.SLICE_ROWS, fastgate.EXACT_MAX = old
    seen: set[tuple[int, int]] = set()
    repeated = set()
    for s, i in pairs:
        if (s, i) in seen:
            repeated.add(f"1380{s:07d}")
        seen.add((s, i))
    assert repeated <= gate.subjects()
    assert not len(gate.hot_pos)  # only repeats (and false hits) gate here
