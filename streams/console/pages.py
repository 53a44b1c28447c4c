"""The console (/console): server-rendered pages over the same desk as the API.

Login is a form POST of a token; the answer sets an HttpOnly, SameSite=Strict session cookie
(signed, see streams.api.auth) and the token never appears in a URL. Every form that changes
something carries the session's CSRF token and needs the operator role, exactly as the API.
To add a page: a handler that returns ``page(...)``, a line in ``add_routes`` and, for the
header, an entry in ``NAV``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import quote

from aiohttp import web

from streams.api.auth import Principal, Role, Tokens
from streams.api.desk import BadInput, Desk, NotFound
from streams.api.routes import DESK, TOKENS
from streams.console.chart import svg

COOKIE = "dw_console"
NAV: tuple[tuple[str, str], ...] = (("/console", "Overview"), ("/console/campaigns", "Campaigns"))
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _template(name: str) -> Template:
    text = resources.files("streams.console").joinpath("templates", name).read_text("utf-8")
    return Template(text)


def e(value: object) -> str:
    return escape("" if value is None else str(value))


def page(
    title: str,
    body: str,
    who: Principal | None,
    status: int = 200,
    name: str = "page",
    csrf: str = "",
) -> web.Response:
    nav = "".join(f'<a href="{e(href)}">{e(label)}</a>' for href, label in NAV) if who else ""
    user = ""
    if who is not None:
        user = (
            f'<span id="who">{e(who.name)} ({e(who.role.label)})</span>'
            '<form method="post" action="/console/logout">'
            '<button id="logout">Sign out</button></form>'
        )
    html = _template("layout.html").substitute(
        title=e(title),
        nav=nav,
        user=user,
        body=body,
        page=e(name),
        csrf=f'<meta name="csrf" content="{e(csrf)}">' if csrf else "",
    )
    return web.Response(text=html, status=status, content_type="text/html",
                        headers=SECURITY_HEADERS)  # fmt: skip


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str, id_: str) -> str:
    rows = list(rows)
    if not rows:
        return f'<p class="muted" id="{id_}-empty">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{id_}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def post_form(action: str) -> str:
    return f'<form class="inline" method="post" action="{e(action)}">'


def number_link(number: str) -> str:
    return f'<a href="/console/numbers/{quote(number)}">{e(number)}</a>'


class Session:
    def __init__(self, request: web.Request) -> None:
        self.tokens: Tokens = request.app[TOKENS]
        self.desk: Desk = request.app[DESK]
        self.cookie = request.cookies.get(COOKIE, "")
        self.who = self.tokens.from_session(self.cookie)

    def csrf(self) -> str:
        return self.tokens.csrf(self.cookie)

    def csrf_field(self) -> str:
        return f'<input type="hidden" name="csrf" value="{e(self.csrf())}">'

    def csrf_ok(self, form: Any) -> bool:
        import hmac

        return hmac.compare_digest(str(form.get("csrf", "")), self.tokens.csrf(self.cookie))


def to_login() -> web.Response:
    raise web.HTTPSeeOther("/console/login")


# ---------------------------------------------------------------------------- login


async def login_form(request: web.Request) -> web.Response:
    return page("Sign in", _template("login.html").substitute(message=""), None)


async def login(request: web.Request) -> web.Response:
    tokens: Tokens = request.app[TOKENS]
    form = await request.post()
    who = tokens.check(str(form.get("token", "")).strip()) if len(tokens) else None
    if who is None:
        message = '<p class="error" id="login-error">That token is not configured.</p>'
        return page("Sign in", _template("login.html").substitute(message=message), None, 401)
    lifetime = request.app[DESK].ctx.settings.api_session_s
    response = web.HTTPSeeOther("/console")
    response.set_cookie(
        COOKIE, tokens.session(who, lifetime), max_age=lifetime, path="/console",
        httponly=True, samesite="Strict", secure=request.secure,
    )  # fmt: skip
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/console/login")
    response.del_cookie(COOKIE, path="/console")
    raise response


# ---------------------------------------------------------------------------- pages


def alert_rows(alerts: Iterable[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for a in alerts:
        number = str(a.get("number", ""))
        shown = number_link(number) if a.get("subject") == "number" else e(number)
        reasons = "<br>".join(e(r) for r in a.get("reasons") or ())
        rows.append([
            e(a.get("event_time")), shown, e(a.get("detector")), e(a.get("state")),
            e(a.get("severity")), e(a.get("action")), reasons,
        ])  # fmt: skip
    return rows


async def overview(request: web.Request) -> web.Response:
    s = Session(request)
    if s.who is None:
        return to_login()
    desk, who = s.desk, s.who
    breaker = await desk.breaker()
    pending = await desk.interceptions("pending")
    active = await desk.interceptions("active")
    state = "open" if breaker["open"] else "closed"
    parts = [
        '<section id="breaker" data-live><h2>Breaker</h2>'
        f'<p><span class="badge {state}" id="breaker-state">{state}</span> '
        f"{breaker['recent_auto_listings']} auto-listings in the last {breaker['window_s']} s "
        f"(opens above {breaker['max']}: new entries then wait for approval)</p></section>",
        '<section><form class="inline" method="get" action="/console/lookup">'
        '<input type="text" name="number" id="lookup" placeholder="look a number up" required>'
        "<button>Look up</button></form></section>",
    ]
    operator = who.may(Role.OPERATOR)
    rows = []
    for entry in pending:
        number = str(entry["number"])
        cells = [number_link(number), e(entry.get("detector")), e(entry.get("reason")),
                 e(entry.get("listed_at")), e(entry.get("expires_at"))]  # fmt: skip
        if operator:
            action = quote(number)
            cells.append(
                f"{post_form(f'/console/interceptions/{action}/approve')}"
                f'{s.csrf_field()}<input type="hidden" name="next" value="/console">'
                f'<button class="primary approve" data-number="{e(number)}">Approve</button>'
                "</form> "
                f"{post_form(f'/console/interceptions/{action}/release')}"
                f'{s.csrf_field()}<input type="hidden" name="next" value="/console">'
                f'<input type="text" name="reason" placeholder="reason" required>'
                f'<button class="danger reject" data-number="{e(number)}">Reject</button></form>'
            )
        rows.append(cells)
    headers = ["number", "detector", "reason", "listed", "expires"] + (
        ["decide"] if operator else []
    )
    parts.append(
        '<section id="pending" data-live><h2>Pending approval</h2>'
        + table(headers, rows, "nothing waits for approval", "pending-table")
        + "</section>"
    )
    rows = [
        [number_link(str(x["number"])), e(x.get("detector")), e(x.get("reason")),
         e(x.get("approved_by", "auto")), e(x.get("expires_at"))]
        for x in active
    ]  # fmt: skip
    parts.append(
        '<section id="active" data-live><h2>Active interceptions</h2>'
        + table(["number", "detector", "reason", "approved by", "expires"], rows,
                "nothing is intercepted", "active-table") + "</section>"
    )  # fmt: skip
    recent = desk.recent.newest(50)
    parts.append(
        '<section id="alerts" data-live><h2>Recent alerts</h2>'
        + table(["event time", "number", "detector", "state", "severity", "action", "reasons"],
                alert_rows(recent), "no alert yet", "alerts-table") + "</section>"
    )  # fmt: skip
    notice = request.query.get("done")
    if notice:
        parts.insert(0, f'<p class="notice" id="notice">{e(notice)}</p>')
    return page("Overview", "".join(parts), who, name="overview", csrf=s.csrf())


async def lookup(request: web.Request) -> web.Response:
    s = Session(request)
    if s.who is None:
        return to_login()
    try:
        number = s.desk.number(str(request.query.get("number", ""))[:40])
    except BadInput as exc:
        return page("Look up", f'<p class="error">{e(exc)}</p>', s.who, 400)
    raise web.HTTPSeeOther(f"/console/numbers/{quote(number)}")


def _ms(iso: object) -> int | None:
    try:
        return int(datetime.fromisoformat(str(iso)).timestamp() * 1000)
    except ValueError:
        return None


async def number_page(request: web.Request) -> web.Response:
    s = Session(request)
    if s.who is None:
        return to_login()
    desk, who = s.desk, s.who
    try:
        number = desk.number(request.match_info["number"][:40])
    except BadInput as exc:
        return page("Number", f'<p class="error">{e(exc)}</p>', who, 400)
    view = await desk.lookup(number, who)
    audit = await desk.audit(number, 0, 200, who)
    icpt = view["interception"]
    states = [str(x["state"]) for x in icpt["entries"]]
    badges = "".join(
        f'<span class="badge {e(st)}" id="state-{e(st)}">{e(st)}</span> ' for st in states
    )
    summary = [
        f'<h1>{e(number)} <span class="muted">{e(view["number_class"])}</span></h1>',
        f'<p id="number-state">{badges or "<span class=muted>not listed</span>"}'
        f"{' · allowlisted' if view['allowlisted'] else ''}"
        f"{' · held out: ' + e(icpt['held']) if icpt['held'] else ''}</p>",
    ]
    for entry in icpt["entries"]:
        summary.append(
            f"<p>{e(entry['state'])}: {e(entry.get('detector'))}, {e(entry.get('reason'))}; "
            f"alert {e(entry.get('alert_id'))}, expires {e(entry.get('expires_at'))}</p>"
        )
    if icpt["protection"]:
        prot = icpt["protection"]
        summary.append(
            f"<p>protected victim {e(prot['victim'])}: calls from {e(', '.join(prot['callers']))} "
            f"are rejected (until {e(prot['expires_at'])})</p>"
        )
    if who.may(Role.OPERATOR):
        action = quote(number)
        here = f"/console/numbers/{action}"
        if "pending" in states:
            summary.append(
                f"{post_form(f'/console/interceptions/{action}/approve')}"
                f'{s.csrf_field()}<input type="hidden" name="next" value="{e(here)}">'
                '<button class="primary" id="approve">Approve</button></form> '
            )
        summary.append(
            f"{post_form(f'/console/interceptions/{action}/release')}"
            f'{s.csrf_field()}<input type="hidden" name="next" value="{e(here)}">'
            '<input type="text" name="reason" id="release-reason" '
            'placeholder="reason (required)" required>'
            '<button class="danger" id="release">Release</button></form>'
        )
    notice = request.query.get("done")
    if notice:
        summary.insert(0, f'<p class="notice" id="notice">{e(notice)}</p>')
    parts = ["<section>" + "".join(summary) + "</section>"]
    alert_ms = [m for m in (_ms(a.get("event_time")) for a in view["alerts"]) if m is not None]
    for role, subject in (("as a caller", view["caller"]), ("as a callee", view["callee"])):
        if subject is None:
            continue
        chart = subject.get("chart")
        rows = [
            [e(name)] + [e(w[k]) for k in ("calls", "answered", "short", "distinct",
                                          "sequential", "unallocated", "answer_rate",
                                          "short_share", "distinct_share")]
            for name, w in subject["windows"].items()
        ]  # fmt: skip
        episodes = [
            [e(x["detector"]), e(x["severity"]), e(x["opened_at"])] for x in subject["episodes"]
        ]
        parts.append(
            f'<section class="subject"><h2>{e(role)} ({e(subject["subject"])}), newest call '
            f'{e(subject["newest_call"])}</h2>'
            + (f'<p class="muted">calls in the {e(chart["window"])} window over event time; '
               "dashed: "
               "thresholds, red: alerts</p>" + svg(chart, alert_ms, desk.ctx.tz) if chart else "")
            + table(["window", "calls", "answered", "short", "distinct", "sequential",
                     "unallocated", "answer rate", "short share", "distinct share"], rows,
                    "no windows", f"windows-{subject['kind']}")
            + "<h2>Open episodes</h2>"
            + table(["detector", "severity", "opened"], episodes, "none open",
                    f"episodes-{subject['kind']}") + "</section>"
        )  # fmt: skip
    parts.append(
        "<section><h2>Alerts</h2>"
        + table(["event time", "number", "detector", "state", "severity", "action", "reasons"],
                alert_rows(view["alerts"]), "no recent alert", "number-alerts") + "</section>"
    )  # fmt: skip
    rows = [
        [e(x.get("at")), e(x.get("event")), e(x.get("actor")), e(x.get("reason")),
         e(x.get("kind")), e(x.get("alert_id"))]
        for x in reversed(audit)
    ]  # fmt: skip
    parts.append(
        "<section><h2>Audit trail</h2>"
        + table(["at", "event", "actor", "reason", "kind", "alert"], rows, "no audit entry",
                "audit-table") + "</section>"
    )  # fmt: skip
    return page(number, "".join(parts), who, name="number", csrf=s.csrf())


async def decide(request: web.Request) -> web.Response:
    s = Session(request)
    if s.who is None:
        return page("Sign in", '<p class="error">Your session ended: sign in again.</p>', None, 401)
    form = await request.post()
    if not s.csrf_ok(form):
        return page(
            "Refused",
            '<p class="error" id="refused">The form is stale: reload the page.</p>',
            s.who,
            403,
        )
    if not s.who.may(Role.OPERATOR):
        return page(
            "Refused",
            '<p class="error" id="refused">A read-only token cannot change anything.</p>',
            s.who,
            403,
        )
    desk, op = s.desk, request.match_info["op"]
    try:
        number = desk.number(request.match_info["number"][:40])
        if op == "approve":
            await desk.approve(number, s.who, desk.reason(form.get("reason"), False, "approved"))
            done = f"{number}: approved, now active"
        else:
            result = await desk.release(
                number, s.who, desk.reason(form.get("reason"), True), "operator"
            )
            done = f"{number}: {result['result']}"
    except BadInput as exc:
        return page("Bad input", f'<p class="error" id="refused">{e(exc)}</p>', s.who, 400)
    except NotFound as exc:
        return page("Nothing to do", f'<p class="error" id="refused">{e(exc)}</p>', s.who, 404)
    target = str(form.get("next", "/console"))
    if not target.startswith("/console"):
        target = "/console"
    raise web.HTTPSeeOther(f"{target}?done={quote(done)}")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    body = resources.files("streams.console").joinpath("static", name).read_bytes()
    return web.Response(body=body, content_type=STATIC[name],
                        headers={"Cache-Control": "max-age=300"})  # fmt: skip


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/console", overview, allow_head=False)
    router.add_get("/console/login", login_form, allow_head=False)
    router.add_post("/console/login", login)
    router.add_post("/console/logout", logout)
    router.add_get("/console/lookup", lookup, allow_head=False)
    router.add_get("/console/numbers/{number}", number_page, allow_head=False)
    router.add_post("/console/interceptions/{number}/{op:approve|release}", decide)
    router.add_get("/console/static/{name}", static, allow_head=False)
