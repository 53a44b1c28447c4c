"""Contact circles in the store: per subscriber and UTC day, at most 32 keyed 64-bit hashes of
the numbers it called or was called by (detectors.circles), 12 bytes each.

Key ``<prefix>:{p<N>}:cc:<utc day>`` (stage 2's prefix, ``dw:x``; N the subscriber's derived
partition, crc32 as for its callee subject, so a subscriber's circle shares the hash slot of its
callee state), a hash: field the subscriber's 8-byte keyed hash, value its contacts. A key
lives ``days`` + 1 days from its last write (PEXPIRE; a day's key is written during that day
and its lateness, so it goes ``days`` days after the day it covers; a replay of old CDRs keeps
its circles as long). Stage 2 notes both ends of every
callee observation it admits (the callee's circle gets the caller, the caller's the callee) and
writes them just before the batch's fenced state write, in one pipelined round trip of
``circle_add.lua`` calls (a set union: a batch replayed after a crash adds nothing). Reading
is one pipelined round trip of HGETs, made only for batches where a debt-collection member is
possible (``debt_context``, which also reads the possible members' stage-1 complaint
reports). Numbers never reach the store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from importlib import resources

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from config.policy import ComplaintPolicy
from detectors.circles import (
    CAP,
    DAY_S,
    ENTRY,
    contact_hash,
    contacts_of_person_called,
    decode,
    merge,
)
from detectors.snapshot import WindowSnapshot
from streams.complaints import ComplaintStore
from streams.complaints import active as active_reports
from streams.derived import derived_partition
from streams.observe import UNASSERTED, Obs
from streams.state.base import NumberState
from streams.topics import partition_for

DAY_MS = DAY_S * 1000


class Circles:
    """Notes contacts, writes them in one round trip, reads subscribers' recent circles. This
    base keeps them in memory (scan, tests); ``RedisCircles`` in Redis."""

    def __init__(self, key: bytes, partitions: int, days: int) -> None:
        self.key = key
        self.partitions = max(1, partitions)
        self.days = days
        # (partition, day) -> subscriber field -> contact hash -> newest second
        self._pending: dict[tuple[int, int], dict[bytes, dict[int, int]]] = defaultdict(dict)
        self._memory: dict[tuple[int, int], dict[bytes, dict[int, int]]] = {}
        self._names: dict[str, tuple[int, int, bytes]] = {}  # number -> hash, partition, field

    def _name(self, number: str) -> tuple[int, int, bytes]:
        name = self._names.get(number)
        if name is None:
            if len(self._names) > 200_000:
                self._names.clear()
            h = contact_hash(number, self.key)
            where = derived_partition(number, self.partitions) if self.partitions > 1 else 0
            name = self._names[number] = (h, where, h.to_bytes(8))
        return name

    def hash_of(self, number: str) -> int:
        return self._name(number)[0]

    def where(self, number: str) -> int:
        return self._name(number)[1]

    def note(self, a: str, b: str, t_s: int) -> None:
        """A call between ``a`` and ``b`` at epoch second ``t_s``: each joins the other's circle
        of that day (written by ``flush``)."""
        ha, pa, fa = self._name(a)
        hb, pb, fb = self._name(b)
        day = t_s // DAY_S
        pending = self._pending
        for where, field, other in ((pa, fa, hb), (pb, fb, ha)):
            fields = pending[(where, day)]
            slot = fields.get(field)
            if slot is None:
                fields[field] = {other: t_s}
            elif slot.get(other, -1) < t_s:
                slot[other] = t_s

    def pending(self) -> int:
        return sum(len(v) for v in self._pending.values())

    async def flush(self) -> int:
        """Write what was noted; returns the keys written."""
        pending, self._pending = self._pending, defaultdict(dict)
        for where, fields in pending.items():
            stored = self._memory.setdefault(where, {})
            for field, added in fields.items():
                circle = stored.get(field)
                if circle is None:
                    stored[field] = circle = {}
                for h, t in added.items():
                    if circle.get(h, -1) < t:
                        circle[h] = t
                if len(circle) > CAP:
                    stored[field] = merge(circle, (), CAP)
        return len(pending)

    async def _circles(self, wanted: Sequence[tuple[int, int, bytes]]) -> list[Iterable[int]]:
        return [self._memory.get((p, d), {}).get(f, ()) for p, d, f in wanted]

    async def read(self, numbers: Iterable[str], until_s: int) -> dict[str, frozenset[int]]:
        """Each number's contacts over the ``days`` UTC days up to the one of ``until_s``."""
        last = until_s // DAY_S
        numbers = sorted(set(numbers))
        wanted = [
            (self.where(n), d, self._name(n)[2])
            for n in numbers
            for d in range(last - self.days + 1, last + 1)
        ]
        found = await self._circles(wanted) if wanted else []
        out: dict[str, set[int]] = {n: set() for n in numbers}
        per = self.days
        for i, circle in enumerate(found):
            out[numbers[i // per]].update(circle)
        return {n: frozenset(v) for n, v in out.items()}


class RedisCircles(Circles):
    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        prefix: str,
        key: bytes,
        partitions: int,
        days: int,
    ) -> None:
        super().__init__(key, partitions, days)
        self.client = client
        self.prefix = prefix
        self._add = resources.files("streams").joinpath("lua", "circle_add.lua").read_text("utf-8")

    def _key(self, partition: int, day: int) -> str:
        return f"{self.prefix}:{{p{partition}}}:cc:{day}"

    async def flush(self) -> int:
        pending, self._pending = self._pending, defaultdict(dict)
        if not pending:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for (partition, day), fields in sorted(pending.items()):
            args: list[bytes | int] = [(self.days + 1) * DAY_MS, CAP]
            for field, added in sorted(fields.items()):
                cut = sorted(added.items())[:CAP]
                args += [field, b"".join(ENTRY.pack(h, t) for h, t in cut)]
            pipe.eval(self._add, 1, self._key(partition, day), *args)
        await pipe.execute()
        return len(pending)

    async def _circles(self, wanted: Sequence[tuple[int, int, bytes]]) -> list[Iterable[int]]:
        pipe = self.client.pipeline(transaction=False)  # keys span slots: one HGET each
        for p, d, f in wanted:
            pipe.hget(self._key(p, d), f)
        return [decode(None if v is None else bytes(v)) for v in await pipe.execute()]


DEBT = "debt_collection"


class DebtContext:
    """What stage 2 read for the callers that may be named by debt collection in one batch:
    their stage-1 complaint reports and the contact circles of them and of their callees."""

    def __init__(self) -> None:
        self.candidates: dict[str, set[str]] = {}  # callee store key -> possible members
        self.complaints: dict[str, bytes] = {}  # caller -> its stored reports
        self.circles: dict[str, frozenset[int]] = {}  # number -> contacts


async def debt_context(
    states: Mapping[str, NumberState],
    by_key: Mapping[str, list[Obs]],
    least: int,
    reports: ComplaintStore | None,
    partitions: int,
    circles: Circles | None,
    subject_of: Callable[[str], str],
) -> DebtContext | None:
    """The complaints and circles of a stage-2 batch's possible debt-collection members:
    callers with at least ``least`` attempts at one callee (the fewest that could make a
    member, reports and night weight included), counting the callee's kept calls and the
    batch's. One round trip for each (reports: one per stage-1 partition holding a caller,
    ``partition_for`` over ``partitions``), and none when no caller comes near."""
    ctx = DebtContext()
    for key, records in by_key.items():
        if not key.startswith("callee:"):
            continue
        peers = states[key].peers
        batch: dict[str, int] = {}
        for o in records:
            if o.other and not o.other.startswith(UNASSERTED):
                batch[o.other] = batch.get(o.other, 0) + 1
        near = {c for c, n in batch.items() if n + len(peers.get(c, ())) >= least}
        if near:
            ctx.candidates[key] = near
    if not ctx.candidates:
        return None
    callers = sorted({c for cs in ctx.candidates.values() for c in cs})
    if reports is not None:
        by_partition: dict[int, list[str]] = {}
        for c in callers:
            by_partition.setdefault(partition_for(c.encode(), partitions), []).append(c)
        for p, numbers in sorted(by_partition.items()):
            for number, blob in (await reports.complaint_blobs(p, numbers)).items():
                if blob:
                    ctx.complaints[number] = blob
    if circles is not None:
        newest = max(o.start_ms for records in by_key.values() for o in records)
        persons = [subject_of(k) for k in ctx.candidates]
        ctx.circles = await circles.read([*persons, *callers], newest // 1000)
    return ctx


def with_debt_context(
    snap: WindowSnapshot,
    debt: DebtContext,
    near: set[str],
    event_ms: int,
    complaints: ComplaintPolicy,
    circles: Circles | None,
) -> WindowSnapshot:
    """The snapshot with its possible members' debt-collection reports (active at the call's
    time) and how many of each one's other callees are in the person's circle."""
    horizon_ms = complaints.horizon_s * 1000
    reported = {}
    for caller in near:
        live = active_reports(debt.complaints.get(caller), event_ms, horizon_ms)
        if live.count and live.category == DEBT:
            reported[caller] = (live.count, complaints.factor)
    hits = {}
    if debt.circles and circles is not None:
        person = circles.hash_of(snap.subject)
        mine = debt.circles.get(snap.subject, frozenset())
        for caller in near:
            n = contacts_of_person_called(
                person, circles.hash_of(caller), mine, debt.circles.get(caller, frozenset())
            )
            if n:
                hits[caller] = n
    if not reported and not hits:
        return snap
    return replace(snap, reported=reported, circle_hits=hits)
