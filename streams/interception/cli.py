"""``dialwatch intercept ...`` and ``dialwatch audit``: the operator's view of the list.

They read the worker's settings (``DIALWATCH_REDIS``, ``DIALWATCH_INTERCEPT_REDIS``,
``DIALWATCH_KEY_PREFIX``, ``DIALWATCH_NUMBERING_PLAN``) and only touch Redis: the worker mirrors
their audit entries to the topics within ``DIALWATCH_INTERCEPT_MIRROR_S``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from typing import TextIO
from zoneinfo import ZoneInfo

import orjson

from config.numbering import normalise, plan_from_setting
from config.settings import Settings
from streams.errors import InputError, UsageError
from streams.instants import instant_ms
from streams.interception.step import build_store
from streams.interception.store import Entry, InterceptStore

RELEASE_KINDS = ("operator", "appeal", "allowlist")


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Register ``intercept`` and ``audit``; ``command(name, summary)`` adds a subcommand."""
    p = command("intercept", "the interception list switches consult (README Interception)")
    isub = p.add_subparsers(dest="intercept_command", required=True, metavar="ACTION")
    q = isub.add_parser("list", help="entries, one per line", description="entries, one per line")
    q.add_argument("--json", action="store_true", help="one JSON object per line")
    q.add_argument("--state", choices=["active", "pending", "all"], default="all")
    q = isub.add_parser("show", help="one number's entries, hold and protection")
    q.add_argument("number")
    q = isub.add_parser("approve", help="activate a pending entry")
    q.add_argument("number")
    q.add_argument("--reason", default="approved by operator", help="kept in the audit trail")
    q = isub.add_parser("release", help="remove a number at once, keep it out for the grace")
    q.add_argument("number")
    q.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    q.add_argument("--kind", choices=RELEASE_KINDS, default="operator")

    p = command("audit", "the audit trail of the interception list")
    p.add_argument("--number", metavar="N", help="only this number's entries")
    p.add_argument("--since", metavar="T", help="ISO-8601 time or epoch seconds")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    if not (settings.intercept_redis or settings.redis):
        raise UsageError("set DIALWATCH_REDIS (or DIALWATCH_INTERCEPT_REDIS)")
    try:
        plan = plan_from_setting(settings.numbering_plan)
    except (OSError, ValueError) as exc:
        raise UsageError(f"DIALWATCH_NUMBERING_PLAN: {exc}") from exc
    number = getattr(args, "number", None)
    if number is not None:
        normalised = normalise(number, plan)
        if normalised is None:
            raise UsageError(f"not a phone number: {number}")
        args.number = normalised
    since_ms = 0
    if getattr(args, "since", None):
        try:
            since_ms = instant_ms(args.since, settings.timezone)
        except ValueError as exc:
            raise UsageError(f"--since {args.since!r}: expected ISO-8601 or epoch seconds") from exc
    return asyncio.run(_run(args, settings, out, since_ms))


async def _run(args: argparse.Namespace, settings: Settings, out: TextIO, since_ms: int) -> int:
    store = build_store(settings)
    try:
        if args.command == "audit":
            return await _audit(store, args, out, since_ms, ZoneInfo(settings.timezone))
        return await _intercept(store, args, out, ZoneInfo(settings.timezone))
    finally:
        await store.client.aclose()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


async def _intercept(
    store: InterceptStore, args: argparse.Namespace, out: TextIO, tz: tzinfo
) -> int:
    command = args.intercept_command
    if command == "list":
        entries = await store.entries(args.state, _now_ms())
        for entry in entries:
            out.write(_line(entry, args.json, tz) + "\n")
        if not args.json:
            print(f"{len(entries)} entries", file=sys.stderr)
        return 0
    if command == "show":
        entries = await store.get(args.number)
        for entry in entries:
            out.write(orjson.dumps(entry.to_dict()).decode() + "\n")
        hold = await store.held(args.number)
        if hold is not None:
            held = {"number": args.number, "state": "held", "reason": hold}
            out.write(orjson.dumps(held).decode() + "\n")
        callers = {k: v for k, v in (await store.protected(args.number)).items() if k[:1] != "_"}
        if callers:
            out.write(
                orjson.dumps(
                    {"victim": args.number, "state": "protected", "callers": sorted(callers)}
                ).decode()
                + "\n"
            )
        if not entries and hold is None and not callers:
            raise InputError(f"{args.number} is not listed")
        return 0
    if command == "approve":
        done = await store.decide(
            "approve", args.number, _actor(), args.reason, "operator", _now_ms()
        )
        if done != "1":
            raise InputError(f"{args.number} has no pending entry")
        print(f"{args.number}: approved, active", file=sys.stderr)
        return 0
    result = await store.decide("release", args.number, _actor(), args.reason, args.kind, _now_ms())
    grace_h = store.grace_ms / 3_600_000
    print(f"{args.number}: {result}; held out for {grace_h:g} h", file=sys.stderr)
    return 0


def _line(entry: Entry, as_json: bool, tz: tzinfo) -> str:
    row = entry.to_dict()
    if as_json:
        keys = ("number", "state", "detector", "alert_id", "episode_id", "expires_at_ms")
        data = {k: row.get(k) for k in keys}
        expires = datetime.fromtimestamp(row["expires_at_ms"] / 1000, tz)
        data["expires_at"] = expires.isoformat(timespec="seconds")
        data["reason"] = row.get("reason", "")
        data["number_class"] = row.get("number_class", "")
        return orjson.dumps(data).decode()
    expires = datetime.fromtimestamp(row["expires_at_ms"] / 1000, tz)
    return (
        f"{entry.number:<20} {entry.state:<8} {row.get('detector', ''):<20} "
        f"{expires.isoformat(timespec='seconds')}  {row.get('alert_id', '')}"
    )


async def _audit(
    store: InterceptStore, args: argparse.Namespace, out: TextIO, since_ms: int, tz: tzinfo
) -> int:
    start = f"{since_ms}-0" if since_ms else "-"
    shown = 0
    for entry_id, fields in await _all(store, start):
        if args.number and fields.get("number") != args.number:
            continue
        row = {"event_id": entry_id, **fields}
        if args.json:
            out.write(orjson.dumps(row).decode() + "\n")
        else:
            at = datetime.fromtimestamp(int(fields.get("at_ms", "0")) / 1000, tz)
            out.write(
                f"{at.isoformat(timespec='seconds')} {fields.get('event', ''):<15} "
                f"{fields.get('number', ''):<20} {fields.get('actor', ''):<10} "
                f"{fields.get('reason', '')}\n"
            )
        shown += 1
    return 0


async def _all(store: InterceptStore, start: str) -> Iterable[tuple[str, dict[str, str]]]:
    rows: list[tuple[str, dict[str, str]]] = []
    while True:
        chunk = await store.audit(start, 1000)
        rows.extend(chunk)
        if len(chunk) < 1000:
            return rows
        start = f"({chunk[-1][0]}"


async def release_allowlisted(settings: Settings, numbers: Iterable[str]) -> None:
    """``dialwatch allowlist add``: allowlisted numbers leave the list at once (audited)."""
    store = build_store(settings)
    try:
        for number in numbers:
            await store.decide("release", number, _actor(), "allowlisted", "allowlist", _now_ms())
    finally:
        await store.client.aclose()
