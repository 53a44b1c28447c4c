"""Every expected mistake is one line on stderr naming its culprit, with the documented exit
status (README: Exit codes), never a traceback. Cases needing a Redis (reachable or not) are in
tests/integration/test_cli_errors.py."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from streams.cli import main
from streams.tools import simulate as sim

START = datetime(2026, 11, 28, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
EVALUATE_CDRS = ("evaluate", "--cdrs", "{d}/good.csv")
HEADER = "cdr_id,caller,callee,start_time,duration_s,answered\n"


@dataclass(frozen=True)
class Case:
    argv: list[str]  # {d} is the test's directory
    status: int
    culprit: str  # the line names this (after {d} is filled in)
    env: tuple[tuple[str, str], ...] = ()


def _files(d: Path) -> None:
    """The inputs the cases name, all in the test's own directory."""
    records, _ = sim.generate(
        sim.SimSpec(start=START, seed=3, hours=1, subscribers=30, bulk_diallers=1)
    )
    sim.write_csv(d / "good.csv", records)
    (d / "dir").mkdir()
    (d / "bad.toml").write_text("windows = [\n")
    (d / "notpolicy.toml").write_text("x = 1\n")
    (d / "nosuch.toml").write_text("[windows]\nm5 = 300\n[detectors.no_such]\nlevels = []\n")
    (d / "allow.txt").write_text("13800138000\nnot-a-number\n")
    (d / "header.csv").write_text("a,b\n" + "1,2\n" * 100)
    (d / "binary.csv").write_bytes(bytes(range(256)) * 20)
    (d / "huge.csv").write_text(HEADER + '"' + "x" * 200_000 + "\n")
    (d / "fake.csv.gz").write_text(HEADER)
    (d / "cut.jsonl.gz").write_bytes(gzip.compress(b'{"cdr_id": "1"}\n' * 100)[:40])
    (d / "empty.csv").write_text("")
    (d / "labels.csv").write_text("subject,role,expect\n")
    (d / "rejects.jsonl").write_text('{"cdr_id": "1"}\n' * 5)


