"""``dialwatch scan``: replay CDR files in event-time order through the worker's engine."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import TextIO

import orjson

from streams.cdr import CDR, Reject
from streams.engine import Engine, Item
from streams.files import read_records

SCAN_PARTITION = 0


async def scan(
    engine: Engine, paths: Iterable[str], out: TextIO, err: TextIO = sys.stderr
) -> Counter[str]:
    """Write every alert as one JSON line to ``out``; return the summary counts."""
    started = time.perf_counter()
    totals: Counter[str] = Counter()
    records: list[CDR] = []
    for path in paths:
        for rec in read_records(path):
            if isinstance(rec, Reject):
                totals[f"rejected:{rec.reason}"] += 1
            else:
                records.append(rec)
    totals["read"] = len(records) + sum(v for k, v in totals.items() if k.startswith("rejected"))
    records.sort(key=lambda r: r.start_ms)  # stable: ties keep file order
    meta = await engine.meta(SCAN_PARTITION)
    first = meta.offset + 1
    batch = engine.settings.batch_max
    for i in range(0, len(records), batch):
        items: list[Item] = [(first + i + j, r) for j, r in enumerate(records[i : i + batch])]
        outcome = await engine.process(SCAN_PARTITION, items)
        totals["accepted"] += outcome.accepted
        totals["duplicates"] += outcome.duplicates
        for _, rej in outcome.rejects:
            totals[f"rejected:{rej.reason}"] += 1
        for alert in outcome.alerts:
            out.write(orjson.dumps(alert.to_dict(engine.tz)).decode() + "\n")
            totals[f"alerts:{alert.action}"] += 1
        if err.isatty() and i % (batch * 50) == 0:
            err.write(f"\r{i + len(items):,} records")
    out.flush()
    seconds = time.perf_counter() - started
    totals["seconds_x1000"] = int(seconds * 1000)
    _summary(totals, seconds, err)
    return totals


def _summary(totals: Counter[str], seconds: float, err: TextIO) -> None:
    rate = totals["read"] / seconds if seconds > 0 else 0.0
    err.write(
        f"\nscanned {totals['read']:,} records in {seconds:.2f} s ({rate:,.0f}/s): "
        f"{totals['accepted']:,} accepted, {totals['duplicates']:,} duplicates\n"
    )
    for key in sorted(totals):
        if key.startswith(("rejected:", "alerts:")):
            err.write(f"  {key:28} {totals[key]:,}\n")
