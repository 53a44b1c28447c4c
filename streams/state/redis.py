"""Redis window store. One partition's keys share a hash slot, so each script is atomic on a
Redis Cluster too. Key layout (README "Redis keys")::

    {prefix}:{p<N>}:n:<number>   string, the number's window blob, TTL = longest window + margin
    {prefix}:{p<N>}:ep           hash, number -> open-episodes blob
    {prefix}:{p<N>}:due          zset, number -> time its episodes close if it stays quiet
    {prefix}:{p<N>}:cp           hash, number -> its recent complaint reports (stage 1 only)
    {prefix}:{p<N>}:outbox       hash, alert_id -> alert JSON, until confirmed published
    {prefix}:{p<N>}:meta         hash, off = last applied offset, newest = newest start_time,
                                 s<M> = newest start_time from source partition M,
                                 roff = last applied repartition offset (stage 1),
                                 held = observations held for the canonical order (stage 2)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from streams.state.base import Changes, PartitionMeta, ReadResult, StaleOffset

READ_CHUNK = 4000  # numbers per read call: keeps Lua's unpack() within its stack limit
DUE_LIMIT = 1000


def _lua(name: str) -> str:
    return resources.files("streams").joinpath("lua", name).read_text(encoding="utf-8")


class RedisStore:
    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        prefix: str,
        window_ttl_ms: int,
        partition_ttl_ms: int,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.window_ttl_ms = window_ttl_ms
        self.partition_ttl_ms = partition_ttl_ms
        self._read = client.register_script(_lua("read.lua"))
        self._write = client.register_script(_lua("write.lua"))
        self._swap = client.register_script(_lua("swap_complaints.lua"))
        # (op, seconds) of each state script's round trip: the worker's metrics
        # (dialwatch_redis_seconds); None: not timed.
        self.timing: Callable[[str, float], None] | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> RedisStore:
        client = aioredis.Redis.from_url(url, decode_responses=False)
        return cls(client, **kwargs)  # type: ignore[arg-type]

    def key(self, partition: int, kind: str) -> str:
        return f"{self.prefix}:{{p{partition}}}:{kind}"

    def number_key(self, partition: int, number: str) -> str:
        return f"{self.prefix}:{{p{partition}}}:n:{number}"

    async def load_meta(self, partition: int) -> PartitionMeta:
        raw = await self.client.hgetall(self.key(partition, "meta"))
        fields = {bytes(k): bytes(v) for k, v in raw.items()}  # type: ignore[arg-type]
        off, newest, roff = fields.get(b"off"), fields.get(b"newest"), fields.get(b"roff")
        held = fields.get(b"held", b"")
        sources = sorted(
            (int(k[1:]), int(v))
            for k, v in fields.items()
            if k.startswith(b"s") and k[1:].isdigit()
        )
        return PartitionMeta(
            int(off) if off is not None else -1,
            int(newest or 0),
            tuple(sources),
            int(roff) if roff is not None else -1,
            held,
        )

    async def read(self, partition: int, numbers: list[str], due_before_ms: int) -> ReadResult:
        result = ReadResult({}, {}, {})
        ep, due, cp = (self.key(partition, k) for k in ("ep", "due", "cp"))
        chunks = [numbers[i : i + READ_CHUNK] for i in range(0, len(numbers), READ_CHUNK)] or [[]]
        for i, chunk in enumerate(chunks):
            started = time.perf_counter()
            windows, episodes, due_flat, complaints = await self._read(
                keys=[ep, due, cp, *(self.number_key(partition, n) for n in chunk)],
                args=[due_before_ms if i == 0 else -1, DUE_LIMIT, *chunk],
            )
            if self.timing is not None:
                self.timing("read", time.perf_counter() - started)
            result.windows.update(zip(chunk, windows, strict=True))
            result.episodes.update(zip(chunk, episodes, strict=True))
            result.complaints.update(zip(chunk, complaints, strict=True))
            it = iter(due_flat)
            for number, close_at, blob in zip(it, it, it, strict=True):
                result.due[number.decode()] = (blob, int(float(close_at)))
        for number in numbers:
            result.due.pop(number, None)
        return result

    async def write(self, partition: int, expected_offset: int, changes: Changes) -> None:
        numbers = list(changes.windows)
        args: list[bytes | str | int] = [
            expected_offset,
            changes.meta.offset,
            changes.meta.newest_ms,
            self.window_ttl_ms,
            self.partition_ttl_ms,
            len(numbers),
            *(changes.windows[n] for n in numbers),
            len(changes.episodes),
        ]
        for number, (blob, close_at) in changes.episodes.items():
            args += (number, blob, "" if close_at is None or not blob else close_at)
        args.append(len(changes.meta.sources))
        for source, newest in changes.meta.sources:
            args += (f"s{source}", newest)
        args.append(len(changes.outbox))
        for alert_id, alert in changes.outbox.items():
            args += (alert_id, alert)
        args += (changes.meta.held, changes.expected_rekeyed, changes.meta.rekeyed)
        keys = [self.key(partition, k) for k in ("meta", "ep", "due", "outbox")]
        keys += [self.number_key(partition, n) for n in numbers]
        started = time.perf_counter()
        reply = await self._write(keys=keys, args=args)
        if self.timing is not None:
            self.timing("write", time.perf_counter() - started)
        if int(reply[0]) != 1:
            raise StaleOffset(f"partition {partition}: stored offset {reply[1]!r}")

    async def complaint_blobs(self, partition: int, numbers: list[str]) -> dict[str, bytes | None]:
        if not numbers:
            return {}
        blobs = await self.client.hmget(self.key(partition, "cp"), numbers)
        return dict(zip(numbers, blobs, strict=True))  # type: ignore[arg-type]

    async def swap_complaints(
        self, partition: int, expected: dict[str, bytes | None], new: dict[str, bytes]
    ) -> bool:
        args: list[bytes | str | int] = [self.partition_ttl_ms]
        for number, blob in new.items():
            args += (number, expected.get(number) or b"", blob)
        reply = await self._swap(keys=[self.key(partition, "cp")], args=args)
        return int(reply) == 1

    async def pending_alerts(self, partition: int) -> dict[str, bytes]:
        raw = await self.client.hgetall(self.key(partition, "outbox"))
        return {bytes(k).decode(): bytes(v) for k, v in raw.items()}  # type: ignore[arg-type]

    async def confirm_alerts(self, partition: int, alert_ids: list[str]) -> None:
        if alert_ids:
            await self.client.hdel(self.key(partition, "outbox"), *alert_ids)

    async def close(self) -> None:
        await self.client.aclose()
