"""The help is the documentation: every option explained with its default, and the README's
synopsis equal to what --help prints."""

from __future__ import annotations

import argparse
import os
import re
import select
from pathlib import Path

import pytest

from streams.cli import DESCRIPTION, build_parser
from streams.factory import build_engines
from streams.scan import scan
from streams.tools import simulate as sim
from tests.unit.test_cli_errors import START

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide terminal: help is then at its fixed width, the README's."""
    monkeypatch.setenv("COLUMNS", "200")


def test_the_readme_synopsis_is_the_parsers_usage(wide: None) -> None:
    parser = build_parser()
    usage = parser.format_usage() + "".join(p.format_usage() for p in _commands(parser).values())
    section = README.read_text().split("\n## Command line\n", 1)[1]
    block = re.search(r"```\n(.*?)```\n", section, re.DOTALL)
    assert block is not None
    assert block.group(1) == usage


def test_every_option_has_help_and_shows_its_default(wide: None) -> None:
    parser = build_parser()
    for name, command in {"": parser, **_commands(parser)}.items():
        text = command.format_help()
        for action in command._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            label = f"dialwatch {name} {action.dest}"
            assert action.help, f"{label}: no help text"
            default = action.default
            if default not in (None, False):
                assert f"(default: {default})" in " ".join(text.split()), label


def test_the_description_says_what_dialwatch_does(wide: None) -> None:
    text = build_parser().format_help()
    assert "call-detail records" in text and "interception" in " ".join(text.split())
    assert DESCRIPTION.split()[0] == "dialwatch"
    assert "exit status: 0" in text


def test_help_fits_80_columns(wide: None) -> None:
    parser = build_parser()
    for command in [parser, *_commands(parser).values()]:
        for line in command.format_help().splitlines():
            assert len(line) <= 78, line


async def test_scan_progress_counts_records_not_observations(tmp_path: Path) -> None:
    """On a terminal (a real pseudo-terminal here), the progress line's count is of records."""
    from config.settings import Settings

    records, _ = sim.generate(
        sim.SimSpec(start=START, seed=5, hours=2, subscribers=200, bulk_diallers=2)
    )
    path = tmp_path / "cdrs.jsonl"
    n = sim.write_jsonl(path, records)
    main_fd, term_fd = os.openpty()
    os.set_blocking(main_fd, False)
    settings = Settings.from_env().with_(chunk_records=100)
    engine, derived = build_engines(settings)
    with open(term_fd, "w") as term, open(os.devnull, "w") as out:
        totals = await scan(engine, [str(path)], out, term, derived=derived)
        term.flush()
        shown = _drain(main_fd)
    os.close(main_fd)
    assert totals["accepted"] == n
    counts = [int(c.replace(",", "")) for c in re.findall(r"([\d,]+) of [\d,]+ records", shown)]
    assert counts and max(counts) == n and counts == sorted(counts), shown
    assert f"{n:,} of {n:,} records" in shown


def _drain(fd: int) -> str:
    """Everything written to the pseudo-terminal so far: a pty hands it over in pieces, so read
    until nothing more arrives for a moment."""
    chunks: list[bytes] = []
    while select.select([fd], [], [], 0.5)[0]:
        try:
            chunk = os.read(fd, 1 << 20)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()
