"""One contract, two stores: the in-process store and a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from config.numbering import CHINA
from config.policy import load_policy
from config.settings import Settings
from streams.circles import Circles, RedisCircles
from streams.engine import Engine
from streams.items import DERIVED_KINDS
from streams.observe import derived_obs
from streams.state.base import Changes, NumberState, PartitionMeta, StaleOffset, Store
from streams.state.blob import windows_blob
from streams.state.memory import MemoryStore
from streams.state.redis import RedisStore
from tests.factories import T0, cdr, derived_batch, dial

NOW_MS = (T0 + 30 * 86_400) * 1000


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url = request.getfixturevalue("redis_url")
    redis_store = RedisStore.from_url(
        url, prefix=f"t{unique}", window_ttl_ms=90_000_000, partition_ttl_ms=600_000_000
    )
    yield redis_store
    # Only this test's keys: the Redis may be a shared one named by DIALWATCH_TEST_REDIS.
    keys = [key async for key in redis_store.client.scan_iter(match=f"t{unique}:*", count=1000)]
    if keys:
        await redis_store.client.delete(*keys)
    await redis_store.close()


def windows(newest: int, calls: int) -> bytes:
    return windows_blob(NumberState(newest_ms=newest, short={newest // 60_000: [calls]}))


async def test_empty_partition(store: Store) -> None:
    assert await store.load_meta(3) == PartitionMeta(-1, 0)
    read = await store.read(3, ["13800000001"], due_before_ms=0)
    assert read.windows == {"13800000001": None}
    assert read.episodes == {"13800000001": None}
    assert read.due == {}


async def test_write_then_read_round_trips(store: Store) -> None:
    blob = windows(1_000_000, 4)
    await store.write(1, -1, Changes(PartitionMeta(41, 1_000_000), {"13800000001": blob}, {}))
    assert await store.load_meta(1) == PartitionMeta(41, 1_000_000)
    read = await store.read(1, ["13800000001", "13800000002"], due_before_ms=0)
    assert read.windows == {"13800000001": blob, "13800000002": None}
    other = await store.read(2, ["13800000001"], due_before_ms=0)
    assert other.windows == {"13800000001": None}  # partitions do not share state


async def test_write_is_fenced_on_the_offset(store: Store) -> None:
    await store.write(0, -1, Changes(PartitionMeta(10, 5), {"13800000001": windows(5, 1)}, {}))
    with pytest.raises(StaleOffset):
        await store.write(0, -1, Changes(PartitionMeta(20, 9), {"13800000001": windows(9, 2)}, {}))
    read = await store.read(0, ["13800000001"], due_before_ms=0)
    assert read.windows["13800000001"] == windows(5, 1)  # nothing of the stale write landed
    assert await store.load_meta(0) == PartitionMeta(10, 5)


async def test_empty_blob_deletes(store: Store) -> None:
    await store.write(0, -1, Changes(PartitionMeta(1, 5), {"13800000001": windows(5, 1)}, {}))
    await store.write(0, 1, Changes(PartitionMeta(2, 5), {"13800000001": b""}, {}))
    assert (await store.read(0, ["13800000001"], 0)).windows["13800000001"] is None


async def test_due_episodes_come_back_once_the_watermark_passes(store: Store) -> None:
    ep = b'{"bulk_dialling":["critical",1000]}'
    changes = Changes(PartitionMeta(1, 5), {}, {"17000000001": (ep, 50_000)})
    await store.write(0, -1, changes)
    assert (await store.read(0, [], due_before_ms=49_999)).due == {}
    assert (await store.read(0, [], due_before_ms=50_000)).due == {"17000000001": (ep, 50_000)}
    # a number that is part of the batch is handled with the batch, not as due
    read = await store.read(0, ["17000000001"], due_before_ms=60_000)
    assert read.due == {} and read.episodes == {"17000000001": ep}
    await store.write(0, 1, Changes(PartitionMeta(2, 5), {}, {"17000000001": (b"", None)}))
    assert (await store.read(0, [], due_before_ms=10**15)).due == {}


async def test_engine_gives_the_same_alerts_on_both_stores(store: Store) -> None:
    settings = Settings()
    policy = load_policy(settings.policy_file)
    calls = dial("17012345678", 600, 4800) + dial("95512345", 100, 4800)
    calls.sort(key=lambda c: c.start_ms)
    results = []
    for s in (MemoryStore(), store):
        engine = Engine(settings, policy, s, clock_ms=lambda: NOW_MS)
        ids = []
        for i in range(0, len(calls), 97):
            out = await engine.process(4, [(i + j, c) for j, c in enumerate(calls[i : i + 97])])
            ids += [a.alert_id for a in out.alerts]
        results.append(ids)
    assert len(results[0]) >= 3  # bulk dialling, robocall and quota for the 170 dialler
    assert results[0] == results[1]


async def test_derived_engine_gives_the_same_alerts_on_both_stores(store: Store) -> None:
    """Stage 2 (callee, block, trunk subjects, peers in the blob) over both stores."""
    settings = Settings()
    policy = load_policy(settings.policy_file)
    bombing = [cdr(f"1390000000{i % 3}", T0 + i * 10, i, callee="13811112222") for i in range(40)]
    observed = derived_obs(bombing, settings.international_trunks, 0, CHINA)
    results = []
    for s in (MemoryStore(), store):
        engine = Engine(settings, policy, s, clock_ms=lambda: NOW_MS, kinds=DERIVED_KINDS)
        alerts = []
        for i in range(0, len(observed), 13):
            last = i + 13 >= len(observed)
            out = await engine.process(5, derived_batch(observed[i : i + 13], i, last))
            alerts += out.alerts
        results.append([(a.alert_id, a.subject, a.action) for a in alerts])
    subjects = {(subject, action) for _, subject, action in results[0]}
    assert subjects == {("callee", "protect"), ("number", "intercept")}
    # call_bombing only: the victim and its three callers. The flood (40 calls in 400 s) is
    # not also debt collection, whose members' attempts must span 15 minutes (policy
    # 2026.12.3): one protect per flood
    assert len(results[0]) == 4
    assert results[0] == results[1]


async def test_source_progress_round_trips(store: Store) -> None:
    meta = PartitionMeta(7, 9_000, ((0, 9_000), (3, 4_000)))
    await store.write(2, -1, Changes(meta, {}, {}))
    assert await store.load_meta(2) == meta
    later = PartitionMeta(8, 9_500, ((0, 9_500), (3, 4_000), (11, 100)))
    await store.write(2, 7, Changes(later, {}, {}))
    assert await store.load_meta(2) == later


async def test_complaint_blobs_swap_only_when_unchanged(store: Store) -> None:
    numbers = ["17000000001", "17000000002"]
    assert await store.complaint_blobs(6, numbers) == {n: None for n in numbers}
    assert await store.swap_complaints(6, {numbers[0]: None}, {numbers[0]: b"[[1,2,3]]"})
    assert await store.complaint_blobs(6, numbers) == {numbers[0]: b"[[1,2,3]]", numbers[1]: None}
    # A writer that read before that swap loses, and writes nothing at all.
    stale: dict[str, bytes | None] = {numbers[0]: None, numbers[1]: None}
    assert not await store.swap_complaints(6, stale, {numbers[0]: b"[]", numbers[1]: b"[]"})
    assert (await store.complaint_blobs(6, [numbers[1]]))[numbers[1]] is None
    # The engine's read brings the complaints of the batch's numbers along.
    read = await store.read(6, numbers, due_before_ms=0)
    assert read.complaints == {numbers[0]: b"[[1,2,3]]", numbers[1]: None}


async def test_outbox_holds_alerts_until_confirmed(store: Store) -> None:
    changes = Changes(PartitionMeta(3, 10), {}, {}, outbox={"a1": b'{"x":1}', "a2": b'{"x":2}'})
    await store.write(7, -1, changes)
    assert await store.pending_alerts(7) == {"a1": b'{"x":1}', "a2": b'{"x":2}'}
    await store.confirm_alerts(7, ["a1"])
    assert await store.pending_alerts(7) == {"a2": b'{"x":2}'}
    # A write rejected by the fence adds nothing to the outbox either.
    with pytest.raises(StaleOffset):
        await store.write(7, -1, Changes(PartitionMeta(4, 11), {}, {}, outbox={"a3": b"{}"}))
    assert set(await store.pending_alerts(7)) == {"a2"}
    await store.confirm_alerts(7, ["a2", "never-there"])
    assert await store.pending_alerts(7) == {}


async def test_contact_circles_agree_on_both_stores_and_their_memory(
    redis_url: str, unique: str
) -> None:
    """The same contacts, noted in pieces and another order, give the same circles in memory
    and in Redis (circle_add.lua: a set union cut to the 32 smallest hashes), and a replay
    changes nothing. Memory per subscriber and day, measured with MEMORY USAGE: printed."""
    prefix = f"t{unique}:x"
    redis_store = RedisStore.from_url(
        redis_url, prefix=prefix, window_ttl_ms=90_000_000, partition_ttl_ms=600_000_000
    )
    day_s = (T0 // 86_400) * 86_400
    person, friends = "13900000000", [f"1380000{i:04d}" for i in range(60)]
    calls = [(person, f, day_s + 100 + i) for i, f in enumerate(friends)]
    calls += [("13700000001", f, day_s + 50) for f in friends[:5]]
    try:
        memory = Circles(b"k", 8, 3)
        redis = RedisCircles(redis_store.client, prefix, b"k", 8, 3)
        for c in (memory, redis):
            for n, part in enumerate((calls[::2], calls[1::2][::-1], calls[:7])):  # a replay
                for a, b, t in part:
                    c.note(a, b, t)
                assert await c.flush() > 0, n
        numbers = [person, "13700000001", *friends[:3]]
        expected = await memory.read(numbers, day_s + 3600)
        assert await redis.read(numbers, day_s + 3600) == expected
        assert len(expected[person]) == 32 and len(expected["13700000001"]) == 5
        # expiry: days + 1 days from the last write
        key = f"{prefix}:{{p{redis.where(person)}}}:cc:{day_s // 86_400}"
        ttl = await redis_store.client.pttl(key)
        assert 4 * 86_400_000 - 60_000 < ttl <= 4 * 86_400_000
        # MEMORY USAGE per subscriber and day: 1,000 subscribers' circles in one partition's
        # day key (a hash table, as for any real partition), divided by 1,000
        for n in (5, 32):
            lone = RedisCircles(redis_store.client, f"{prefix}m{n}", b"k", 1, 3)
            day = day_s // 86_400
            for s in range(1000):
                field = s.to_bytes(8)
                lone._pending[(0, day)][field] = {s * 1000 + i: day_s + i for i in range(n)}
            await lone.flush()
            key = f"{prefix}m{n}:{{p0}}:cc:{day}"
            assert len(await redis_store.client.hget(key, (7).to_bytes(8)) or b"") == 12 * n
            used = await redis_store.client.memory_usage(key, samples=0)
            assert used is not None
            print(f"circle of {n} contacts: {used / 1000:.0f} B per subscriber and day")
            assert used / 1000 <= 12 * n + 140
    finally:
        keys = [k async for k in redis_store.client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis_store.client.delete(*keys)
        await redis_store.close()
