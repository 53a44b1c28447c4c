"""Stage 2's canonical order (streams.reorder, docs/ordering.md): the same derived
observations, however the stage-1 partitions interleave, however they are batched, through 1, 2
or 4 engines taking partitions over from each other, give identical alerts (ids, event times,
evidence), and the alerts ``scan`` gives."""

from __future__ import annotations

import io
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.numbering import CHINA
from config.policy import load_policy
from config.settings import Settings
from streams.cdr import CDR
from streams.derived import decode_derived, derived_messages, progress_messages
from streams.engine import Engine
from streams.items import DERIVED_KINDS, Item
from streams.observe import Obs, derived_obs
from streams.reorder import FOREVER, Held, Progress, decode, encode, release, release_point
from streams.scan import scan
from streams.state.memory import MemoryStore
from streams.topics import partition_for
from tests.factories import T0, cdr, record_dict

SETTINGS = Settings()
TZ = ZoneInfo(SETTINGS.timezone)
POLICY = load_policy(SETTINGS.policy_file)
NOW_MS = (T0 + 30 * 86_400) * 1000
SOURCES = 3  # stage-1 partitions
DERIVED = 2  # derived partitions
VICTIM = "13811112222"


def traffic() -> list[CDR]:
    """Call bombing (twelve callers on one victim, many calls in the same second, raised,
    then cleared when a call comes after an hour's quiet) and a coordinated block (eight
    members of 137000000xx, 20 unanswered calls each in an hour, ties across members): the
    stage-2 alerts whose triggering record, hence ids, depend on the order."""
    cdrs: list[CDR] = []
    for i in range(12):
        bomber = f"1390000{i:04d}"
        for k in range(3):
            cdrs.append(cdr(bomber, T0 + 60 + k * 20 + (i % 4), 100 * i + k, callee=VICTIM))
    cdrs.append(cdr("13600000001", T0 + 3 * 3600, 1, callee=VICTIM, answered=True))
    for m in range(8):
        member = f"137000000{m:02d}"
        for k in range(20):
            cdrs.append(cdr(member, T0 + 600 + k * 150 + (m % 3), 1000 + 20 * m + k))
    cdrs.append(cdr("13700000099", T0 + 4 * 3600, 1))  # the block, quiet for an hour: cleared
    return sorted(cdrs, key=lambda c: c.start_ms)


def per_source(cdrs: list[CDR]) -> list[list[tuple[int, list[Obs]]]]:
    """Each source's CDRs one by one, as (front after it, its observations): keyed by caller,
    in event-time order, as stage 1 forwards them."""
    out: list[list[tuple[int, list[Obs]]]] = [[] for _ in range(SOURCES)]
    for c in cdrs:
        s = partition_for(c.caller.encode(), SOURCES)
        out[s].append((c.start_ms, derived_obs([c], SETTINGS.international_trunks, s, CHINA)))
    return out


def engine(store: MemoryStore) -> Engine:
    return Engine(
        SETTINGS, POLICY, store, clock_ms=lambda: NOW_MS, kinds=DERIVED_KINDS, sources=SOURCES
    )


def comparable(alerts: list[dict[str, Any]]) -> list[bytes]:
    """Everything of an alert but the wall clock, in a canonical order."""
    return sorted(orjson.dumps({k: v for k, v in a.items() if k != "detected_at"}) for a in alerts)


async def run(
    messages: list[tuple[int, bytes]], batches: list[int], workers: int, handover: int
) -> list[dict[str, Any]]:
    """Stage 2 over derived ``messages`` (target, value) in that order; each partition's
    messages cut into stage-2 batches of the drawn numbers of messages; partition p owned by engine
    ``p % workers`` until message ``handover``, then by the next one (a rebalance: the old
    owner forgets it, the new one loads it from the shared store)."""
    store = MemoryStore()
    engines = [engine(store) for _ in range(workers)]
    logs: dict[int, list[list[Item]]] = {p: [] for p in range(DERIVED)}
    for target, value in messages:
        offset = len(logs[target])  # offsets are per partition
        logs[target].append([(offset, item) for item in decode_derived(value)])
    alerts: list[dict[str, Any]] = []
    for p, log in logs.items():
        at, k = 0, 0
        owner = p % workers
        while at < len(log):
            size = batches[k % len(batches)]  # messages: the worker never cuts one
            k += 1
            if workers > 1 and at <= handover < at + size:
                engines[owner].forget(p)
                owner = (owner + 1) % workers
            chunk = [item for message in log[at : at + size] for item in message]
            at += size
            outcome = await engines[owner].process(p, chunk)
            alerts += [a.to_dict(TZ) for a in outcome.alerts]
    return alerts


