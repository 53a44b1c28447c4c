"""The ``dialwatch`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from config.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dialwatch",
        description="Streaming analyser of call-detail records: flags bulk diallers.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("scan", help="replay CDR files through the engine; alerts to stdout")
    p.add_argument("files", nargs="+", help="CSV or JSON Lines files (.gz too); - for stdin")
    p.add_argument("--allowlist", type=Path, help="file of numbers never to intercept")
    p.add_argument("--config", type=Path, help="policy file (TOML), default: the bundled one")
    p.add_argument("--redis", help="Redis URL for the window store (default: in-process)")
    p.add_argument("--complaints", help="complaint reports, JSON Lines (streams.complaints)")
    _format_options(p)

    sub.add_parser("worker", help="run the Faust worker (settings from DIALWATCH_* variables)")

    p = sub.add_parser("allowlist", help="shared run-time allowlist entries in Redis")
    p.add_argument("action", choices=["add", "remove", "count"])
    p.add_argument("numbers", nargs="*", help="numbers to add or remove")

    p = sub.add_parser("simulate", help="write synthetic CDR traffic to a file or a topic")
    p.add_argument("--out", help="output file (.jsonl, .csv, .gz) or - for stdout")
    p.add_argument("--topic", help="produce to this Kafka topic instead (DIALWATCH_KAFKA)")
    p.add_argument("--labels", type=Path, help="write labels here (scenario: subject,role,expect)")
    p.add_argument("--scenario", action="store_true", help="the labelled benchmark day instead")
    p.add_argument("--scale", type=float, default=1.0, help="scenario: non-normal class sizes")
    p.add_argument("--allowlist", type=Path, help="scenario: write its allowlist here")
    p.add_argument("--seed", type=int, help="default 7 (scenario: 1)")
    p.add_argument("--subscribers", type=int, help="default 2000 (scenario: 20000)")
    p.add_argument("--hours", type=float, help="default 8 (scenario: 12)")
    p.add_argument("--bulk-diallers", type=int, default=2)
    p.add_argument("--late-fraction", type=float, help="default 0 (scenario: 0.05)")
    p.add_argument("--start", help="ISO-8601 start (default: 09:00 yesterday, local time)")
    p.add_argument("--batch", type=int, default=500, help="CDRs per Kafka message (1 = single)")
    p.add_argument("--partitions", type=int, help="topic partitions (default: settings)")
    p.add_argument("--format", default="contract", help="file format to write (README Formats)")

    p = sub.add_parser("demo", help="embedded demo: broker, worker, simulator, live alerts")
    p.add_argument("--subscribers", type=int, default=3000)
    p.add_argument("--hours", type=float, default=6.0, help="simulated day, at least 4 h")
    p.add_argument("--seed", type=int, default=7)

    p = sub.add_parser("evaluate", help="detection-quality benchmark on a labelled scenario")
    p.add_argument("--seed", type=int, action="append", help="repeatable; default: 1")
    p.add_argument("--subscribers", type=int, default=20_000)
    p.add_argument("--hours", type=float, default=12.0)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every non-normal class")
    p.add_argument("--json", type=Path, help="write all reports here as JSON")
    p.add_argument("--config", type=Path, help="policy file (TOML), default: the bundled one")
    p.add_argument("--cdrs", help="score an existing run: its CDR file (with --labels, --alerts)")
    p.add_argument("--labels", type=Path, help="scenario labels of --cdrs")
    p.add_argument("--alerts", help="alerts of --cdrs as written by dialwatch scan")
    p.add_argument("--allowlist", type=Path, help="with --cdrs: the run's allowlist file")
    p.add_argument("--format", default="contract", help="write the scenario in this format")

    p = sub.add_parser("verify", help="recount the input; compare with a run's Redis state")
    p.add_argument("files", nargs="*", help="CDR files as given to dialwatch scan")
    p.add_argument("--topic", help="recount this CDR topic instead (broker: DIALWATCH_KAFKA)")
    p.add_argument("--alerts", help="also read this alert topic: duplicate alert_ids, counts")
    p.add_argument("--redis", help="Redis URL of the run (default: DIALWATCH_REDIS)")
    p.add_argument("--prefix", help="key prefix of the run (default: DIALWATCH_KEY_PREFIX)")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to re-read until it matches")

    p = sub.add_parser("ingest", help="publish CDR files of any format to the CDR topic")
    p.add_argument("files", nargs="+", help="CDR files (.gz too); - for stdin")
    p.add_argument("--follow", action="store_true", help="tail the files as a switch writes")
    p.add_argument("--state", type=Path, help="position file (default: FILE.dialwatch-pos)")
    p.add_argument("--batch", type=int, default=5000, help="records per confirmed flush")
    _format_options(p)

    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "ingest":
        from streams.ingest import run_ingest

        return run_ingest(args, settings)
    if args.command == "scan":
        return _scan(args, settings)
    if args.command == "allowlist":
        return _allowlist(args, settings)
    if args.command == "worker":
        from streams.worker import run_worker

        return run_worker(settings)
    if args.command == "simulate":
        return _simulate(args, settings)
    if args.command == "demo":
        from streams.tools.demo import run_demo

        return run_demo(settings, subscribers=args.subscribers, hours=args.hours, seed=args.seed)
    if args.command == "evaluate":
        return _evaluate(parser, args, settings)
    if args.command == "verify":
        from streams.tools.verify import run as run_verify

        return run_verify(args, settings)
    parser.error(f"unknown command {args.command}")
    return 2


def _scan(args: argparse.Namespace, settings: Settings) -> int:
    from streams.factory import build_engines
    from streams.files import RejectLog, open_rejects
    from streams.formats import from_cli
    from streams.scan import scan

    try:
        fmt = from_cli(args.format, args.map)
    except ValueError as exc:
        print(f"dialwatch scan: {exc}", file=sys.stderr)
        return 2
    stack = contextlib.ExitStack()
    rejects = stack.enter_context(open_rejects(args.rejects)) if args.rejects else None
    settings = settings.with_(
        allowlist_file=args.allowlist or settings.allowlist_file,
        policy_file=args.config or settings.policy_file,
    )
    engine, derived = build_engines(settings, args.redis)

    async def run() -> None:
        try:
            await scan(
                engine,
                args.files,
                sys.stdout,
                derived=derived,
                complaints=args.complaints,
                fmt=fmt,
                rejects=RejectLog(rejects) if rejects else None,
            )
        finally:
            await engine.store.close()
            await derived.store.close()
            stack.close()

    asyncio.run(run())
    return 0


def _format_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="contract", help="input format (README Formats)")
    p.add_argument("--map", help="csv-map: field=column,... (caller=src,callee=dst,...)")
    p.add_argument("--rejects", help="write rejected records here: file:line reason: detail")


def _evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools import evaluate as ev

    settings = settings.with_(policy_file=args.config or settings.policy_file)
    existing = (args.cdrs, args.labels, args.alerts)
    if any(existing):
        if not all(existing):
            parser.error("evaluate: --cdrs, --labels and --alerts go together")
        return ev.score_files(
            settings,
            args.cdrs,
            args.labels,
            args.alerts,
            allowlist=args.allowlist,
            json_path=args.json,
        )
    from streams.formats import FORMATS

    if args.format not in FORMATS or not FORMATS[args.format].writable:
        parser.error(f"evaluate: --format {args.format} cannot be written (README Formats)")
    spec = ev.BenchmarkSpec(
        seeds=tuple(args.seed or (1,)),
        subscribers=args.subscribers,
        hours=args.hours,
        scale=args.scale,
        format=args.format,
    )
    from streams.tools.simulate import default_start

    return ev.run_benchmark(settings, spec, default_start(settings), json_path=args.json)


def allowlist_entries(numbers: list[str], settings: Settings) -> list[str] | None:
    """The numbers as the worker normalises callers (the configured plan), so an entry
    matches; None when one of them is not a phone number."""
    from config.numbering import normalise, plan_from_setting

    plan = plan_from_setting(settings.numbering_plan)
    normalised = [normalise(n, plan) for n in numbers]
    entries = [n for n in normalised if n is not None]
    return entries if len(entries) == len(normalised) else None


def _allowlist(args: argparse.Namespace, settings: Settings) -> int:
    """Edit the Redis set every worker merges into its allowlist within allowlist_refresh_s."""
    from streams.allowlist import shared_key
    from streams.security import redis_client

    if not settings.redis:
        print("dialwatch allowlist: set DIALWATCH_REDIS", file=sys.stderr)
        return 2
    numbers = allowlist_entries(args.numbers, settings)
    if numbers is None:
        print("dialwatch allowlist: not a phone number among the arguments", file=sys.stderr)
        return 2
    key = shared_key(settings.key_prefix)

    async def run() -> int:
        client = redis_client(settings)
        try:
            if args.action == "add" and numbers:
                await client.sadd(key, *numbers)
            elif args.action == "remove" and numbers:
                await client.srem(key, *numbers)
            return int(await client.scard(key))
        finally:
            await client.aclose()

    print(f"{asyncio.run(run())} shared allowlist entries")
    return 0


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools import simulate as sim
    from streams.tools.scenario import write_scenario_csv as scenario_csv
    from streams.tools.simulate import default_start

    start = datetime.fromisoformat(args.start) if args.start else default_start(settings)
    if args.scenario:
        records = _scenario(args, start)
    elif args.allowlist:
        print("simulate: --allowlist needs --scenario", file=sys.stderr)
        return 2
    else:
        _fill_defaults(args, {"seed": 7, "subscribers": 2000, "hours": 8.0, "late_fraction": 0.0})
        spec = sim.SimSpec(
            start=start,
            seed=args.seed,
            hours=args.hours,
            subscribers=args.subscribers,
            bulk_diallers=args.bulk_diallers,
            late_fraction=args.late_fraction,
        )
        records, labels = sim.generate(spec)
        if args.labels:
            sim.write_labels(args.labels, labels)
    if args.topic and args.format != "contract":
        print("simulate: --format writes files; a topic gets the contract", file=sys.stderr)
        return 2
    if args.topic:
        partitions = args.partitions or settings.topic_partitions
        from streams.security import kafka_python_kwargs

        n = sim.produce(
            records,
            settings.kafka,
            args.topic,
            partitions,
            batch_size=args.batch,
            kafka_options=kafka_python_kwargs(settings),
        )
        print(f"produced {n:,} CDRs to {args.topic}", file=sys.stderr)
        return 0
    out = args.out or "-"
    if args.format != "contract":
        try:
            n = sim.write_format(out, records, args.format, ZoneInfo(settings.timezone))
        except ValueError as exc:
            print(f"simulate: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {n:,} CDRs as {args.format}", file=sys.stderr)
        return 0
    csv_writer = scenario_csv if args.scenario else sim.write_csv
    write = csv_writer if out.removesuffix(".gz").endswith(".csv") else sim.write_jsonl
    n = write(out, records)
    print(f"wrote {n:,} CDRs", file=sys.stderr)
    return 0


def _fill_defaults(args: argparse.Namespace, defaults: dict[str, object]) -> None:
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def _scenario(args: argparse.Namespace, start: datetime) -> list[dict[str, object]]:
    """The labelled benchmark day; options not given keep the ScenarioSpec defaults."""
    from streams.tools import scenario as sc

    base = sc.ScenarioSpec(start=start)
    names = ("seed", "subscribers", "hours", "late_fraction")
    _fill_defaults(args, {name: getattr(base, name) for name in names})
    spec = sc.ScenarioSpec(
        start=start,
        seed=args.seed,
        subscribers=args.subscribers,
        hours=args.hours,
        scale=args.scale,
        late_fraction=args.late_fraction,
    )
    scenario = sc.generate_scenario(spec)
    if args.labels:
        sc.write_scenario_labels(args.labels, scenario.labels)
    if args.allowlist:
        sc.write_allowlist(args.allowlist, scenario.allowlist)
    return scenario.records
