"""The worker's web server (README "Metrics and endpoints"): /metrics and /health here, the
operator's API (streams.api, docs/api.md) and the console (streams.console) registered on the
same aiohttp application."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import faust
from aiohttp import web
from faust.web import View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.api.alerts import RecentAlerts
from streams.api.auth import load_tokens
from streams.api.desk import Desk
from streams.api.routes import DESK, TOKENS, add_routes
from streams.console import campaigns, pages
from streams.context import Context


class Endpoint(View):
    """A view of one worker: ``register`` subclasses it with the worker's context."""

    ctx: ClassVar[Context]


class MetricsPage(Endpoint):
    async def get(self, request: Any) -> Any:
        body = generate_latest(self.ctx.callers.metrics.registry)
        return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])


class HealthPage(Endpoint):
    lag: ClassVar[Callable[[], dict[str, object]]]  # streams.gauges.Gauges.lag

    async def get(self, request: Any) -> Any:
        callers, subjects, broker = self.ctx.callers, self.ctx.subjects, self.ctx.broker
        stages_ok = callers.healthy and subjects.healthy
        healthy = stages_ok and broker.ok
        body = {
            "status": "ok" if healthy else "degraded",
            "store": "ok" if stages_ok else (callers.last_error or subjects.last_error),
            "broker": "ok" if broker.ok else "unreachable",
            "last_batch_at": callers.last_batch_at,
            "lag": type(self).lag(),
        }
        return self.json(body, status=200 if healthy else 503)


ROUTES: tuple[tuple[str, type[Endpoint]], ...] = (
    ("/metrics", MetricsPage),
    ("/health", HealthPage),
)


def register(app: faust.App, ctx: Context, lag: Callable[[], dict[str, object]]) -> None:
    """Serve the endpoints, the API and the console on ``app``'s web server, over ``ctx``;
    ``lag`` gives /health's lag (streams.gauges.Gauges.lag). Raises ValueError (naming the file
    and line) for an unusable tokens file."""
    for path, view in ROUTES:
        app.page(path)(type(view.__name__, (view,), {"ctx": ctx, "lag": staticmethod(lag)}))
    recent = RecentAlerts(ctx.settings)
    web_app: web.Application = app.web.web_app  # type: ignore[attr-defined]
    web_app[DESK] = Desk(ctx, recent)
    web_app[TOKENS] = load_tokens(ctx.settings)

    async def start_tail(_: web.Application) -> None:
        recent.start()

    async def stop_tail(_: web.Application) -> None:
        recent.stop()

    web_app.on_startup.append(start_tail)
    web_app.on_cleanup.append(stop_tail)
    add_routes(web_app.router)
    pages.add_routes(web_app.router)
    campaigns.add_routes(web_app.router)
