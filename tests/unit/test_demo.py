"""The demo's screen and summary: pure rendering, no services."""

from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from config.settings import Settings
from streams.tools import demo
from streams.tools.demo import AlertRow, Watch

NAMES = (
    "sequential_dialling",
    "coordinated_block",
    "spoofed_identity",
    "bulk_dialling",
    "call_bombing",
)


def _alert(n: int, state: str, detector: str, number: str, episode: str) -> dict[str, Any]:
    return {
        "alert_id": f"a{n}",
        "episode_id": episode,
        "number": number,
        "detector": detector,
        "state": state,
        "severity": "info" if state == "cleared" else "critical",
        "action": "monitor" if state == "cleared" else "intercept",
        "event_time": f"2026-12-01T10:{n % 60:02d}:00+08:00",
        "reasons": ["4 calls in 10m >= 4", "min_sequential 3 holds in 10m", "and a longer one"],
    }


def _watch() -> Watch:
    watch = Watch("redis", 20_000)
    numbers = ("17005261563", "ps:0123456789abcdef0123", "intl-gw-07", "1700526150xx", "95123")
    for n in range(40):
        alert = _alert(n, "raised", NAMES[n % 5], numbers[n % 5], f"e{n}")
        watch.add(AlertRow.from_message(orjson.dumps(alert)), alert)
    for n in range(30):  # most episodes cleared again, as at the end of a run
        alert = _alert(100 + n, "cleared", NAMES[n % 5], numbers[n % 5], f"e{n}")
        watch.add(AlertRow.from_message(orjson.dumps(alert)), alert)
    return watch


def _render(watch: Watch, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, legacy_windows=False)
    console.print(watch.view(20_000, width))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


@pytest.mark.parametrize("width", [80, 160])
def test_the_live_table_fits_the_terminal_without_breaking_words(width: int) -> None:
    text = _render(_watch(), width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width, text
    assert "…" not in text.split("\n", 1)[0]  # the header is whole
    for name in NAMES:  # every detector name shown whole, never folded across lines
        assert name in text, text
    assert "ps:0123456789abcdef0123" in text
    body = "\n".join(lines[3:])
    assert not re.search(r"\b(_block|_dialling|_identity|ntity)\b", body), text


def test_the_table_shows_raised_alerts_and_marks_the_cleared_ones() -> None:
    watch = _watch()
    text = _render(watch, 160)
    assert watch.counts() == (40, 30)
    assert "alerts 40 raised, 30 cleared" in text
    rows = [line for line in text.splitlines() if "intercept" in line]
    assert len(rows) == demo.LIVE_ROWS  # the newest raised alerts, not cleared rows
    assert sum("cleared" in line for line in rows) == 5  # e25..e29 closed, e30..e39 still open


def test_a_repeated_alert_is_counted_once() -> None:
    watch = Watch("memory", 1)
    alert = _alert(1, "raised", "bulk_dialling", "17005261563", "e1")
    row = AlertRow.from_message(orjson.dumps(alert))
    assert watch.add(row, alert) is True
    assert watch.add(row, alert) is False
    assert watch.counts() == (1, 0) and len(watch.raw) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hours": 2.0}, "dialwatch demo: --hours must be at least 4 (got 2)\n"),
        ({"hours": float("nan")}, "dialwatch demo: --hours must be at least 4 (got nan)\n"),
        ({"subscribers": 5}, "dialwatch demo: --subscribers must be at least 100 (got 5)\n"),
    ],
)
def test_bad_arguments_get_one_line_and_status_2_before_anything_starts(
    options: dict[str, Any],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    args: dict[str, Any] = {"subscribers": 3000, "hours": 6.0, "seed": 7, **options}
    assert demo.run_demo(Settings(), **args) == demo.USAGE
    out, err = capsys.readouterr()
    assert (out, err) == ("", message)
    assert list(tmp_path.iterdir()) == []  # no work directory, hence no service either


def test_a_failed_target_is_named_with_its_figure_and_target() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from streams.tools.scenario import ScenarioSpec, generate_scenario

    start = datetime(2026, 11, 30, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    scenario = generate_scenario(ScenarioSpec(start=start, seed=7, subscribers=800, hours=4))
    watch = Watch("memory", len(scenario.records))  # no alert came: every target fails
    console = Console(file=io.StringIO(), width=80, color_system=None)
    passed = demo._summary(console, watch, len(scenario.records), scenario, None, Settings())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert passed is False
    assert "alerts            0 raised (none), 0 cleared" in text
    failed = [line for line in text.splitlines() if line.startswith("FAIL  ")]
    assert "FAIL  sequential_dialler recall = 100%, median TTD < 3 min: 0/5 = 0.0%, median -" in (
        failed
    ), text
    assert len(failed) == 11  # every target but "zero false intercepts"
    assert text.rstrip().endswith("FAIL")
