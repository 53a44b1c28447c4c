"""A number's window over event time as inline SVG: calls in the window at each bucket, the
thresholds on that window as dashed lines, and the moments of its alerts as red rules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from html import escape
from typing import Any

WIDTH, HEIGHT, PAD_L, PAD_B, PAD_T, PAD_R = 760, 240, 44, 28, 12, 170


def svg(chart: dict[str, Any], alert_ms: Sequence[int], tz: tzinfo) -> str:
    points: list[list[int]] = chart.get("points") or []
    if not points:
        return '<p class="muted">no calls in the retained windows</p>'
    thresholds = chart.get("thresholds") or []
    t0, t1 = points[0][0], points[-1][0]
    span = max(1, t1 - t0)
    top = float(max([p[1] for p in points] + [int(t["calls"]) for t in thresholds] + [1])) * 1.1
    inner_w, inner_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def x(t: int) -> float:
        return PAD_L + inner_w * (t - t0) / span

    def y(v: float) -> float:
        return PAD_T + inner_h * (1 - v / top)

    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>calls in {escape(str(chart.get('window')))} over event time</title>",
        f'<line class="axis" x1="{PAD_L}" y1="{y(0):.1f}" x2="{PAD_L + inner_w}" y2="{y(0):.1f}"/>',
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{y(0):.1f}"/>',
        f'<text class="label" x="4" y="{PAD_T + 10}">{int(top)}</text>',
        f'<text class="label" x="4" y="{y(0):.1f}">0</text>',
    ]
    for t in (t0, t1):
        at = datetime.fromtimestamp(t / 1000, tz).strftime("%m-%d %H:%M")
        anchor = "start" if t == t0 else "end"
        parts.append(
            f'<text class="label" x="{x(t):.1f}" y="{HEIGHT - 8}" '
            f'text-anchor="{anchor}">{at}</text>'
        )
    seen: set[int] = set()
    for th in thresholds:
        calls = int(th["calls"])
        if calls in seen:
            continue
        seen.add(calls)
        cls = "threshold intercept" if th.get("action") == "intercept" else "threshold"
        parts.append(
            f'<line class="{cls}" x1="{PAD_L}" y1="{y(calls):.1f}" x2="{PAD_L + inner_w}" '
            f'y2="{y(calls):.1f}"/><text class="label" x="{PAD_L + inner_w + 4}" '
            f'y="{y(calls) + 4:.1f}">{calls} {escape(str(th["detector"]))}</text>'
        )
    for ms in alert_ms:
        if t0 - 60_000 <= ms <= t1 + 60_000:
            parts.append(
                f'<line class="alert-moment" x1="{x(ms):.1f}" y1="{PAD_T}" x2="{x(ms):.1f}" '
                f'y2="{y(0):.1f}"><title>alert</title></line>'
            )
    parts.append(f'<polyline class="series" points="{line}"/>')
    parts.append("</svg>")
    return "".join(parts)
