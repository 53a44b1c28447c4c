"""Stage 1's re-keying (README "Batches and partitions"): CDRs admitted on a partition other
than their caller's are moved there, applied to the one state of their caller through a second,
separately fenced input, and give the alerts keyed input gives."""

from __future__ import annotations

from dataclasses import replace

import pytest

from config.policy import load_policy
from config.settings import Settings
from detectors.alerts import Alert
from streams.cdr import CDR, Reject
from streams.engine import SOURCE_IDLE_MS, Engine
from streams.items import Item, Rekeyed
from streams.rekey import decode_rekeyed, rekeyed_messages
from streams.state.base import StaleOffset
from streams.state.memory import MemoryStore
from streams.topics import partition_for
from tests.factories import T0, dial

PARTITIONS = 4
SETTINGS = Settings(allowlist_file=None)
NOW_MS = (T0 + 30 * 86_400) * 1000


def caller_on(partition: int, base: int = 17012345000) -> str:
    """A caller whose number hashes to ``partition``."""
    n = base
    while partition_for(str(n).encode(), PARTITIONS) != partition:
        n += 1
    return str(n)


def engine(clock: list[int] | None = None) -> Engine:
    now = clock or [NOW_MS]
    return Engine(
        SETTINGS,
        load_policy(SETTINGS.policy_file),
        MemoryStore(),
        clock_ms=lambda: now[0],
        rekey_partitions=PARTITIONS,
    )


def ids(alerts: list[Alert]) -> list[str]:
    return [a.alert_id for a in alerts]


def rekeyed_items(moved: list[CDR], source: int, target: int, first: int = 0) -> list[Item]:
    """The repartition messages for ``target`` as the worker would read them."""
    items: list[Item] = []
    messages = [v for t, v in rekeyed_messages(moved, source, PARTITIONS) if t == target]
    for offset, value in enumerate(messages, first):
        items.extend((offset, rec) for rec in decode_rekeyed(value))
    return items


async def test_moved_cdrs_raise_the_alerts_keyed_input_raises() -> None:
    dialler = caller_on(2)
    calls = dial(dialler, 260, 2000)
    keyed = engine()
    want = await keyed.process(2, list(enumerate(calls)))
    assert want.alerts  # a bulk dialler

    moving = engine()
    arrived = await moving.process(0, list(enumerate(calls)))  # arrived on partition 0
    assert arrived.moved == calls and arrived.accepted == 0 and arrived.alerts == []
    assert arrived.admitted == calls  # stage 2 gets them once, from where they arrived
    applied = await moving.process(2, rekeyed_items(arrived.moved, 0, 2), rekeyed=True)
    assert applied.accepted == len(calls) and applied.admitted == [] and applied.moved == []
    assert ids(applied.alerts) == ids(want.alerts)


async def test_aligned_cdrs_take_the_fast_path() -> None:
    calls = dial(caller_on(1), 50, 600)
    out = await engine().process(1, list(enumerate(calls)))
    assert out.moved == [] and out.accepted == 50


async def test_both_inputs_fence_separately_on_one_state() -> None:
    """A caller's records from both inputs land in one state; each input skips its own
    replays; a write computed from a state the other input has since changed is refused."""
    caller = caller_on(3)
    calls = dial(caller, 40, 1200)
    eng = engine()
    direct, moved = calls[::2], calls[1::2]
    await eng.process(3, list(enumerate(direct)))
    items = rekeyed_items(moved, 1, 3)
    await eng.process(3, items, rekeyed=True)
    meta = await eng.store.load_meta(3)
    assert (meta.offset, meta.rekeyed) == (len(direct) - 1, items[-1][0])
    assert (await eng.process(3, items, rekeyed=True)).replayed == len(moved)  # redelivered
    assert (await eng.process(3, list(enumerate(direct)))).replayed == len(direct)
    state = await eng.store.read(3, [caller], 0)
    assert state.windows[caller] is not None  # one key for the caller, whichever input

    # Two writers (a zombie owner, a stale cache): one prepares on the CDR input, the other
    # input commits first; the first write must fail rather than undo the second.
    later = dial(caller, 2, 10, start_s=T0 + 1300)
    stale = await eng.prepare(3, [(len(direct), later[0])])
    await eng.process(3, rekeyed_items([later[1]], 1, 3, first=items[-1][0] + 1), rekeyed=True)
    with pytest.raises(StaleOffset):
        await eng.commit(stale)


async def test_admission_happens_where_a_cdr_arrived() -> None:
    late = dial(caller_on(2), 1, 1, start_s=T0)
    eng = engine()
    await eng.process(0, list(enumerate(dial(caller_on(0), 1, 1, start_s=T0 + 7200))))
    out = await eng.process(0, [(1, late[0])])
    assert [r.reason for _, r in out.rejects] == ["too_late"] and out.moved == []


async def test_a_source_that_stops_sending_stops_holding_the_watermark() -> None:
    clock = [NOW_MS]
    eng = engine(clock)
    mine = caller_on(2)
    await eng.process(2, rekeyed_items(dial(caller_on(2, 17099999000), 1, 1), 0, 2), rekeyed=True)
    # Partition 2's own traffic goes on for hours; source 0 sent once and fell silent.
    out = await eng.process(2, list(enumerate(dial(mine, 10, 3600 * 5, start_s=T0 + 3600))))
    assert out.watermark_ms == T0 * 1000 - SETTINGS.allowed_lateness_s * 1000  # held back
    clock[0] += SOURCE_IDLE_MS
    later = dial(mine, 1, 1, start_s=T0 + 6 * 3600)
    out = await eng.process(2, [(10, later[0])])
    assert out.watermark_ms == later[0].start_ms - SETTINGS.allowed_lateness_s * 1000


def test_the_wire_keeps_every_field_and_sends_one_message_per_target() -> None:
    calls = [
        replace(c, release_cause=16, ingress_trunk="intl-1", attestation="A")
        for p in range(PARTITIONS)
        for c in dial(caller_on(p), 3, 10)
    ]
    messages = rekeyed_messages(calls, 0, PARTITIONS)
    assert sorted(t for t, _ in messages) == list(range(PARTITIONS))
    back = [rec for _, v in messages for rec in decode_rekeyed(v)]
    assert sorted(r.cdr.cdr_id for r in back if isinstance(r, Rekeyed)) == sorted(
        c.cdr_id for c in calls
    )
    assert {r.cdr for r in back if isinstance(r, Rekeyed)} == set(calls)
    for bad in (b"{", b"[1]", b'[1, {"a": 1}]', b"[1, [[1, 2]]]"):
        assert all(isinstance(r, Reject) for r in decode_rekeyed(bad))
