"""``dialwatch feed export``: the regulator's file for a period (README "Regulator feed")."""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo

import orjson

from config.settings import Settings
from detectors.pseudonym import key_id
from streams.errors import UsageError, path_error
from streams.feed.export import FORMATS, LEAK_COLUMNS, encode, leak_rows, manifest, rows
from streams.feed.period import parse_period
from streams.feed.source import read_file, read_topic


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("feed", "the regulator feed: exports of flagged numbers (README Regulator feed)")
    sub = p.add_subparsers(dest="feed_command", required=True, metavar="ACTION")
    q = sub.add_parser(
        "export",
        help="the flagged numbers of a period, with a checksum manifest",
        description="the flagged numbers whose alerts fall in [--since, --until) (event time),"
        " one row each, read from DIALWATCH_FEED_TOPIC on DIALWATCH_KAFKA or from --input;"
        " the same period gives the same bytes; and the leak candidates of the campaigns active"
        " in it (JSON Lines: after the numbers; CSV: STEM.leaks.csv beside --out). With --out,"
        " FILE.sha256 and FILE.manifest.json are written beside it.",
    )
    q.add_argument(
        "--since",
        required=True,
        metavar="T",
        help="start: ISO-8601 date (midnight in DIALWATCH_TIMEZONE) or time with an offset",
    )
    q.add_argument("--until", required=True, metavar="T", help="end (excluded), as --since")
    q.add_argument("--format", choices=FORMATS, default="csv", help="output format")
    q.add_argument("--out", metavar="FILE", help="write here (default: standard output)")
    q.add_argument(
        "--input", metavar="FILE", help="read feed records from this JSON Lines file instead"
    )


def run(args: argparse.Namespace, settings: Settings, out: BinaryIO | None = None) -> int:
    tz = ZoneInfo(settings.timezone)
    try:
        since_ms, until_ms = parse_period(args.since, args.until, tz)
    except ValueError as exc:
        raise UsageError(f"dialwatch feed export: {exc}") from None
    target = Path(args.out) if args.out else None
    if target is not None and not target.parent.is_dir():
        raise UsageError(f"--out {target}: its directory does not exist")
    if args.input:
        records, source = read_file(Path(args.input)), f"file {Path(args.input).name}"
    else:
        records, source = read_topic(settings), f"topic {settings.feed_topic}"
    table = rows(records, since_ms, until_ms)
    leaks = leak_rows(records, since_ms, until_ms)
    # JSON Lines: the leak candidates follow the flagged numbers; CSV: a file of their own.
    data = encode([*table, *leaks] if args.format == "jsonl" else table, args.format)
    leak_data = encode(leaks, "csv", LEAK_COLUMNS) if args.format == "csv" else None
    name = target.name if target is not None else "-"
    info = manifest(
        data,
        name=name,
        fmt=args.format,
        since=args.since,
        until=args.until,
        records=len(table),
        source=source,
    )
    info["leak_candidates"] = len(leaks)
    leak_target = None
    if leak_data is not None and target is not None:
        leak_target = target.with_name(f"{target.stem}.leaks{target.suffix or '.csv'}")
        info["leaks_file"] = leak_target.name
        info["leaks_sha256"] = hashlib.sha256(leak_data).hexdigest()
    info["timezone"] = settings.timezone
    info["pseudonym_key_id"] = key_id(settings.pseudonym_key.encode(), settings.pseudonym_key_id)
    if target is None:
        stream = out or sys.stdout.buffer
        stream.write(data)
        stream.flush()
        note = f", {len(leaks)} leak candidates" if args.format == "jsonl" else ""
        if leak_data is not None and leaks:
            note = f"; {len(leaks)} leak candidates not written (CSV: use --out)"
        print(f"{info['sha256']}  -  ({len(table)} numbers{note})", file=sys.stderr)
        return 0
    body = orjson.dumps(info, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"
    for path, content in (
        (target, data),
        (target.with_name(target.name + ".sha256"), f"{info['sha256']}  {target.name}\n".encode()),
        (target.with_name(target.name + ".manifest.json"), body),
    ):
        _write(path, content)
    if leak_target is not None and leak_data is not None:
        _write(leak_target, leak_data)
        sha = info["leaks_sha256"]
        _write(
            leak_target.with_name(leak_target.name + ".sha256"),
            f"{sha}  {leak_target.name}\n".encode(),
        )
    print(
        f"{target}: {len(table)} numbers, {len(leaks)} leak candidates, sha256 {info['sha256']}",
        file=sys.stderr,
    )
    return 0


def _write(path: Path, content: bytes) -> None:
    """Atomically: a reader never sees half an export."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        temporary.replace(path)
    except OSError as exc:
        raise path_error(path, exc, "--out") from None
