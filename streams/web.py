"""The worker's web endpoints (README "Metrics and endpoints"): /health, /metrics, and the
allowlist's count, shared additions and reload (state-changing calls need the bearer token)."""

from __future__ import annotations

from typing import Any, ClassVar

import faust
from faust.web import View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.numbering import normalise
from streams.allowlist import Allowlist, shared_key
from streams.context import Context
from streams.security import bearer_ok
from streams.state.redis import RedisStore


class Endpoint(View):
    """A view of one worker: ``register`` subclasses it with the worker's context."""

    ctx: ClassVar[Context]

    def entries(self) -> int:
        allowlist = self.ctx.callers.engine.allowlist
        return len(allowlist) if isinstance(allowlist, Allowlist) else 0


class AllowlistView(Endpoint):
    """GET: how many entries. POST {"number": ...} (bearer token): add a shared entry."""

    async def get(self, request: Any) -> Any:
        return self.json({"entries": self.entries()})

    async def post(self, request: Any) -> Any:
        ctx = self.ctx
        if not bearer_ok(request.headers.get("Authorization"), ctx.token):
            return self.json({"error": "unauthorised"}, status=401)
        allowlist, store = ctx.callers.engine.allowlist, ctx.callers.engine.store
        try:
            body = await request.json()
            number = normalise(str(body["number"])[:40], ctx.plan)
        except (ValueError, KeyError, TypeError):
            number = None
        if number is None or not isinstance(allowlist, Allowlist):
            return self.json({"error": 'expected {"number": a phone number}'}, status=400)
        if isinstance(store, RedisStore):
            await store.client.sadd(shared_key(ctx.settings.key_prefix), number)
        allowlist.add(number)
        if ctx.callers.interception is not None:  # off the interception list at once
            await ctx.callers.interception.release(number, "api", "allowlisted", "allowlist")
        return self.json({"entries": len(allowlist)})


class AllowlistReload(Endpoint):
    async def post(self, request: Any) -> Any:
        if not bearer_ok(request.headers.get("Authorization"), self.ctx.token):
            return self.json({"error": "unauthorised"}, status=401)
        await self.ctx.refresh_allowlist()
        return self.json({"entries": self.entries()})


class MetricsPage(Endpoint):
    async def get(self, request: Any) -> Any:
        body = generate_latest(self.ctx.callers.metrics.registry)
        return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])


class HealthPage(Endpoint):
    async def get(self, request: Any) -> Any:
        callers, subjects, broker = self.ctx.callers, self.ctx.subjects, self.ctx.broker
        stages_ok = callers.healthy and subjects.healthy
        healthy = stages_ok and broker.ok
        body = {
            "status": "ok" if healthy else "degraded",
            "store": "ok" if stages_ok else (callers.last_error or subjects.last_error),
            "broker": "ok" if broker.ok else "unreachable",
            "last_batch_at": callers.last_batch_at,
        }
        return self.json(body, status=200 if healthy else 503)


ROUTES: tuple[tuple[str, type[Endpoint]], ...] = (
    ("/allowlist", AllowlistView),
    ("/allowlist/reload", AllowlistReload),
    ("/metrics", MetricsPage),
    ("/health", HealthPage),
)


def register(app: faust.App, ctx: Context) -> None:
    """Serve the endpoints on ``app``'s web server, over ``ctx``."""
    for path, view in ROUTES:
        app.page(path)(type(view.__name__, (view,), {"ctx": ctx}))
