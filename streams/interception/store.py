"""The interception list in Redis (README "Interception"). Every key carries the hash tag
``{il}``: the whole list is one slot, so each script is atomic on a Redis Cluster too, and a
switch addresses an entry by the number alone::

    {prefix}:{il}:icpt:<number>   hash, the active entry a switch looks up (expires itself)
    {prefix}:{il}:pend:<number>   hash, an entry waiting for approval (switches never read it)
    {prefix}:{il}:prot:<victim>   hash, caller -> alert_id: callers rejected on calls to victim
    {prefix}:{il}:hold:<number>   string, a released number kept out for the grace period
    {prefix}:{il}:via:<alert_id>  string, the victim a bombing alert is about (worker-internal)
    {prefix}:{il}:ps:<pseudonym>  string, the victim a pseudonym names (worker-internal)
    {prefix}:{il}:done            zset, alert ids applied -> ms (a replay applies nothing twice)
    {prefix}:{il}:brk             zset, number -> ms of its auto-listing (the breaker's window)
    {prefix}:{il}:brkopen         string, set while the breaker is open
    {prefix}:{il}:audit           stream, the audit trail
    {prefix}:{il}:idx:active      zset, number -> expires_at_ms (for listing, not for switches)
    {prefix}:{il}:idx:pending     zset, number -> expires_at_ms
    {prefix}:{il}:idx:prot        zset, victim -> expires_at_ms
    {prefix}:{il}:mirror          string, the last audit entry id mirrored to the topics
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from streams.interception.model import Intent
from streams.state.redis import _lua

APPLIED_KEEP_MS = 7 * 86_400_000  # as long as the outbox keeps an alert
VIA_TTL_MS = 7 * 86_400_000
MIRROR_LOCK_MS = 5_000


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class Entry:
    number: str
    state: str  # "active" | "pending"
    fields: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.fields)
        out["number"], out["state"] = self.number, self.state
        out["expires_at_ms"] = int(out.get("expires_at_ms", 0) or 0)
        return out


class InterceptStore:
    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        prefix: str,
        *,
        breaker_max: int = 500,
        breaker_window_s: int = 600,
        grace_s: int = 3 * 86_400,
        audit_retention_s: int = 90 * 86_400,
    ) -> None:
        self.client = client
        self.base = f"{prefix}:{{il}}"
        self.breaker_max = breaker_max
        self.breaker_window_ms = breaker_window_s * 1000
        self.grace_ms = grace_s * 1000
        self.audit_retention_ms = audit_retention_s * 1000
        self._list = client.register_script(_lua("intercept_list.lua"))
        self._protect = client.register_script(_lua("intercept_protect.lua"))
        self._decide = client.register_script(_lua("intercept_decide.lua"))

    def key(self, kind: str, name: str = "") -> str:
        return f"{self.base}:{kind}:{name}" if name else f"{self.base}:{kind}"

    def _audit_min(self, now_ms: int) -> str:
        return str(max(0, now_ms - self.audit_retention_ms))

    async def apply(
        self, intents: Sequence[Intent], victims: Mapping[str, str], now_ms: int
    ) -> list[tuple[Intent, str, bool]]:
        """Run each intent's script (one round trip each). ``victims``: the victim number
        of each protect/member intent, by alert_id (unresolved ones are skipped). Returns
        (intent, outcome, breaker tripped now) for the intents that ran."""
        out: list[tuple[Intent, str, bool]] = []
        for it in intents:
            if it.op == "list" or (it.op == "clear" and not it.number.startswith("ps:")):
                args: list[str | int] = [
                    it.op, it.alert_id, it.number, it.mode.value, now_ms, it.expires_at_ms,
                    "1" if it.escalated else "0", self.breaker_max, self.breaker_window_ms,
                    APPLIED_KEEP_MS, self._audit_min(now_ms), it.detector, it.episode_id,
                    it.number_class, it.severity, it.reason,
                ]  # fmt: skip
                res = await self._list(keys=self._list_keys(it.number), args=args)
                out.append((it, _s(res[0]), bool(int(res[1]))))
                continue
            victim = victims.get(it.alert_id)
            if victim is None:
                continue
            keys = [
                self.key("prot", victim),
                self.key("done"),
                self.key("audit"),
                self.key("idx", "prot"),
            ]
            args = [
                it.op, it.alert_id, victim, it.number, it.caller, now_ms, it.expires_at_ms,
                APPLIED_KEEP_MS, self._audit_min(now_ms), it.detector, it.episode_id,
            ]  # fmt: skip
            out.append((it, _s(await self._protect(keys=keys, args=args)), False))
        return out

    def _list_keys(self, number: str) -> list[str]:
        return [
            self.key("icpt", number),
            self.key("pend", number),
            self.key("hold", number),
            self.key("done"),
            self.key("brk"),
            self.key("brkopen"),
            self.key("audit"),
            self.key("idx", "active"),
            self.key("idx", "pending"),
        ]

    async def stage_victims(self, via: Mapping[str, str], pseudonyms: Mapping[str, str]) -> None:
        """Remember which victim each bombing alert (by id) and pseudonym names, before the
        alerts are written to the outbox, so a restart can still resolve them."""
        if not via and not pseudonyms:
            return
        pipe = self.client.pipeline(transaction=False)
        for alert_id, victim in via.items():
            pipe.set(self.key("via", alert_id), victim, px=VIA_TTL_MS)
        for shown, victim in pseudonyms.items():
            pipe.set(self.key("ps", shown), victim, px=VIA_TTL_MS)
        await pipe.execute()

    async def resolve(self, wanted: Iterable[tuple[str, str]]) -> dict[str, str]:
        """alert_id -> victim for (alert_id, pseudonym) pairs: by alert id, else by pseudonym."""
        pairs = list(wanted)
        if not pairs:
            return {}
        keys = [self.key("via", a) for a, _ in pairs] + [self.key("ps", p) for _, p in pairs]
        values = await self.client.mget(keys)
        n = len(pairs)
        out = {}
        for i, (alert_id, _) in enumerate(pairs):
            found = values[i] or values[n + i]
            if found:
                out[alert_id] = _s(found)
        return out

    async def decide(
        self, op: str, number: str, actor: str, reason: str, kind: str, now_ms: int
    ) -> str:
        keys = [
            self.key("icpt", number),
            self.key("pend", number),
            self.key("hold", number),
            self.key("audit"),
            self.key("idx", "active"),
            self.key("idx", "pending"),
        ]
        args: list[str | int] = [
            op, number, actor, reason, kind, now_ms, self.grace_ms, self._audit_min(now_ms),
        ]  # fmt: skip
        return _s(await self._decide(keys=keys, args=args))

    async def get(self, number: str) -> list[Entry]:
        out = []
        for state, kind in (("active", "icpt"), ("pending", "pend")):
            raw = await self.client.hgetall(self.key(kind, number))
            if raw:
                fields = {_s(k): _s(v) for k, v in raw.items()}
                out.append(Entry(number, state, fields))
        return out

    async def held(self, number: str) -> str | None:
        raw = await self.client.get(self.key("hold", number))
        return None if raw is None else _s(raw)

    async def entries(self, state: str, now_ms: int) -> list[Entry]:
        """Entries in ``state`` (active, pending, all), by expiry; expired ones are pruned."""
        out: list[Entry] = []
        for name, kind in (("active", "icpt"), ("pending", "pend")):
            if state not in ("all", name):
                continue
            index = self.key("idx", name)
            await self.client.zremrangebyscore(index, "-inf", now_ms)
            numbers = [_s(n) for n in await self.client.zrange(index, 0, -1)]
            for number in numbers:
                raw = await self.client.hgetall(self.key(kind, number))
                if raw:
                    out.append(Entry(number, name, {_s(k): _s(v) for k, v in raw.items()}))
        return out

    async def protected(self, victim: str) -> dict[str, str]:
        raw = await self.client.hgetall(self.key("prot", victim))
        return {_s(k): _s(v) for k, v in raw.items()}

    async def audit(self, start: str = "-", count: int = 1000) -> list[tuple[str, dict[str, str]]]:
        rows = await self.client.xrange(self.key("audit"), min=start, max="+", count=count)
        return [(_s(i), {_s(k): _s(v) for k, v in (f or {}).items()}) for i, f in rows or ()]

    async def mirror_lock(self, token: str) -> bool:
        key = self.key("mirror", "lock")
        if await self.client.set(key, token, px=MIRROR_LOCK_MS, nx=True):
            return True
        return _s(await self.client.get(key) or b"") == token and bool(
            await self.client.pexpire(key, MIRROR_LOCK_MS)
        )

    async def mirror_cursor(self) -> str:
        raw = await self.client.get(self.key("mirror"))
        return "0-0" if raw is None else _s(raw)

    async def set_mirror_cursor(self, entry_id: str) -> None:
        await self.client.set(self.key("mirror"), entry_id)