def wire(
    sources: list[list[tuple[int, list[Obs]]]], order: list[int], cuts: list[int]
) -> list[tuple[int, bytes]]:
    """The derived messages of stage-1 batches: source ``order[i]`` sends its next batch of
    ``cuts[i % len(cuts)]`` CDRs; at the end every source tells it is idle."""
    pos = [0] * SOURCES
    messages: list[tuple[int, bytes]] = []
    for i, s in enumerate(order):
        take = sources[s][pos[s] : pos[s] + cuts[i % len(cuts)]]
        pos[s] += len(take)
        if take:
            observed = [o for _, obs in take for o in obs]
            messages += derived_messages(observed, s, DERIVED, take[-1][0])
    for s in range(SOURCES):
        assert pos[s] == len(sources[s])
        messages += progress_messages(s, DERIVED, sources[s][-1][0])
    return messages


def in_order(sources: list[list[tuple[int, list[Obs]]]]) -> list[tuple[int, bytes]]:
    """The reference: one source after the other, each in one batch."""
    return wire(sources, list(range(SOURCES)), [10_000])


REFERENCE: list[bytes] = []


async def reference() -> list[bytes]:
    if not REFERENCE:
        REFERENCE.extend(comparable(await run(in_order(per_source(traffic())), [10_000], 1, -1)))
    return REFERENCE


async def test_the_reference_has_the_alerts_that_depend_on_order() -> None:
    ref = [orjson.loads(a) for a in await reference()]
    kinds = {(a["detector"], a["state"]) for a in ref}
    assert {
        ("call_bombing", "raised"),
        ("call_bombing", "cleared"),
        ("coordinated_block", "raised"),
        ("coordinated_block", "cleared"),
    } <= kinds, kinds
    members = [a for a in ref if a["detector"] == "coordinated_block" and a["subject"] == "number"]
    assert len(members) >= 5


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), workers=st.sampled_from([1, 2, 4]))
async def test_any_interleaving_batching_and_workers_give_the_same_alerts(
    data: st.DataObject, workers: int
) -> None:
    sources = per_source(traffic())
    cuts = data.draw(st.lists(st.integers(1, 40), min_size=1, max_size=6), label="stage-1 cuts")
    steps = sum(len(s) for s in sources)  # enough turns for any cut sizes
    order = data.draw(
        st.lists(st.integers(0, SOURCES - 1), min_size=steps, max_size=steps), label="order"
    )
    order += [s for s in range(SOURCES) for _ in range(len(sources[s]))]  # then drain all
    batches = data.draw(st.lists(st.integers(1, 60), min_size=1, max_size=5), label="batches")
    handover = data.draw(st.integers(0, 200), label="handover")
    alerts = await run(wire(sources, order, cuts), batches, workers, handover)
    assert comparable(alerts) == await reference()


def late_per_source(cdrs: list[CDR]) -> list[list[tuple[int, list[Obs]]]]:
    """Like ``per_source``, but every fifth CDR delivered ten minutes late (within the allowed
    lateness): each observation carries its source's front before it, as stage 1 sends it."""
    late = [(c.start_ms + (600_000 if i % 5 == 2 else 0), i, c) for i, c in enumerate(cdrs)]
    out: list[list[tuple[int, list[Obs]]]] = [[] for _ in range(SOURCES)]
    fronts = [0] * SOURCES
    for _, _, c in sorted(late, key=lambda x: (x[0], x[1])):
        s = partition_for(c.caller.encode(), SOURCES)
        observed = derived_obs([c], SETTINGS.international_trunks, s, CHINA, [fronts[s]])
        fronts[s] = max(fronts[s], c.start_ms)
        out[s].append((fronts[s], observed))
    return out


LATE_REFERENCE: list[bytes] = []


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), workers=st.sampled_from([1, 2]))
async def test_late_records_take_the_same_place_whatever_the_timing(
    data: st.DataObject, workers: int
) -> None:
    """A late CDR is placed at its source's front when it was read (``Obs.after_ms``), which
    the timing does not change: the same alerts however the sources interleave and batch."""
    sources = late_per_source(traffic())
    assert any(o.after_ms for s in sources for _, obs in s for o in obs)  # some are late
    if not LATE_REFERENCE:
        LATE_REFERENCE.extend(comparable(await run(in_order(sources), [10_000], 1, -1)))
    cuts = data.draw(st.lists(st.integers(1, 40), min_size=1, max_size=6), label="stage-1 cuts")
    steps = sum(len(s) for s in sources)
    order = data.draw(
        st.lists(st.integers(0, SOURCES - 1), min_size=steps, max_size=steps), label="order"
    )
    order += [s for s in range(SOURCES) for _ in range(len(sources[s]))]
    batches = data.draw(st.lists(st.integers(1, 60), min_size=1, max_size=5), label="batches")
    handover = data.draw(st.integers(0, 200), label="handover")
    alerts = await run(wire(sources, order, cuts), batches, workers, handover)
    assert comparable(alerts) == LATE_REFERENCE


