"""What the operator's desk does, for the API routes and the console alike: look a number up,
list and decide interception entries, read the audit trail and the breaker, edit the shared
allowlist, say whether the worker is ready. Every decision is audited with the token's name.

Privacy (docs/api.md): a read-only principal sees callee and victim numbers only as
pseudonyms (detectors.pseudonym); calling numbers are shown as alerts show them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from config.numbering import classify, normalise
from detectors.pseudonym import pseudonym
from detectors.snapshot import FEATURES, N_FEATURES, Tally
from detectors.windows import sum_in_window
from streams.allowlist import Allowlist, shared_key
from streams.api.alerts import RecentAlerts
from streams.api.auth import Principal, Role
from streams.context import Context
from streams.derived import derived_partition
from streams.engine import Engine
from streams.interception.store import InterceptStore
from streams.items import store_key
from streams.state.blob import from_blobs
from streams.state.redis import RedisStore
from streams.topics import partition_for

RELEASE_KINDS = ("operator", "appeal")
STATES = ("active", "pending", "all")
REASON_MAX = 500
CHART_POINTS = 240
READY_TIMEOUT_S = 2.0


class BadInput(ValueError):
    """A 400: the message says what to fix."""


class NotFound(LookupError):
    """A 404: the message says what is missing."""


def now_ms() -> int:
    return int(time.time() * 1000)


class Desk:
    def __init__(self, ctx: Context, recent: RecentAlerts) -> None:
        self.ctx = ctx
        self.recent = recent
        self.key = ctx.settings.pseudonym_key.encode()

    @property
    def store(self) -> InterceptStore:
        step = self.ctx.callers.interception
        if step is None:
            raise RuntimeError("the interception step is not set up")
        return step.store

    # ---------------------------------------------------------------- input

    def number(self, raw: str) -> str:
        number = normalise(raw[:40], self.ctx.plan) if raw else None
        if number is None:
            raise BadInput(
                f"not a phone number in the numbering plan {self.ctx.settings.numbering_plan}"
            )
        return number

    @staticmethod
    def reason(raw: object, required: bool, default: str = "") -> str:
        text = raw.strip() if isinstance(raw, str) else ""
        if raw is not None and not isinstance(raw, str):
            raise BadInput("reason must be a string")
        if required and not text:
            raise BadInput("a reason is required (it is kept in the audit trail)")
        if len(text) > REASON_MAX:
            raise BadInput(f"reason: at most {REASON_MAX} characters")
        return text or default

    def shown(self, number: str, principal: Principal) -> str:
        """A callee or victim number as ``principal`` may see it."""
        return number if principal.may(Role.OPERATOR) else pseudonym(number, self.key)

    def iso(self, ms: int | None) -> str | None:
        if not ms:
            return None
        return datetime.fromtimestamp(ms / 1000, self.ctx.tz).isoformat(timespec="seconds")

    # ---------------------------------------------------------------- reads

    async def lookup(self, number: str, principal: Principal) -> dict[str, Any]:
        """A number's windows, features, open episodes, interception state and alerts."""
        caller = await self._subject(self.ctx.callers.engine, "number", number)
        as_callee = await self._subject(self.ctx.subjects.engine, "callee", number)
        entries = [self.entry(e.to_dict()) for e in await self.store.get(number)]
        held = await self.store.held(number)
        protected = await self.store.protected(number)
        protection = None
        if protected:
            callers = sorted(k for k in protected if k[:1] != "_")
            protection = {
                "victim": self.shown(number, principal),
                "callers": callers,
                "alert_id": protected.get("_alert_id", ""),
                "expires_at": self.iso(int(protected.get("_expires_at_ms", "0") or 0)),
            }
        shown_callee = pseudonym(number, self.key)
        alerts = self.recent.newest(50, numbers={number, shown_callee})
        allowlist = self.ctx.callers.engine.allowlist
        if as_callee is not None:
            as_callee["subject"] = self.shown(number, principal)
        return {
            "number": number,
            "number_class": str(classify(number, self.ctx.plan)),
            "allowlisted": number in allowlist if isinstance(allowlist, Allowlist) else False,
            "caller": caller,
            "callee": as_callee,
            "interception": {"entries": entries, "held": held, "protection": protection},
            "alerts": alerts,
        }

    async def _subject(self, engine: Engine, kind: str, number: str) -> dict[str, Any] | None:
        partitions = self.ctx.settings.topic_partitions
        if kind == "number":
            partition = partition_for(number.encode(), partitions)
        else:
            partition = derived_partition(number, partitions)
        key = store_key(kind, number)
        read = await engine.store.read(partition, [key], -1)
        blob, episodes = read.windows.get(key), read.episodes.get(key)
        if not blob and not episodes:
            return None
        state = from_blobs(blob, episodes)
        subj = engine.episodes.subject_of(key)
        windows: dict[str, Any] = {}
        if state.newest_ms:
            snap = engine.snapshot(subj, state)
            for name, tally in snap.windows.items():
                windows[name] = features(tally)
        return {
            "subject": number,
            "kind": kind,
            "newest_call": self.iso(state.newest_ms),
            "windows": windows,
            "episodes": [
                {"detector": d, "severity": e.severity, "opened_at": self.iso(e.opened_ms)}
                for d, e in sorted(state.episodes.items())
            ],
            "chart": self._chart(engine, kind, state, subj.number_class)
            if state.newest_ms
            else None,
        }

    def _chart(self, engine: Engine, kind: str, state: Any, number_class: str) -> dict[str, Any]:
        """A window's calls over event time, with the thresholds on that window for the
        number's class. Over the retained day (the long buckets) with the shortest window of
        at least two long buckets (1h by default); without long buckets, the shortest window
        over the short buckets (the last hour)."""
        plan = engine.plans[kind]
        long_s = self.ctx.settings.long_bucket_s
        over_day = [s for s in plan.specs if s.length_s % long_s == 0 and s.length_s >= 2 * long_s]
        if state.long and over_day:
            spec = min(over_day, key=lambda s: s.length_s)
            buckets, width, n = state.long, long_s, spec.length_s // long_s
        else:
            spec = min(plan.specs, key=lambda s: s.length_s)
            buckets = state.long if spec.long else state.short
            width, n = spec.bucket_s, spec.n_buckets
        points: list[list[int]] = []
        if buckets:
            first, last = min(buckets), max(buckets)
            first = max(first, last - CHART_POINTS + 1)
            for b in range(first, last + 1):
                calls = sum_in_window(buckets, b, n, N_FEATURES)[0]
                points.append([(b + 1) * width * 1000, calls])
        thresholds = []
        factor = engine.policy.factor(number_class)
        for _, dp in plan.detectors:
            for level in dp.levels:
                if level.classes and number_class not in level.classes:
                    continue
                limit = level.thresholds.get(spec.name)
                if limit is not None:
                    calls = max(1, -(-int(limit * factor * 1000) // 1000))
                    thresholds.append(
                        {"detector": dp.name, "severity": level.severity,
                         "action": level.action, "calls": calls}
                    )  # fmt: skip
        return {"window": spec.name, "bucket_s": width, "points": points,
                "thresholds": thresholds}  # fmt: skip

    def entry(self, row: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in row.items() if k not in ("listed_at_ms", "approved_at_ms")}
        out["expires_at"] = self.iso(int(row.get("expires_at_ms", 0) or 0))
        out["listed_at"] = self.iso(int(row.get("listed_at_ms", 0) or 0))
        if row.get("approved_at_ms"):
            out["approved_at"] = self.iso(int(row["approved_at_ms"]))
        return out

    async def interceptions(self, state: str) -> list[dict[str, Any]]:
        if state not in STATES:
            raise BadInput("state must be active, pending or all")
        return [self.entry(e.to_dict()) for e in await self.store.entries(state, now_ms())]

    async def audit(
        self, number: str | None, since_ms: int, limit: int, principal: Principal
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` audit entries (oldest first), of ``number`` when given: read
        newest first in chunks, so an unfiltered call reads only ``limit`` entries."""
        low = f"{since_ms}-0" if since_ms else "-"
        high = "+"
        rows: list[dict[str, Any]] = []
        victim = pseudonym(number, self.key) if number else None
        client, key = self.store.client, self.store.key("audit")
        while len(rows) < limit:
            chunk = await client.xrevrange(key, max=high, min=low, count=1000)
            for raw_id, raw in chunk or ():
                fields = {_text(k): _text(v) for k, v in (raw or {}).items()}
                if number and fields.get("number") not in (number, victim):
                    continue
                row: dict[str, Any] = {"event_id": _text(raw_id), **fields}
                row["at"] = self.iso(int(fields.get("at_ms", "0") or 0))
                rows.append(row)
                if len(rows) >= limit:
                    break
            if not chunk or len(chunk) < 1000:
                break
            high = f"({_text(chunk[-1][0])}"
        rows.reverse()
        return rows

    async def breaker(self) -> dict[str, Any]:
        store, now = self.store, now_ms()
        client = store.client
        recent = await client.zcount(store.key("brk"), now - store.breaker_window_ms, "+inf")
        is_open = bool(await client.exists(store.key("brkopen")))
        return {
            "open": is_open,
            "recent_auto_listings": int(recent),
            "max": store.breaker_max,
            "window_s": store.breaker_window_ms // 1000,
        }

    # ---------------------------------------------------------------- decisions

    async def approve(self, number: str, principal: Principal, reason: str) -> dict[str, Any]:
        done = await self.store.decide(
            "approve", number, principal.name, reason or "approved", "operator", now_ms()
        )
        if done != "1":
            raise NotFound("no pending entry for this number")
        entries = await self.store.get(number)
        return {"number": number, "result": "approved",
                "entries": [self.entry(e.to_dict()) for e in entries]}  # fmt: skip

    async def release(
        self, number: str, principal: Principal, reason: str, kind: str
    ) -> dict[str, Any]:
        if kind not in RELEASE_KINDS:
            raise BadInput("kind must be operator or appeal")
        result = await self.store.decide("release", number, principal.name, reason, kind, now_ms())
        return {"number": number, "result": result,
                "held_for_s": self.store.grace_ms // 1000}  # fmt: skip

    async def allowlist_add(self, number: str, principal: Principal) -> int:
        allowlist = self._allowlist()
        redis = self._redis()
        if redis is not None:
            await redis.sadd(shared_key(self.ctx.settings.key_prefix), number)
        allowlist.add(number)
        await self.store.decide(
            "release", number, principal.name, "allowlisted", "allowlist", now_ms()
        )  # off the interception list at once, audited
        return len(allowlist)

    async def allowlist_remove(self, number: str, principal: Principal) -> int:
        allowlist = self._allowlist()
        redis = self._redis()
        removed = 0
        if redis is not None:
            removed = int(await redis.srem(shared_key(self.ctx.settings.key_prefix), number))
        removed += allowlist.discard(number)
        if not removed:
            raise NotFound("not a shared allowlist entry (file entries change in the file)")
        await self.store.client.xadd(
            self.store.key("audit"),
            {"event": "allowlist_remove", "number": number, "state": "", "actor": principal.name,
             "reason": "removed from the shared allowlist", "kind": "allowlist",
             "at_ms": str(now_ms())},
        )  # fmt: skip
        return len(allowlist)

    def _allowlist(self) -> Allowlist:
        allowlist = self.ctx.callers.engine.allowlist
        if not isinstance(allowlist, Allowlist):
            raise RuntimeError("the worker has no allowlist")
        return allowlist

    def _redis(self) -> Any:
        store = self.ctx.callers.engine.store
        return store.client if isinstance(store, RedisStore) else None

    def allowlist_count(self) -> int:
        allowlist = self.ctx.callers.engine.allowlist
        return len(allowlist) if isinstance(allowlist, Allowlist) else 0

    # ---------------------------------------------------------------- readiness

    async def ready(self) -> dict[str, str]:
        """``ok`` or why not, for Kafka (the broker probe) and each Redis (a PING now)."""
        out = {"kafka": "ok" if self.ctx.broker.ok and self.ctx.broker.answered else "unreachable"}
        clients = {"redis": self._redis(), "intercept_redis": self.store.client}
        for name, client in clients.items():
            if client is None:
                out[name] = "ok" if name == "redis" else "unreachable"
                continue
            try:
                await asyncio.wait_for(client.ping(), READY_TIMEOUT_S)
                out[name] = "ok"
            except Exception as exc:  # any failure means "not answering now"
                out[name] = f"unreachable ({type(exc).__name__})"
        return out


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def features(tally: Tally) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(tally, name) for name in FEATURES}
    out["distinct"] = tally.distinct
    out["answer_rate"] = round(tally.share("answered"), 4)
    out["short_share"] = round(tally.share("short"), 4)
    out["distinct_share"] = round(tally.share("distinct"), 4)
    return out