CASES = {
    # missing or wrong paths: 2
    "scan-missing-file": Case(["scan", "{d}/absent.csv"], 2, "{d}/absent.csv"),
    "scan-directory": Case(["scan", "{d}/dir"], 2, "{d}/dir: is a directory"),
    "scan-second-file-missing": Case(["scan", "{d}/good.csv", "{d}/gone.jsonl"], 2, "gone.jsonl"),
    "scan-config-missing": Case(["scan", "{d}/good.csv", "--config", "{d}/no.toml"], 2, "--config"),
    "scan-allowlist-missing": Case(
        ["scan", "{d}/good.csv", "--allowlist", "{d}/no.txt"], 2, "--allowlist: {d}/no.txt"
    ),
    "scan-complaints-missing": Case(
        ["scan", "{d}/good.csv", "--complaints", "{d}/no.jsonl"], 2, "--complaints: {d}/no.jsonl"
    ),
    "evaluate-cdrs-missing": Case(
        ["evaluate", "--cdrs", "{d}/no.csv", "--labels", "{d}/good.csv", "--alerts", "-"],
        2,
        "--cdrs: {d}/no.csv",
    ),
    "evaluate-config-missing": Case(["evaluate", "--config", "{d}/no.toml"], 2, "--config"),
    # bad configuration: 2
    "scan-bad-toml": Case(
        ["scan", "{d}/good.csv", "--config", "{d}/bad.toml"], 2, "--config {d}/bad.toml"
    ),
    "scan-toml-not-a-policy": Case(
        ["scan", "{d}/good.csv", "--config", "{d}/notpolicy.toml"], 2, "{d}/notpolicy.toml"
    ),
    "scan-policy-unknown-detector": Case(
        ["scan", "{d}/good.csv", "--config", "{d}/nosuch.toml"], 2, "no_such"
    ),
    "scan-allowlist-bad-number": Case(
        ["scan", "{d}/good.csv", "--allowlist", "{d}/allow.txt"], 2, "{d}/allow.txt:2"
    ),
    "env-policy-file-missing": Case(
        ["worker"], 2, "{d}/none.toml", (("DIALWATCH_POLICY_FILE", "{d}/none.toml"),)
    ),
    "env-bad-setting": Case(
        ["scan", "{d}/good.csv"], 2, "redis_timeout_s", (("DIALWATCH_REDIS_TIMEOUT_S", "-1"),)
    ),
    "env-bad-numbering-plan": Case(
        ["scan", "{d}/good.csv"],
        2,
        "DIALWATCH_NUMBERING_PLAN",
        (("DIALWATCH_NUMBERING_PLAN", "xx"),),
    ),
    "scan-redis-not-a-url": Case(["scan", "{d}/good.csv", "--redis", "notaurl"], 2, "notaurl"),
    # usage: 2
    "no-command": Case([], 2, "COMMAND"),
    "unknown-command": Case(["scna"], 2, "scna"),
    "unknown-option": Case(["scan", "{d}/good.csv", "--fast"], 2, "--fast"),
    "scan-no-files": Case(["scan"], 2, "FILE"),
    "simulate-start-garbage": Case(["simulate", "--start", "garbage"], 2, "--start"),
    "simulate-subscribers-negative": Case(["simulate", "--subscribers", "-5"], 2, "--subscribers"),
    "simulate-hours-zero": Case(["simulate", "--hours", "0"], 2, "--hours"),
    "simulate-hours-not-a-number": Case(["simulate", "--hours", "many"], 2, "--hours"),
    "simulate-late-fraction": Case(["simulate", "--late-fraction", "2"], 2, "--late-fraction"),
    "simulate-scenario-short-day": Case(["simulate", "--scenario", "--hours", "3"], 2, "--hours"),
    "simulate-allowlist-alone": Case(["simulate", "--allowlist", "{d}/a.txt"], 2, "--scenario"),
    "simulate-out-and-topic": Case(["simulate", "--out", "x.csv", "--topic", "t"], 2, "--topic"),
    "simulate-unknown-suffix": Case(["simulate", "--out", "{d}/x.txt"], 2, "--out {d}/x.txt"),
    "simulate-bad-format": Case(["simulate", "--format", "xml"], 2, "--format"),
    "evaluate-subscribers-negative": Case(["evaluate", "--subscribers", "-5"], 2, "--subscribers"),
    "evaluate-hours-zero": Case(["evaluate", "--hours", "0"], 2, "--hours"),
    "evaluate-short-day": Case(["evaluate", "--hours", "2"], 2, "--hours"),
    "evaluate-too-few-subscribers": Case(["evaluate", "--subscribers", "10"], 2, "--subscribers"),
    "evaluate-partial-existing": Case(["evaluate", "--cdrs", "{d}/good.csv"], 2, "--labels"),
    "allowlist-no-redis": Case(["allowlist", "count"], 2, "DIALWATCH_REDIS"),
    "allowlist-bad-action": Case(["allowlist", "list"], 2, "list"),
    "verify-wait-negative": Case(["verify", "{d}/good.csv", "--wait", "-1"], 2, "--wait"),
    # unusable input: 1
    "evaluate-alerts-not-json": Case(
        [*EVALUATE_CDRS, "--labels", "{d}/labels.csv", "--alerts", "{d}/good.csv"],
        1,
        "--alerts {d}/good.csv",
    ),
    "evaluate-labels-not-labels": Case(
        [*EVALUATE_CDRS, "--labels", "{d}/good.csv", "--alerts", "{d}/empty.csv"],
        1,
        "{d}/good.csv",
    ),
    "scan-header-lacks-columns": Case(
        ["scan", "{d}/header.csv"], 1, "{d}/header.csv: not CDRs: the CSV header lacks cdr_id"
    ),
    "scan-binary": Case(["scan", "{d}/binary.csv"], 1, "{d}/binary.csv: binary data"),
    "scan-field-over-csv-limit": Case(["scan", "{d}/huge.csv"], 1, "{d}/huge.csv: line"),
    "scan-gz-not-gzip": Case(["scan", "{d}/fake.csv.gz"], 1, "{d}/fake.csv.gz: not a valid gzip"),
    "scan-gz-truncated": Case(
        ["scan", "{d}/cut.jsonl.gz"], 1, "{d}/cut.jsonl.gz: not a valid gzip"
    ),
    "scan-empty-file": Case(["scan", "{d}/empty.csv"], 1, "no CDRs in {d}/empty.csv"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli-errors")
    _files(d)
    return d


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[Case, Path], None]:
    def apply(case: Case, d: Path) -> None:
        for name in ("DIALWATCH_REDIS", "DIALWATCH_POLICY_FILE", "DIALWATCH_ALLOWLIST_FILE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in case.env:
            monkeypatch.setenv(name, value.format(d=d))

    return apply


@pytest.mark.parametrize("name", list(CASES))
def test_one_line_naming_the_culprit(
    name: str,
    inputs: Path,
    clean_env: Callable[[Case, Path], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = CASES[name]
    clean_env(case, inputs)
    status = main([arg.format(d=inputs) for arg in case.argv])
    err = capsys.readouterr().err
    assert status == case.status, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("dialwatch"), err
    assert case.culprit.format(d=inputs) in err, err


def test_all_rejected_exits_1_after_the_summary(
    inputs: Path, clean_env: Callable[[Case, Path], None], capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env(Case([], 0, ""), inputs)
    assert main(["scan", str(inputs / "rejects.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "rejected:missing_field" in err and "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"dialwatch scan: no record accepted from {inputs / 'rejects.jsonl'} (see the summary)"
    )


def test_a_good_scan_exits_0_and_its_output_starts_with_the_summary(
    inputs: Path, clean_env: Callable[[Case, Path], None], capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env(Case([], 0, ""), inputs)
    assert main(["scan", str(inputs / "good.csv")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("scanned "), err  # no blank first line (no progress off a terminal)


def test_debug_shows_the_traceback_too(
    inputs: Path, clean_env: Callable[[Case, Path], None], capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env(Case([], 0, ""), inputs)
    assert main(["--debug", "scan", str(inputs / "binary.csv")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith(f"dialwatch scan: {inputs / 'binary.csv'}: binary")


def test_the_installed_entry_point_too(inputs: Path) -> None:
    """Through ``python -m streams``: the real process's stderr and exit status."""
    done = subprocess.run(
        [sys.executable, "-m", "streams", "scan", str(inputs / "header.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "the CSV header lacks cdr_id" in done.stderr


@pytest.mark.parametrize(
    ("out", "fmt", "first"),
    [
        ("x.csv", None, "cdr_id,"),
        ("x.csv.gz", None, "cdr_id,"),
        ("x.jsonl", None, "{"),
        ("x.json", None, "{"),
        ("x.JSONL.gz", None, "{"),
        ("x.txt", "csv", "cdr_id,"),
        ("x.txt", "jsonl", "{"),
        ("x.csv", "jsonl", "{"),
    ],
)
def test_simulate_format_from_name_or_option(
    out: str, fmt: str | None, first: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / out
    argv = ["simulate", "--out", str(path), "--subscribers", "20", "--hours", "1"]
    assert main(argv + (["--format", fmt] if fmt else [])) == 0
    raw = path.read_bytes()
    text = gzip.decompress(raw) if out.endswith(".gz") else raw
    assert text.decode().startswith(first)
    assert capsys.readouterr().err.startswith("wrote ")


def test_a_reader_that_stops_early_is_no_error() -> None:
    """``dialwatch simulate | head -c 100``: the pipe closes under the writer."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams", "simulate", "--subscribers", "3000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err, err
