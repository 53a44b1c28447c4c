"""The console's SVG chart and page helpers (streams.console): pure rendering, no server."""

from __future__ import annotations

from datetime import UTC

import pytest

from streams.console.chart import svg
from streams.console.pages import number_link, table

T0 = 1_796_000_000_000
CHART = {
    "window": "40m",
    "bucket_s": 600,
    "points": [[T0 + i * 600_000, c] for i, c in enumerate((0, 5, 30, 260, 240))],
    "thresholds": [
        {"detector": "bulk_dialling", "severity": "critical", "action": "intercept", "calls": 250},
        {"detector": "bulk_dialling", "severity": "warning", "action": "monitor", "calls": 250},
        {"detector": "<script>", "severity": "info", "action": "monitor", "calls": 100},
    ],
}


@pytest.mark.parametrize(
    ("alerts", "moments"),
    [([], 0), ([T0 + 1_800_000], 1), ([T0 + 1_800_000, T0 + 9_999_999_999], 1)],
)
def test_the_chart_draws_thresholds_once_and_alert_moments_in_range(
    alerts: list[int], moments: int
) -> None:
    drawn = svg(CHART, alerts, UTC)
    assert drawn.startswith("<svg") and drawn.count("<polyline") == 1
    assert drawn.count('class="threshold intercept"') == 1  # 250 once, as intercept
    assert drawn.count('class="threshold"') == 1  # 100
    assert drawn.count("alert-moment") == moments
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn


def test_no_points_is_said_not_drawn() -> None:
    assert "no calls" in svg({"points": []}, [], UTC)


def test_tables_and_links_escape_and_say_when_empty() -> None:
    assert "nothing" in table(["a"], [], "nothing here", "t")
    assert "<td>x</td>" in table(["a"], [["x"]], "", "t")
    assert (
        number_link('1"><b>')
        == '<a href="/console/numbers/1%22%3E%3Cb%3E">1&quot;&gt;&lt;b&gt;</a>'
    )
