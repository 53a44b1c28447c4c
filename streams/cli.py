"""The ``dialwatch`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timedelta
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

    sub.add_parser("worker", help="run the Faust worker (settings from DIALWATCH_* variables)")

    p = sub.add_parser("simulate", help="write synthetic CDR traffic to a file or a topic")
    p.add_argument("--out", help="output file (.jsonl, .csv, .gz) or - for stdout")
    p.add_argument("--topic", help="produce to this Kafka topic instead (DIALWATCH_KAFKA)")
    p.add_argument("--labels", type=Path, help="write number,role labels here")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--subscribers", type=int, default=2000)
    p.add_argument("--hours", type=float, default=8.0)
    p.add_argument("--bulk-diallers", type=int, default=2)
    p.add_argument("--late-fraction", type=float, default=0.0)
    p.add_argument("--start", help="ISO-8601 start (default: 09:00 yesterday, local time)")
    p.add_argument("--batch", type=int, default=500, help="CDRs per Kafka message (1 = single)")
    p.add_argument("--partitions", type=int, help="topic partitions (default: settings)")

    p = sub.add_parser("demo", help="embedded demo: broker, worker, simulator, live alerts")
    p.add_argument("--subscribers", type=int, default=3000)
    p.add_argument("--hours", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=7)

    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "scan":
        return _scan(args, settings)
    if args.command == "worker":
        from streams.worker import run_worker

        return run_worker(settings)
    if args.command == "simulate":
        return _simulate(args, settings)
    if args.command == "demo":
        from streams.demo import run_demo

        return run_demo(settings, subscribers=args.subscribers, hours=args.hours, seed=args.seed)
    parser.error(f"unknown command {args.command}")
    return 2


def _scan(args: argparse.Namespace, settings: Settings) -> int:
    from streams.factory import build_engine
    from streams.scan import scan

    settings = settings.with_(
        allowlist_file=args.allowlist or settings.allowlist_file,
        policy_file=args.config or settings.policy_file,
    )
    engine = build_engine(settings, args.redis)

    async def run() -> None:
        try:
            await scan(engine, args.files, sys.stdout)
        finally:
            await engine.store.close()

    asyncio.run(run())
    return 0


def default_start(settings: Settings) -> datetime:
    tz = ZoneInfo(settings.timezone)
    yesterday = datetime.now(tz) - timedelta(days=1)
    return yesterday.replace(hour=9, minute=0, second=0, microsecond=0)


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from streams import simulate as sim

    start = datetime.fromisoformat(args.start) if args.start else default_start(settings)
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
    if args.topic:
        partitions = args.partitions or settings.topic_partitions
        n = sim.produce(records, settings.kafka, args.topic, partitions, batch_size=args.batch)
        print(f"produced {n:,} CDRs to {args.topic}", file=sys.stderr)
        return 0
    out = args.out or "-"
    write = sim.write_csv if out.removesuffix(".gz").endswith(".csv") else sim.write_jsonl
    n = write(out, records)
    print(f"wrote {n:,} CDRs", file=sys.stderr)
    return 0
