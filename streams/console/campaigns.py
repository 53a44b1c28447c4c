"""The console's campaign pages: the campaigns the worker found (streams.campaignwork) and one
campaign's members, victims count, timeline and leak candidates with their evidence. Only the
campaign's own numbers, business numbers and counts are shown (docs/campaigns.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote

from aiohttp import web

from streams.api.desk import BadInput, NotFound
from streams.console.pages import Session, e, number_link, page, table, to_login

WIDTH, HEIGHT, PAD = 640, 160, 36


def campaign_link(campaign_id: str) -> str:
    return f'<a href="/console/campaigns/{quote(campaign_id)}">{e(campaign_id)}</a>'


async def campaigns_page(request: web.Request) -> web.Response:
    s = Session(request)
    if s.who is None:
        return to_login()
    rows = [
        [
            campaign_link(str(c["campaign_id"])),
            e(c["size"]),
            e(c["victims"]),
            e(c.get("calls")),
            e(c["first_activity"]),
            e(c["last_activity"]),
            e(c.get("top_candidate") or "—"),
            e(c.get("candidates", 0)),
        ]
        for c in await s.desk.campaigns()
    ]
    body = (
        '<h1>Campaigns</h1><section><p class="muted">Numbers working one list, grouped by the'
        " overlap of their callees; leak candidates are the businesses the victims had"
        " contacted far more than chance allows (a lead, not proof).</p>"
        + table(
            [
                "Campaign",
                "Numbers",
                "Victims",
                "Calls",
                "First",
                "Last",
                "Top candidate",
                "Candidates",
            ],
            rows,
            "no campaign found yet",
            "campaigns",
        )
        + "</section>"
    )
    return page("Campaigns", body, s.who, name="campaigns")


def timeline_svg(points: Sequence[dict[str, int]], tz: tzinfo) -> str:
    """The campaign's size and victims at each evaluated period end it changed at."""
    if not points:
        return '<p class="muted">no timeline</p>'
    t0, t1 = points[0]["as_of_ms"], points[-1]["as_of_ms"]
    span = max(1, t1 - t0)
    top = max(max(p["victims"] for p in points), 1) * 1.1
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def x(t: int) -> float:
        return PAD + inner_w * (t - t0) / span if len(points) > 1 else PAD + inner_w / 2

    def y(v: float) -> float:
        return PAD + inner_h * (1 - v / top)

    victims = " ".join(f"{x(p['as_of_ms']):.1f},{y(p['victims']):.1f}" for p in points)
    dots = "".join(
        f'<circle cx="{x(p["as_of_ms"]):.1f}" cy="{y(p["victims"]):.1f}" r="3"'
        f' class="point"><title>{e(_day(p["as_of_ms"], tz))}: {p["size"]} numbers,'
        f" {p['victims']} victims</title></circle>"
        for p in points
    )
    return (
        f'<svg class="chart" id="timeline" width="{WIDTH}" height="{HEIGHT}"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="victims over time">'
        f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}"'
        f' y2="{HEIGHT - PAD}"/>'
        f'<polyline class="series" points="{victims}"/>{dots}'
        f'<text x="{PAD}" y="{HEIGHT - 8}">{e(_day(t0, tz))}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end">{e(_day(t1, tz))}</text>'
        f'<text x="{PAD}" y="{PAD - 8}">victims (max {max(p["victims"] for p in points)})</text>'
        "</svg>"
    )


def _day(ms: int, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M")


def candidate_rows(campaign: dict[str, Any]) -> list[list[str]]:
    victims = campaign.get("victims") or 0
    rows = []
    for rank, c in enumerate(campaign.get("candidates") or [], 1):
        rows.append(
            [
                e(rank),
                f'<span class="candidate">{e(c["number"])}</span>',
                f"{e(c['victims_contacted'])} of {e(victims)} ({100 * c['victim_share']:.1f}%)",
                f"{e(c['base_contacted'])} of {e(c['population'])} ({100 * c['base_share']:.2f}%)",
                e(c["lift"]),
                e(c["log10_p"]),
                e(c["p_value"]),
            ]
        )
    return rows


async def campaign_page(request: web.Request) -> web.Response:
    s = Session(request)
    if s.who is None:
        return to_login()
    cid = request.match_info["campaign_id"]
    try:
        found = await s.desk.campaign(cid)
    except (BadInput, NotFound) as exc:
        status = 400 if isinstance(exc, BadInput) else 404
        return page("Campaign", f'<p class="error">{e(exc)}</p>', s.who, status)
    campaign, timeline = found["campaign"], found["timeline"]
    tz = s.desk.ctx.tz
    members = "".join(f"<li>{number_link(str(m))}</li>" for m in campaign["members"])
    days = campaign.get("days")
    if campaign.get("reportable"):
        reading = (
            f"Share of the victims who had contacted the business in the {e(days)} days before"
            " their first call from this campaign, against the share of all subscribers in the"
            " same window; p: the chance of that many by chance alone (Bonferroni-adjusted)."
        )
    else:
        reading = "Too few victims to report any business (the minimum protects privacy)."
    body = (
        f'<h1>Campaign <span id="campaign-id">{e(cid)}</span></h1>'
        '<section id="summary"><table><tbody>'
        f'<tr><th>Numbers</th><td id="size">{e(campaign["size"])}</td></tr>'
        f'<tr><th>Victims</th><td id="victims">{e(campaign["victims"])}</td></tr>'
        f'<tr><th>Calls</th><td id="calls">{e(campaign.get("calls"))}</td></tr>'
        f'<tr><th>First activity</th><td id="first">{e(campaign["first_activity"])}</td></tr>'
        f'<tr><th>Last activity</th><td id="last">{e(campaign["last_activity"])}</td></tr>'
        "</tbody></table></section>"
        f"<section><h2>Timeline</h2>{timeline_svg(timeline, tz)}"
        + table(
            ["As of", "Numbers", "Victims", "Calls"],
            [
                [e(_day(p["as_of_ms"], tz)), e(p["size"]), e(p["victims"]), e(p["calls"])]
                for p in timeline
            ],
            "no timeline",
            "timeline-table",
        )
        + "</section>"
        f'<section><h2>Leak candidates</h2><p class="muted">{reading}</p>'
        + table(
            [
                "Rank",
                "Business",
                "Victims who contacted it",
                "All subscribers",
                "Lift",
                "log10 p",
                "p",
            ],
            candidate_rows(campaign),
            "no leak candidate",
            "candidates",
        )
        + "</section>"
        f'<section><h2>Members</h2><ul id="members">{members}</ul></section>'
    )
    return page(f"Campaign {cid}", body, s.who, name="campaign")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/console/campaigns", campaigns_page, allow_head=False)
    router.add_get("/console/campaigns/{campaign_id}", campaign_page, allow_head=False)
