"""The HTTP API on the worker's web server (docs/api.md): every route with the least role it
needs, JSON in and out, refusals as 401/403 and bad input as 400 with the reason; an
unexpected failure is a 500 with a JSON error and a log line, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from streams.api.auth import Principal, Role, Tokens
from streams.api.desk import BadInput, Desk, NotFound
from streams.api.openapi import document
from streams.instants import instant_ms

log = logging.getLogger("dialwatch.api")
Handler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]
DESK: web.AppKey[Desk] = web.AppKey("dialwatch_desk", Desk)
TOKENS: web.AppKey[Tokens] = web.AppKey("dialwatch_tokens", Tokens)
MAX_LIMIT = 1000


def reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error(status: int, message: str) -> web.Response:
    response = reply({"error": message}, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="dialwatch"'
    return response


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    role: Role
    handler: Handler


def guarded(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The route's handler behind its role check and the error boundary."""

    async def handle(request: web.Request) -> web.StreamResponse:
        tokens = request.app[TOKENS]
        if not len(tokens):
            return error(401, "no API tokens are configured (DIALWATCH_API_TOKENS_FILE)")
        principal = tokens.bearer(request.headers.get("Authorization"))
        if principal is None:
            return error(401, "expected Authorization: Bearer <a configured token>")
        if not principal.may(route.role):
            return error(403, f"this needs a token of role {route.role.label} or above")
        return await boundary(route.handler, request, principal)

    return handle


async def boundary(
    handler: Handler, request: web.Request, principal: Principal
) -> web.StreamResponse:
    try:
        return await handler(request, principal)
    except BadInput as exc:
        return error(400, str(exc))
    except NotFound as exc:
        return error(404, str(exc))
    except web.HTTPException:
        raise
    except Exception as exc:  # the boundary: logged, answered, never a traceback to the client
        log.warning(
            "%s %s failed: %s", request.method, request.path, type(exc).__name__, exc_info=True
        )
        return error(500, f"internal error ({type(exc).__name__}); see the worker log")


