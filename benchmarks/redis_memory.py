"""Redis memory per tracked number: scan simulated traffic into a fresh redis-server and divide
the growth of used_memory by the distinct numbers with state.

    python benchmarks/redis_memory.py [--subscribers 20000] [--hours 24]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import redis

from config.settings import Settings
from streams.factory import build_engine
from streams.scan import scan
from streams.tools import simulate as sim
from streams.tools.services import start_redis


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--bulk-diallers", type=int, default=20)
    args = parser.parse_args()
    start = (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=2)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    spec = sim.SimSpec(
        start=start,
        hours=args.hours,
        subscribers=args.subscribers,
        bulk_diallers=args.bulk_diallers,
        near_miss=0,
    )
    records, labels = sim.generate(spec)
    service = start_redis()
    try:
        client = redis.Redis.from_url(service.address)
        before = int(client.info("memory")["used_memory"])
        path = Path(service.workdir) / "cdrs.jsonl"
        sim.write_jsonl(path, records)
        engine = build_engine(Settings(), service.address)
        asyncio.run(_scan(engine, str(path)))
        after = int(client.info("memory")["used_memory"])
        keys = client.dbsize()
        numbers = sum(1 for _ in client.scan_iter(match="dw:*:n:*", count=10_000))
        diallers = {label.number for label in labels}
        heavy = [client.memory_usage(f"dw:{{p0}}:n:{n}") or 0 for n in diallers]
        callers = len({r["caller"] for r in records})
        print(f"CDRs {len(records):,}, callers {callers:,}, keys {keys:,}, number keys {numbers:,}")
        growth = after - before
        print(f"used_memory growth {growth:,} bytes = {growth / numbers:.0f} B/number")
        if heavy:
            print(f"bulk dialler key: max {max(heavy):,} B (MEMORY USAGE, {len(heavy)} diallers)")
    finally:
        service.stop()
    return 0


async def _scan(engine: object, path: str) -> None:
    from streams.engine import Engine

    assert isinstance(engine, Engine)
    await scan(engine, [path], io.StringIO(), sys.stderr)
    await engine.store.close()


if __name__ == "__main__":
    raise SystemExit(main())
