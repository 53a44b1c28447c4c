"""The business-contact store on a real Redis: one round trip a batch, filters read back,
expiry set, only hashes stored."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from detectors.campaigns import keyed_hash
from detectors.leak_sources import DAY_MS
from streams.contacts import ContactStore


async def test_record_and_load(redis_url: str, unique: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = ContactStore(client, f"c{unique}", days=30)
    numbers = [f"1390000{i:04d}" for i in range(50)]
    today = int(time.time() * 1000) // DAY_MS - 1  # keys expire days + 1 after their day
    at = today * DAY_MS + 3600_000
    written = await store.record(
        [("95001", keyed_hash(n, b"k"), at) for n in numbers]
        + [("95002", keyed_hash(numbers[0], b"k"), at + DAY_MS)]
    )
    assert written == 2
    loaded = await store.load(["95001", "95002", "95003"], at - DAY_MS, at + 2 * DAY_MS)
    assert all(loaded["95001"].contacted(keyed_hash(n, b"k"), at, at + 1) for n in numbers)
    assert not loaded["95001"].contacted(keyed_hash("13900009999", b"k"), at, at + 1)
    assert loaded["95002"].contacted(keyed_hash(numbers[0], b"k"), at, at + 2 * DAY_MS)
    assert loaded["95003"].days == {}
    keys = sorted([k.decode() async for k in client.scan_iter(f"c{unique}:*")])
    assert keys == [f"c{unique}:lk:95001:{today}", f"c{unique}:lk:95002:{today + 1}"]
    ttl_at = await client.pexpiretime(keys[0])
    assert ttl_at == (today + 1 + 30 + 1) * DAY_MS
    raw = await client.get(keys[0])
    assert raw is not None and b"139" not in raw and len(raw) <= 2048
    await client.aclose()