async def body_of(request: web.Request, required: bool) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadInput("expected a JSON object body")
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadInput("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise BadInput("expected a JSON object body")
    return doc


def reason_in(body: dict[str, Any]) -> object:
    """The body's ``reason``: absent is None (the default), but a JSON null is no string (the
    document's type), so it is refused like any other non-string."""
    if "reason" in body and body["reason"] is None:
        raise BadInput("reason must be a string")
    return body.get("reason")


def limit_of(request: web.Request, default: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadInput(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def number_of(desk: Desk, raw: str) -> str:
    if not 1 <= len(raw) <= 40:
        raise BadInput("a number is 1 to 40 characters")
    return desk.number(raw)


# ---------------------------------------------------------------------------- handlers


async def get_number(request: web.Request, who: Principal) -> web.Response:
    desk = request.app[DESK]
    number = number_of(desk, request.match_info["number"])
    return reply(await desk.lookup(number, who))


async def get_interceptions(request: web.Request, who: Principal) -> web.Response:
    desk = request.app[DESK]
    state = request.query.get("state", "all")
    return reply({"entries": await desk.interceptions(state)})


async def approve(request: web.Request, who: Principal) -> web.Response:
    desk = request.app[DESK]
    number = number_of(desk, request.match_info["number"])
    body = await body_of(request, required=False)
    reason = desk.reason(reason_in(body), required=False, default="approved")
    return reply(await desk.approve(number, who, reason))


async def release(request: web.Request, who: Principal) -> web.Response:
    desk = request.app[DESK]
    number = number_of(desk, request.match_info["number"])
    body = await body_of(request, required=True)
    reason = desk.reason(reason_in(body), required=True)
    kind = body.get("kind", "operator")
    if not isinstance(kind, str):
        raise BadInput("kind must be operator or appeal")
    return reply(await desk.release(number, who, reason, kind))


async def get_audit(request: web.Request, who: Principal) -> web.Response:
    desk = request.app[DESK]
    raw_number = request.query.get("number")
    number = number_of(desk, raw_number) if raw_number is not None else None
    since_ms = 0
    since = request.query.get("since")
    if since is not None:
        try:
            since_ms = instant_ms(since, desk.ctx.settings.timezone)
        except (ValueError, OverflowError, OSError):
            raise BadInput("since: expected an ISO-8601 time or epoch seconds") from None
        if not 0 <= since_ms < 2**62:
            raise BadInput("since: out of range")
    entries = await desk.audit(number, since_ms, limit_of(request, 200), who)
    return reply({"entries": entries})


async def get_breaker(request: web.Request, who: Principal) -> web.Response:
    return reply(await request.app[DESK].breaker())


async def get_recent(request: web.Request, who: Principal) -> web.Response:
    desk = request.app[DESK]
    alerts = desk.recent.newest(limit_of(request, 100))
    return reply({"alerts": alerts, "caught_up": desk.recent.caught_up})


async def get_campaigns(request: web.Request, who: Principal) -> web.Response:
    return reply({"campaigns": await request.app[DESK].campaigns()})


async def get_campaign(request: web.Request, who: Principal) -> web.Response:
    return reply(await request.app[DESK].campaign(request.match_info["campaign_id"]))


async def get_allowlist(request: web.Request, who: Principal) -> web.Response:
    return reply({"entries": request.app[DESK].allowlist_count()})


async def add_allowlist(request: web.Request, who: Principal) -> web.Response:
    desk = request.app[DESK]
    body = await body_of(request, required=True)
    raw = body.get("number")
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise BadInput('expected {"number": a phone number}')
    number = number_of(desk, str(raw))
    return reply({"entries": await desk.allowlist_add(number, who)})


async def remove_allowlist(request: web.Request, who: Principal) -> web.Response:
    desk = request.app[DESK]
    number = number_of(desk, request.match_info["number"])
    entries = await desk.allowlist_remove(number, who)
    await desk.ctx.refresh_allowlist()
    return reply({"entries": entries})


async def reload_allowlist(request: web.Request, who: Principal) -> web.Response:
    desk = request.app[DESK]
    await desk.ctx.refresh_allowlist()
    return reply({"entries": desk.allowlist_count()})


ROUTES: tuple[Route, ...] = (
    Route("GET", "/numbers/{number}", Role.READ_ONLY, get_number),
    Route("GET", "/interceptions", Role.READ_ONLY, get_interceptions),
    Route("POST", "/interceptions/{number}/approve", Role.OPERATOR, approve),
    Route("POST", "/interceptions/{number}/release", Role.OPERATOR, release),
    Route("GET", "/audit", Role.READ_ONLY, get_audit),
    Route("GET", "/breaker", Role.READ_ONLY, get_breaker),
    Route("GET", "/alerts/recent", Role.READ_ONLY, get_recent),
    Route("GET", "/campaigns", Role.READ_ONLY, get_campaigns),
    Route("GET", "/campaigns/{campaign_id}", Role.READ_ONLY, get_campaign),
    Route("GET", "/allowlist", Role.READ_ONLY, get_allowlist),
    Route("POST", "/allowlist", Role.ADMIN, add_allowlist),
    Route("DELETE", "/allowlist/entries/{number}", Role.ADMIN, remove_allowlist),
    Route("POST", "/allowlist/reload", Role.OPERATOR, reload_allowlist),
)


# ---------------------------------------------------------------------------- open routes


async def healthz(request: web.Request) -> web.Response:
    return reply({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    checks = await request.app[DESK].ready()
    ready = all(v == "ok" for v in checks.values())
    return reply({"status": "ready" if ready else "not ready", **checks}, 200 if ready else 503)


async def openapi(request: web.Request) -> web.Response:
    return reply(document(roles()))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/healthz", healthz, allow_head=False)
    router.add_get("/readyz", readyz, allow_head=False)
    router.add_get("/openapi.json", openapi, allow_head=False)
    for route in ROUTES:
        if route.method == "GET":
            router.add_get(route.path, guarded(route), allow_head=False)
        else:
            router.add_route(route.method, route.path, guarded(route))


def roles() -> dict[tuple[str, str], str]:
    """The role each route needs, as the OpenAPI document takes it."""
    return {(r.path, r.method.lower()): r.role.label for r in ROUTES}
