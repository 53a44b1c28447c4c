"""Campaigns and leak candidates in the worker (docs/campaigns.md "In the worker").

Stage 2 hands ``CampaignRecorder.record`` the callee observations each batch released, in
canonical order (streams.reorder), before its fenced state write (``Runtime.handle``'s
``forward``): a crash in between re-releases them, so everything recorded is idempotent, a set
union. Per caller (the observation's counterpart) and period of event time (``campaign_period_s``)
it keeps, in Redis, only keyed 64-bit hashes::

    <prefix>:cs:b:<period>:m:<caller>   the K smallest callee hashes (zset by hex, lex order)
    <prefix>:cs:b:<period>:c:<caller>   the CALLS smallest call-id hashes, with the answered bit
    <prefix>:cs:b:<period>:t:<caller>   first and last call (ZADD LT / GT)
    <prefix>:cs:b:<period>:v:<caller>   callee hash -> first call, the VICTIMS earliest
    <prefix>:cs:b:<period>:callers      the callers of the period; <prefix>:cs:periods

and the business contacts in the ``ContactStore`` (streams.contacts). ``CampaignTicker.run``
(a timer in every worker; one at a time holds the lock) evaluates period ends in event-time
order, each only once every derived partition's release point has passed it: it folds the
finished periods into each caller's settled sketch (``<prefix>:cs:settled``, one blob per
caller), groups all settled sketches (detectors.campaigns), ranks each campaign's businesses
(detectors.leak_sources over the Bloom contacts) and sends what changed: the campaign's record to
the leak-candidates topic, a ``campaign`` alert when a campaign appears or grows, and, once
enough of its members are on the interception list on their own evidence, an ``intercept``
alert for each other member, handed to the interception step. The result of a period is a
function of the observations before its end, whatever the interleaving or batching.

Memory per caller: in Redis, per unfinished period at most K + CALLS + VICTIMS + 2 entries; settled,
K callee hashes, VICTIMS (callee hash, time) pairs and four counters: at most about 70 KiB, under
2 KiB for a caller that dialled fewer than 100 numbers. The ticker holds the settled sketches of
every caller active within ``campaign_days`` in memory while it runs.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from config.numbering import NumberingPlan, classify
from config.settings import Settings
from detectors.campaigns import (
    DETECTOR,
    CallerSketch,
    CampaignGroup,
    GroupingPolicy,
    K,
    campaign_alert,
    group,
    keyed_hash,
    member_alert,
    members_to_intercept,
)
from detectors.leak_sources import DAY_MS, ContactRecord, LeakPolicy, rank
from streams.contacts import ContactStore
from streams.delivery import Confirmed
from streams.feed.records import canonical, leak_records
from streams.items import Outcome, id_hash
from streams.leaktrace import BUSINESS_CLASSES, SUBSCRIBER_CLASSES, campaign_record
from streams.observe import UNASSERTED, Obs
from streams.reorder import decode as decode_held
from streams.reorder import release_point
from streams.state.base import PartitionMeta

log = logging.getLogger("dialwatch.campaigns")
VICTIMS = 4096  # a caller's victims kept per period (and settled): the earliest
CALLS = 1024  # a caller's call-id sample per period: its calls counted exactly below this
LOCK_MS = 120_000
MAX_PERIODS_PER_RUN = 64
HISTORY = 400  # a campaign's timeline: its states, one per evaluated period it changed in


def _hex(value: int) -> str:
    return f"{value:016x}"


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def calls_from_sample(sample: Sequence[tuple[int, bool]]) -> tuple[int, int]:
    """(calls, answered) of one period from the CALLS smallest call-id hashes (63-bit): exact
    below CALLS, else the bottom-k estimate."""
    if len(sample) < CALLS:
        return len(sample), sum(1 for _, a in sample if a)
    kth = max(h for h, _ in sample)
    calls = round((CALLS - 1) / (kth / float(1 << 63)))
    return calls, round(calls * sum(1 for _, a in sample if a) / len(sample))


@dataclass(slots=True)
class Settled:
    """A caller's sketch over its finished periods."""

    mins: list[int] = field(default_factory=list)
    calls: int = 0
    answered: int = 0
    first_ms: int = 1 << 62
    last_ms: int = -(1 << 62)
    victims: dict[int, int] = field(default_factory=dict)  # callee hash -> first call

    def fold(
        self,
        mins: Iterable[int],
        sample: Sequence[tuple[int, bool]],
        times: Sequence[int],
        victims: Iterable[tuple[int, int]],
    ) -> None:
        self.mins = sorted(set(self.mins) | set(mins))[:K]
        calls, answered = calls_from_sample(sample)
        self.calls += calls
        self.answered += answered
        if times:
            self.first_ms = min(self.first_ms, min(times))
            self.last_ms = max(self.last_ms, max(times))
        for v, at in victims:
            self.victims[v] = min(at, self.victims.get(v, at))
        if len(self.victims) > VICTIMS:
            keep = sorted(self.victims.items(), key=lambda kv: (kv[1], kv[0]))[:VICTIMS]
            self.victims = dict(keep)

    def sketch(self, number: str) -> CallerSketch:
        return CallerSketch(
            number, tuple(self.mins), self.calls, self.answered, self.first_ms, self.last_ms
        )

    def encode(self) -> bytes:
        return orjson.dumps(
            [self.mins, self.calls, self.answered, self.first_ms, self.last_ms,
             sorted(self.victims.items())]
        )  # fmt: skip

    @classmethod
    def decode(cls, blob: bytes) -> Settled:
        mins, calls, answered, first, last, victims = orjson.loads(blob)
        return cls(list(mins), calls, answered, first, last, {v: t for v, t in victims})