async def test_stage1_tells_each_admitted_cdr_its_front_before_it() -> None:
    callers = Engine(SETTINGS, POLICY, MemoryStore(), clock_ms=lambda: NOW_MS)
    a, b, c = (cdr("13812345678", T0 + t, t, callee="13900000001") for t in (100, 400, 200))
    first = await callers.process(0, [(0, a)])
    second = await callers.process(0, [(1, b), (2, c)])
    assert first.fronts == [0] and second.fronts == [a.start_ms, b.start_ms]
    (late, *_) = derived_obs(second.admitted, (), 0, CHINA, second.fronts)[2:]
    assert late.cdr_id == c.cdr_id and late.order_ms == b.start_ms > late.start_ms


async def test_only_progress_moves_a_source_front() -> None:
    """An observation can start past its source's promise (a spoofed call does not move stage
    1's front): releasing up to it would put the source's next, earlier-placed observation
    after it."""
    stage2 = engine(MemoryStore())
    messages = [
        *[m for s in (1, 2) for m in progress_messages(s, 1, 5_000_000)],
        *derived_messages([obs(1000, "a"), obs(1001, "b")], 0, 1, 500_000),
        *derived_messages([obs(600, "c")], 0, 1, 1_200_000),
    ]
    released = []
    for offset, (_, value) in enumerate(messages):
        items = [(offset, item) for item in decode_derived(value)]
        released += [o.cdr_id for o in (await stage2.process(0, items)).released]
    assert released == ["c", "a", "b"]


async def test_a_restart_resumes_the_held_observations() -> None:
    """Everything held back is stored with the offset: a fresh engine on the same store (a
    worker restarted) goes on in the same order."""
    sources = per_source(traffic())
    messages = wire(sources, [0, 1, 2] * 200, [7])
    store = MemoryStore()
    alerts: list[dict[str, Any]] = []
    offsets = dict.fromkeys(range(DERIVED), 0)
    for i, (target, value) in enumerate(messages):
        worker = engine(store)  # a new process for every message
        items = [(offsets[target], item) for item in decode_derived(value)]
        offsets[target] += 1
        out = await worker.process(target, items)
        alerts += [a.to_dict(TZ) for a in out.alerts]
        if i == len(messages) // 2:
            metas = [await store.load_meta(p) for p in offsets]
            assert any(decode(meta.held).observations for meta in metas)
    assert comparable(alerts) == await reference()


async def test_scan_gives_the_same_stage2_alerts(tmp_path: Any) -> None:
    path = tmp_path / "cdrs.jsonl"
    path.write_bytes(b"".join(orjson.dumps(record_dict(c)) + b"\n" for c in traffic()))
    callers = Engine(SETTINGS, POLICY, MemoryStore(), clock_ms=lambda: NOW_MS)
    subjects = Engine(SETTINGS, POLICY, MemoryStore(), clock_ms=lambda: NOW_MS, kinds=DERIVED_KINDS)
    out = io.StringIO()
    await scan(callers, [str(path)], out, io.StringIO(), subjects)
    scanned = [orjson.loads(line) for line in out.getvalue().splitlines()]
    stage2 = {orjson.loads(a)["detector"] for a in await reference()}
    assert comparable([a for a in scanned if a["detector"] in stage2]) == await reference()


# ------------------------------------------------------------------ the pure release step


def obs(start_s: int, cdr_id: str, source: int = 0) -> Obs:
    return Obs("callee", VICTIM, cdr_id, start_s * 1000, False, 0, -1, "139", source)


def test_release_point_waits_for_every_source_and_skips_idle_ones() -> None:
    assert release_point({0: 5, 1: 9}, frozenset(), 3) is None
    assert release_point({0: 5, 1: 9, 2: 7}, frozenset(), 3) == 5
    assert release_point({0: 5, 1: 9, 2: 7}, frozenset({0}), 3) == 7
    assert release_point({0: 5, 1: 9}, frozenset({0, 1}), 2) == FOREVER


def test_release_is_strictly_before_the_point_in_canonical_order() -> None:
    held = [obs(3, "b"), obs(1, "z"), obs(3, "a"), obs(2, "c")]
    ready, still, forced = release(held, 3000, cap=100)
    assert [o.cdr_id for o in ready] == ["z", "c"]  # a later source may still send 3 s
    assert [o.cdr_id for o in still] == ["a", "b"] and forced == 0
    ready, still, forced = release(held, None, cap=1)
    assert [o.cdr_id for o in ready] == ["z", "c", "a"] and forced == 3  # over the cap


def test_held_round_trips() -> None:
    held = Held((obs(1, "x", 2), obs(2, "y", 0)), frozenset({1}))
    assert decode(encode(held)) == held
    assert encode(Held()) == b"" and decode(b"") == Held()


@pytest.mark.parametrize("idle", [False, True])
def test_progress_is_read_after_the_observations(idle: bool) -> None:
    o = obs(1, "x", 4)
    ((_, value),) = derived_messages([o], 4, 1, 1000, idle)
    assert decode_derived(value) == [o, Progress(4, 1000, idle)]
