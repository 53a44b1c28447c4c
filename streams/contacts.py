"""Business-contact records in Redis: daily Bloom filters over keyed subscriber hashes.

Key ``<prefix>:lk:<business>:<utc day>`` (a string of ``detectors.contact_bloom.BITS`` bits),
expiring ``days + 1`` days after the day it covers (PEXPIREAT). ``record`` writes a whole batch
in one pipelined round trip (one BITFIELD per key, then its expiry); ``load`` reads every
business's filters for a span in one round trip. Only keyed hashes ever reach Redis.

The worker's stage 2 feeds it from the callee observations of business numbers
(streams.campaignwork); the campaign evaluation reads it to rank a campaign's businesses.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from detectors.contact_bloom import BloomContacts, day_of, positions
from detectors.leak_sources import DAY_MS


class ContactStore:
    def __init__(self, client: aioredis.Redis | RedisCluster, prefix: str, days: int) -> None:
        self.client = client
        self.prefix = prefix
        self.days = days

    def _key(self, business: str, day: int) -> str:
        return f"{self.prefix}:lk:{business}:{day}"

    async def record(self, contacts: Iterable[tuple[str, int, int]]) -> int:
        """Add (business, subscriber hash, at_ms) contacts; returns the keys written."""
        bits: dict[tuple[str, int], set[int]] = defaultdict(set)
        for business, subscriber, at_ms in contacts:
            bits[(business, day_of(at_ms))].update(positions(subscriber))
        if not bits:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for (business, day), where in sorted(bits.items()):
            key = self._key(business, day)
            args: list[str | int] = []
            for position in sorted(where):
                args += ["SET", "u1", position, 1]
            pipe.execute_command("BITFIELD", key, *args)
            pipe.pexpireat(key, (day + 1 + self.days + 1) * DAY_MS)
        await pipe.execute()
        return len(bits)

    async def load(
        self, businesses: Sequence[str], since_ms: int, until_ms: int
    ) -> dict[str, BloomContacts]:
        """Every business's filters for the days of [since_ms, until_ms)."""
        days = list(range(day_of(since_ms), day_of(until_ms - 1) + 1))
        keys = [(b, d) for b in businesses for d in days]
        if not keys:
            return {}
        pipe = self.client.pipeline(transaction=False)  # GETs, not MGET: keys span slots
        for business, day in keys:
            pipe.get(self._key(business, day))
        values = await pipe.execute()
        found: dict[str, dict[int, bytes]] = defaultdict(dict)
        for (business, day), value in zip(keys, values, strict=True):
            if value is not None:
                found[business][day] = bytes(value)
        return {b: BloomContacts(found.get(b, {})) for b in businesses}