class CampaignRecorder:
    """Stage 2's side: the released observations into per-period sketches and contacts."""

    def __init__(
        self, client: aioredis.Redis | RedisCluster, settings: Settings, plan: NumberingPlan
    ) -> None:
        self.client = client
        self.prefix = f"{settings.key_prefix}:cs"
        self.period_ms = settings.campaign_period_s * 1000
        self.key = settings.pseudonym_key.encode()
        self.contacts = ContactStore(client, settings.key_prefix, settings.campaign_days)
        self.ttl_ms = max(7 * DAY_MS, 4 * self.period_ms)  # wall clock: settled long before
        self.classify = functools.lru_cache(maxsize=100_000)(lambda n: classify(n, plan))

    def _hash(self, number: str) -> int:
        return keyed_hash(number, self.key)

    async def record(self, released: Sequence[Obs]) -> int:
        """Record the callee observations among ``released``; returns how many."""
        per: dict[tuple[int, str], _Period] = defaultdict(_Period)
        contacts: list[tuple[str, int, int]] = []
        business: set[str] = set()
        for obs in released:
            caller, callee = obs.other, obs.subject
            if obs.kind != "callee" or not caller or caller.startswith(UNASSERTED):
                continue
            target = self._hash(callee)
            period = per[(obs.start_ms // self.period_ms, caller)]
            period.mins.add(_hex(target))
            period.calls.add(f"{_hex(id_hash(obs.cdr_id))}:{int(obs.answered)}")
            period.first = min(period.first, obs.start_ms)
            period.last = max(period.last, obs.start_ms)
            seen = period.victims.get(target)
            period.victims[target] = obs.start_ms if seen is None else min(seen, obs.start_ms)
            caller_class, callee_class = self.classify(caller), self.classify(callee)
            if caller_class in SUBSCRIBER_CLASSES and callee_class in BUSINESS_CLASSES:
                contacts.append((callee, self._hash(caller), obs.start_ms))
                business.add(callee)
            elif caller_class in BUSINESS_CLASSES and callee_class in SUBSCRIBER_CLASSES:
                contacts.append((caller, target, obs.start_ms))
                business.add(caller)
        if not per:
            return 0
        pipe = self.client.pipeline(transaction=False)
        periods: set[int] = set()
        for (b, caller), p in sorted(per.items()):
            periods.add(b)
            base = f"{self.prefix}:b:{b}"
            keys = [f"{base}:{kind}:{caller}" for kind in "mctv"]
            pipe.zadd(keys[0], dict.fromkeys(p.mins, 0))
            pipe.zremrangebyrank(keys[0], K, -1)
            pipe.zadd(keys[1], dict.fromkeys(p.calls, 0))
            pipe.zremrangebyrank(keys[1], CALLS, -1)
            pipe.zadd(keys[2], {"first": p.first}, lt=True)
            pipe.zadd(keys[2], {"last": p.last}, gt=True)
            pipe.zadd(keys[3], {_hex(v): at for v, at in p.victims.items()}, lt=True)
            pipe.zremrangebyrank(keys[3], VICTIMS, -1)
            pipe.sadd(f"{base}:callers", caller)
            for key in (*keys, f"{base}:callers"):
                pipe.pexpire(key, self.ttl_ms)
        pipe.zadd(f"{self.prefix}:periods", {str(b): b for b in periods})
        if business:
            pipe.sadd(f"{self.prefix}:biz", *sorted(business))
        await pipe.execute()
        await self.contacts.record(contacts)
        return sum(len(p.calls) for p in per.values())


@dataclass(slots=True)
class _Period:
    mins: set[str] = field(default_factory=set)
    calls: set[str] = field(default_factory=set)
    first: int = 1 << 62
    last: int = -(1 << 62)
    victims: dict[int, int] = field(default_factory=dict)


def recording(
    forward: Callable[[Outcome], Awaitable[None]] | None, recorder: CampaignRecorder | None
) -> Callable[[Outcome], Awaitable[None]] | None:
    """Stage 2's ``forward`` (run before the state write) with the campaign recording after."""
    if recorder is None:
        return forward

    async def both(outcome: Outcome) -> None:
        if forward is not None:
            await forward(outcome)
        if outcome.released:
            await recorder.record(outcome.released)

    return both


# (topic, key, value): what a period sends; the ticker awaits every delivery before it moves on
Send = Callable[[str, bytes, bytes], Awaitable[Any]]


class CampaignTicker:
    """The periodic evaluation (one worker at a time, under a lock in Redis)."""

    def __init__(
        self,
        recorder: CampaignRecorder,
        settings: Settings,
        plan: NumberingPlan,
        tz: tzinfo,
        metas: Callable[[int], Awaitable[PartitionMeta]],
        sources: int,
        send: Send,
        intercept: Callable[[list[dict[str, Any]]], Awaitable[None]],
        listed_by_others: Callable[[str], Awaitable[bool]],
        policy_version: str,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        feed_key_id: str | None = None,
        confirmed: Confirmed | None = None,
    ) -> None:
        self.recorder = recorder
        self.client = recorder.client
        self.prefix = recorder.prefix
        self.period_ms = recorder.period_ms
        self.settings = settings
        self.plan = plan
        self.tz = tz
        self.metas = metas
        self.sources = sources
        self.send = send
        self.intercept = intercept
        self.listed_by_others = listed_by_others
        self.policy_version = policy_version
        self.clock_ms = clock_ms
        self.feed_key_id = feed_key_id  # set: leak candidates go to the regulator feed too
        # What the broker confirmed: a run retried after its Redis record of the sends failed
        # (the pipeline at the end of _send) does not publish those ids again.
        self.confirmed = confirmed if confirmed is not None else Confirmed()
        self.grouping = GroupingPolicy()
        self.leak = LeakPolicy(
            days=settings.campaign_days, min_victims=settings.campaign_min_victims
        )
        self.token = uuid.uuid4().hex
        self._settled: dict[str, Settled] | None = None
        self._settled_at: int | None = None
        self.evaluated_ms = 0

    async def release_front(self) -> int | None:
        """The lowest release point over every derived partition (None: one not heard yet)."""
        points = []
        for partition in range(self.settings.topic_partitions):
            meta = await self.metas(partition)
            point = release_point(dict(meta.sources), decode_held(meta.held).idle, self.sources)
            if point is None:
                return None
            points.append(point)
        return min(points) if points else None

    async def run(self) -> int:
        """Evaluate every period end that is due; returns how many were evaluated. A store or
        broker failure leaves the rest for the next run (each period is evaluated whole)."""
        if not await self.client.set(f"{self.prefix}:lock", self.token, nx=True, px=LOCK_MS):
            return 0
        try:
            return await self._run()
        except BaseException:
            self._settled = None  # folded in memory, maybe not stored: reload next time
            raise
        finally:
            if _s(await self.client.get(f"{self.prefix}:lock") or b"") == self.token:
                await self.client.delete(f"{self.prefix}:lock")

    async def _run(self) -> int:
        front = await self.release_front()
        raw = await self.client.zrange(f"{self.prefix}:periods", 0, -1)
        periods = sorted(int(_s(b)) for b in raw)
        if front is None or not periods:
            return 0
        done_raw = await self.client.get(f"{self.prefix}:tick")
        done = int(_s(done_raw)) if done_raw is not None else periods[0] * self.period_ms
        # Up to the end of the newest period with data: an idle stream (FOREVER) ends there.
        due = min(front, (periods[-1] + 1) * self.period_ms) // self.period_ms * self.period_ms
        count = 0
        end = max(done + self.period_ms, periods[0] * self.period_ms + self.period_ms)
        while end <= due and count < MAX_PERIODS_PER_RUN:
            folded = [b for b in periods if b * self.period_ms < end]
            found = await self.evaluate(end, folded)
            log.info(
                "campaigns: period ending %d evaluated (%d periods folded, release front %d):"
                " %d campaigns",
                end,
                len(folded),
                front,
                found,
            )
            periods = [b for b in periods if b * self.period_ms >= end]
            await self.client.set(f"{self.prefix}:tick", end)
            self._settled_at = end
            count += 1
            end += self.period_ms
        return count

    async def _load_settled(self) -> dict[str, Settled]:
        tick = await self.client.get(f"{self.prefix}:tick")
        at = int(_s(tick)) if tick is not None else None
        if self._settled is None or self._settled_at != at:
            raw = await self.client.hgetall(f"{self.prefix}:settled")
            self._settled = {
                _s(k): Settled.decode(v if isinstance(v, bytes) else str(v).encode())
                for k, v in raw.items()
            }
            self._settled_at = at
        return self._settled

    async def _fold(self, settled: dict[str, Settled], periods: Sequence[int]) -> set[str]:
        """Fold the finished periods' keys into the settled sketches; returns the callers."""
        changed: set[str] = set()
        for b in periods:
            base = f"{self.prefix}:b:{b}"
            callers = sorted(_s(c) for c in await self.client.smembers(f"{base}:callers"))
            pipe = self.client.pipeline(transaction=False)
            for caller in callers:
                pipe.zrange(f"{base}:m:{caller}", 0, -1)
                pipe.zrange(f"{base}:c:{caller}", 0, -1)
                pipe.zrange(f"{base}:t:{caller}", 0, -1, withscores=True)
                pipe.zrange(f"{base}:v:{caller}", 0, -1, withscores=True)
            values = await pipe.execute() if callers else []
            for i, caller in enumerate(callers):
                mins, calls, times, victims = values[4 * i : 4 * i + 4]
                sample = [(int(_s(c)[:16], 16), _s(c).endswith(":1")) for c in calls]
                one = settled.setdefault(caller, Settled())
                one.fold(
                    (int(_s(m), 16) for m in mins),
                    sample,
                    [int(score) for _, score in times],
                    ((int(_s(v), 16), int(score)) for v, score in victims),
                )
                changed.add(caller)
        return changed

    async def evaluate(self, end_ms: int, periods: Sequence[int]) -> int:
        """The period ending at ``end_ms``: fold, group, rank, send what changed; returns how
        many campaigns there are."""
        self.evaluated_ms = end_ms
        settled = await self._load_settled()
        changed = await self._fold(settled, periods)
        horizon = end_ms - self.settings.campaign_days * DAY_MS
        gone = sorted(n for n, s in settled.items() if s.last_ms < horizon)
        for number in gone:
            del settled[number]
        campaigns = group((s.sketch(n) for n, s in settled.items()), self.grouping)
        records = await self._records(campaigns, settled)
        await self._send(campaigns, records, settled)
        pipe = self.client.pipeline(transaction=False)
        current = {c.campaign_id for c in campaigns}
        for cid, raw in (await self.client.hgetall(f"{self.prefix}:records")).items():
            name = _s(cid)
            last = orjson.loads(raw)["last_activity"]
            if name not in current and datetime.fromisoformat(last).timestamp() * 1000 < horizon:
                pipe.hdel(f"{self.prefix}:records", name)
                pipe.hdel(f"{self.prefix}:pub", name)
                pipe.delete(f"{self.prefix}:hist:{name}")
        for number in sorted(changed - set(gone)):
            pipe.hset(f"{self.prefix}:settled", number, settled[number].encode())
        if gone:
            pipe.hdel(f"{self.prefix}:settled", *gone)
        for b in periods:
            base = f"{self.prefix}:b:{b}"
            callers = [_s(c) for c in await self.client.smembers(f"{base}:callers")]
            for caller in callers:
                pipe.delete(*(f"{base}:{kind}:{caller}" for kind in "mctv"))
            pipe.delete(f"{base}:callers")
            pipe.zrem(f"{self.prefix}:periods", str(b))
        await pipe.execute()
        return len(campaigns)

    async def _records(
        self, campaigns: Sequence[CampaignGroup], settled: dict[str, Settled]
    ) -> list[dict[str, object]]:
        members = {m for c in campaigns for m in c.members}
        population = sum(
            1
            for n in settled
            if n not in members and self.recorder.classify(n) in SUBSCRIBER_CLASSES
        )
        raw = await self.client.smembers(f"{self.prefix}:biz")
        businesses = sorted(b for b in (_s(x) for x in raw) if b not in members)
        out = []
        window = self.leak.days * DAY_MS
        for campaign in campaigns:
            hit: dict[int, int] = {}
            for m in campaign.members:
                for v, at in settled[m].victims.items():
                    hit[v] = min(at, hit.get(v, at))
            candidates = []
            if len(hit) >= self.leak.min_victims and businesses:
                since = min(hit.values()) - window
                loaded = await self.recorder.contacts.load(businesses, since, max(hit.values()))
                records: dict[str, ContactRecord] = dict(loaded)
                candidates = rank(hit, records, population, self.leak)
            out.append(campaign_record(campaign, len(hit), candidates, self.leak, self.tz))
        return out

    async def _send(
        self,
        campaigns: Sequence[CampaignGroup],
        records: Sequence[dict[str, object]],
        settled: dict[str, Settled],
    ) -> None:
        published = f"{self.prefix}:pub"
        sent_alerts = f"{self.prefix}:alerted"
        now = self.clock_ms()
        pending: list[Any] = []
        sent: list[str] = []
        changed: set[str] = set()
        to_intercept: list[dict[str, Any]] = []
        for campaign, record in zip(campaigns, records, strict=True):
            value = orjson.dumps(record)
            digest = hashlib.blake2b(value, digest_size=16).hexdigest()
            cid = campaign.campaign_id
            before = await self.client.hget(published, cid)
            if before is not None and _s(before) == digest:
                continue
            changed.add(digest)
            # Per period: a record that changes back to an earlier one is sent again later.
            topic, rid = self.settings.leak_candidates_topic, f"{cid}:{digest}:{self.evaluated_ms}"
            pending.append(await self._once(topic, rid, cid.encode(), value))
            if self.feed_key_id is not None:
                for feed in leak_records(record, self.feed_key_id):
                    topic, rid = self.settings.feed_topic, str(feed["record_id"])
                    pending.append(await self._once(topic, rid, cid.encode(), canonical(feed)))
            shown = campaign_alert(campaign, record, before is not None, now, self.policy_version)
            if not await self.client.sismember(sent_alerts, shown.alert_id):
                pending.append(await self._alert(shown.to_dict(self.tz), sent))
            flagged = [m for m in campaign.members if await self.listed_by_others(m)]
            rest = members_to_intercept(
                campaign.members,
                flagged,
                self.settings.campaign_intercept_share,
                self.settings.campaign_intercept_min_flagged,
            )
            for member in rest:
                one = settled[member]
                alert = member_alert(
                    campaign, record, member, len(flagged), one.calls, one.last_ms, now,
                    str(self.recorder.classify(member)), self.policy_version,
                ).to_dict(self.tz)  # fmt: skip
                if not await self.client.sismember(sent_alerts, alert["alert_id"]):
                    pending.append(await self._alert(alert, sent))
                    to_intercept.append(alert)
        await asyncio.gather(*pending)
        if to_intercept:
            await self.intercept(to_intercept)
        pipe = self.client.pipeline(transaction=False)
        for campaign, record in zip(campaigns, records, strict=True):
            value = orjson.dumps(record)
            digest = hashlib.blake2b(value, digest_size=16).hexdigest()
            cid = campaign.campaign_id
            if digest in changed:  # for the console and the API (stored_campaign)
                pipe.hset(f"{self.prefix}:records", cid, value)
                point = [self.evaluated_ms, record["size"], record["victims"], campaign.calls]
                pipe.rpush(f"{self.prefix}:hist:{cid}", orjson.dumps(point))
                pipe.ltrim(f"{self.prefix}:hist:{cid}", -HISTORY, -1)
            pipe.hset(published, cid, digest)
        if sent:
            pipe.sadd(sent_alerts, *sent)
        await pipe.execute()

    async def _alert(self, alert: dict[str, Any], sent: list[str]) -> Any:
        """Send an alert not yet in the Redis set of sent ones (``sent`` adds it there after
        the run), unless the broker confirmed it already (a retry: only Redis missed it)."""
        sent.append(str(alert["alert_id"]))
        topic, key = self.settings.alert_topic, str(alert["number"]).encode()
        return await self._once(topic, str(alert["alert_id"]), key, orjson.dumps(alert))

    async def _once(self, topic: str, rid: str, key: bytes, value: bytes) -> Any:
        """Send unless the broker confirmed this id on this topic before."""
        return await self.confirmed.once(
            f"{topic} {rid}", functools.partial(self.send, topic, key, value)
        )


def intercepted_by_others(entries: Sequence[Any]) -> bool:
    """Whether any of a number's list entries came from a detector other than ``campaign``."""
    return any(str(e.fields.get("detector", "")) != DETECTOR for e in entries)


async def safe_run(ticker: CampaignTicker) -> int:
    """``CampaignTicker.run`` for a timer: a failure is logged and left to the next run, which
    goes on from the stored period. Its sends are not repeated when this process's broker
    confirmed them (``CampaignTicker.confirmed``); another worker taking over the lock repeats
    them (consumers keep the latest record per campaign id and alert ids stay the same)."""
    try:
        return await ticker.run()
    except RedisError as exc:
        log.warning("campaign evaluation failed (%s); retrying", type(exc).__name__)
    except Exception as exc:  # a broker send that failed: the same, from the next timer
        log.warning("campaign evaluation failed (%s); retrying", type(exc).__name__)
    return 0
