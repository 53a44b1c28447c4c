"""``simulate --leaks`` and ``trace-leaks`` end to end over files (the command line)."""

from __future__ import annotations

import csv
from pathlib import Path

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import orjson
import pytest

from streams.cli import main
from streams.errors import EXIT_INPUT, EXIT_USAGE

START = "2026-11-01T00:00:00+08:00"
SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "leak-candidates.schema.json"


@pytest.fixture(scope="module")
def leak_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("leaks")
    argv = ["simulate", "--leaks", "--days", "10", "--subscribers", "3000", "--seed", "2"]
    argv += ["--start", START, "--out", str(d / "cdrs.csv"), "--labels", str(d / "labels.csv")]
    assert main(argv) == 0
    return d / "cdrs.csv", d / "labels.csv"


def _labels(path: Path) -> dict[str, str]:
    with path.open() as fh:
        return {row["number"]: row["role"] for row in csv.DictReader(fh)}


def test_the_leak_scenario_is_deterministic(leak_files: tuple[Path, Path], tmp_path: Path) -> None:
    cdrs, _ = leak_files
    again = tmp_path / "again.csv"
    argv = ["simulate", "--leaks", "--days", "10", "--subscribers", "3000", "--seed", "2"]
    assert main([*argv, "--start", START, "--out", str(again)]) == 0
    assert again.read_bytes() == cdrs.read_bytes()


def test_trace_leaks_finds_each_campaign_and_its_source(
    leak_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cdrs, labels_path = leak_files
    labels = _labels(labels_path)
    capsys.readouterr()
    assert main(["trace-leaks", str(cdrs)]) == 0
    out, err = capsys.readouterr()
    campaigns = [orjson.loads(line) for line in out.splitlines()]
    assert "campaigns" in err and "records" in err
    truth: dict[str, set[str]] = {}
    for number, role in labels.items():
        if role.startswith("campaign_member:"):
            truth.setdefault(role, set()).add(number)
    leaking = {n for n, r in labels.items() if r == "leaking_business"}
    popular = {n for n, r in labels.items() if r == "popular_business"}
    tops = set()
    for members in truth.values():
        best = max(campaigns, key=lambda c: len(members & set(c["members"])))
        assert len(members & set(best["members"])) >= 0.9 * len(members)
        assert {"campaign_id", "members", "victims", "candidates"} <= set(best)
        for c in best["candidates"]:
            assert {"number", "victim_share", "base_share", "lift", "p_value"} <= set(c)
        if best["candidates"]:
            tops.add(best["candidates"][0]["number"])
    assert tops == leaking  # every leak found first; the random list gets no candidate
    schema = orjson.loads(SCHEMA.read_bytes())
    for c in campaigns:
        jsonschema.validate(c, schema)
        assert not {x["number"] for x in c["candidates"]} & popular
    # Only members, business numbers and counts: no victim number anywhere.
    subscribers = {n for n in _numbers(cdrs) if n not in labels}
    assert not subscribers & set(_strings(campaigns))


def _numbers(path: Path) -> set[str]:
    with path.open() as fh:
        return {row["callee"] for row in csv.DictReader(fh)}


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize(
    ("argv", "status", "culprit"),
    [
        (["trace-leaks", "{d}/missing.csv"], EXIT_USAGE, "missing.csv"),
        (["trace-leaks", "{d}/empty.csv"], EXIT_INPUT, "empty.csv"),
        (["trace-leaks", "--days", "0", "{d}/empty.csv"], EXIT_USAGE, "--days"),
        (["simulate", "--leaks", "--days", "3"], EXIT_USAGE, "days"),
        (["simulate", "--leaks", "--topic", "t"], EXIT_USAGE, "--topic"),
    ],
)
def test_mistakes_are_one_line(
    argv: list[str], status: int, culprit: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.csv").write_text("")
    assert main([a.replace("{d}", str(tmp_path)) for a in argv]) == status
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and culprit in err


def test_campaigns_and_ids_do_not_depend_on_interleaving(leak_files: tuple[Path, Path]) -> None:
    import random
    from collections import Counter
    from zoneinfo import ZoneInfo

    from config.numbering import plan_from_setting
    from streams.leaktrace import TraceOptions, read_calls, trace

    plan, tz = plan_from_setting("cn"), ZoneInfo("Asia/Shanghai")
    calls = read_calls([str(leak_files[0])], plan, tz, None, Counter())
    calls = calls[: len(calls) * 2 // 3]  # any input will do; this one holds campaigns
    options = TraceOptions(key=b"k")
    shuffled = calls[:]
    random.Random(11).shuffle(shuffled)
    first = trace(calls, plan, options, tz)
    assert first and trace(shuffled, plan, options, tz) == first


def test_enough_of_a_campaign_flagged_lists_the_rest(
    leak_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cdrs, labels_path = leak_files
    members = sorted(n for n, r in _labels(labels_path).items() if r == "campaign_member:0")
    flagged = members[: (len(members) + 1) // 2]
    alerts = tmp_path / "alerts.jsonl"
    lines = [
        {"number": n, "subject": "number", "action": "intercept", "state": "raised"}
        for n in flagged
    ]
    lines.append({"number": members[-1], "subject": "number", "action": "monitor"})
    alerts.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    capsys.readouterr()
    assert main(["trace-leaks", "--alerts", str(alerts), str(cdrs)]) == 0
    campaigns = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    [campaign] = [c for c in campaigns if set(flagged) <= set(c["members"])]
    assert campaign["flagged"] == len(flagged)
    assert campaign["intercept_rest"] == sorted(set(campaign["members"]) - set(flagged))
    assert all(c["intercept_rest"] == [] for c in campaigns if c is not campaign)
    (tmp_path / "bad.jsonl").write_text("{}\n")
    assert main(["trace-leaks", "--alerts", str(tmp_path / "bad.jsonl"), str(cdrs)]) == 1
    assert "bad.jsonl:1: not an alert" in capsys.readouterr().err
