"""How dialwatch's costs change with more CDRs and with more distinct numbers, in one run.

    python -m benchmarks.growth [--cdrs 100000,1000000] [--numbers 10000,1000000]
                                [--partitions 4] [--json PATH] [--skip-worker]

A. CDR growth: same population shape, more CDRs. For each N in --cdrs, the first N records of
   the labelled scenario (``benchmarks.throughput.make_records``, sized for about N records, so
   more CDRs also means proportionally more subscribers, as in throughput) are run through

   1. ``dialwatch scan`` of a JSON Lines file, in-process store, as a subprocess
      (``benchmarks.throughput.run_scan``: seconds from scan's own summary; CPU from wait4 less
      that of a scan of an empty file; peak RSS is its ru_maxrss);
   2. unless --skip-worker, the full worker (``python -m streams worker``, Redis store, both
      stages) on JSON arrays of 500 CDRs, against a fresh Tansu broker and redis-server started
      for that N (``benchmarks.throughput.services``, ``WorkerRun``, ``run_worker``: seconds from
      the worker's "flow resumed" log line to the /metrics poll showing every CDR and derived
      observation counted; CPU from /proc/<pid>/stat; peak RSS is VmHWM; broker and Redis CPU
      over the same span from ``ServiceCpu``).

   Per N: CDRs/s, CPU s per million CDRs, peak RSS; then the ratio of the largest N to the
   smallest for CPU s/M (1.0 = cost linear in CDRs), CDRs/s and peak RSS.

B. Distinct-number growth: same calls per number, more numbers. For each M in --numbers,
   ``streams.tools.simulate.generate`` makes M normal subscribers (no bulk diallers, no near misses)
   over 24 h at 2 calls a day each, in a separate process so that its records are not on this
   process's heap during the measurement; the period ends at least an hour before now, so no
   record is "in the future". The JSON Lines file is then scanned into a fresh redis-server
   (``streams.tools.services.start_redis``) with both stages, as ``dialwatch scan --redis`` does
   (``streams.factory.build_engines`` and ``streams.scan.scan``), in this process: the CPU is
   ``time.process_time()`` around the scan (read, parse, sort, both stages, the Redis client),
   with no interpreter start-up to subtract; the Redis server's CPU over the same span comes from
   /proc. Reported per M: CDRs/s (scan's own seconds), CPU s per million CDRs (scan, Redis),
   the growth of Redis's used_memory, bytes per distinct caller, ``dbsize`` and keys per
   distinct caller (the callee and 100-number block keys of stage 2 are counted too), the
   event time one scan batch (settings.chunk_records records) spans, and the ratio between the
   largest and smallest M of bytes per number and of CPU per CDR. With few numbers a batch
   spans hours of event time, more than the 30 min allowed lateness, so the engine prunes the
   early calls' duplicate-check ids and short buckets within the batch: the smallest M's state
   per number is smaller, and its CPU per CDR lower, than in denser traffic.

Each figure gets a verdict: "linear" when its per-unit value changes by less than 25% from the
smallest size to the largest, else "grows x<ratio>" (or "falls x<ratio>"). Everything is
printed as two tables and written to --json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from benchmarks.floors import peak_rss_kb
from benchmarks.throughput import (
    BATCH,
    ROOT,
    ServiceCpu,
    Stage,
    WorkerRun,
    cpu_seconds,
    machine,
    make_records,
    row_head,
    run_scan,
    run_worker,
    services,
)
from config.numbering import plan_from_setting
from config.settings import Settings
from streams.cdr import CDR, parse_records
from streams.engine import Engine
from streams.observe import derived_obs
from streams.tools import simulate as sim
from streams.tools.services import start_redis
from streams.topics import create_topics

LINEAR = 0.25  # a per-unit figure that changes by less than this is "linear"
HOURS = 24.0  # part B: the simulated period
CALLS_PER_NUMBER = 2.0  # part B: calls a day per subscriber (mean; Poisson x lognormal activity)


# --------------------------------------------------------------------------- verdicts


def ratio(first: float | None, last: float | None) -> float | None:
    if first is None or last is None or first <= 0:
        return None
    return last / first


def verdict(value: float | None) -> str:
    """Of a per-unit figure's ratio, largest size over smallest."""
    if value is None:
        return "n/a"
    if abs(value - 1.0) < LINEAR:
        return "linear"
    return f"{'grows' if value > 1 else 'falls'} x{value:.2f}"


def rss_verdict(value: float | None, size_ratio: float) -> str:
    """Of a peak RSS ratio: flat, proportional to the input, or neither."""
    if value is None:
        return "n/a"
    if abs(value - 1.0) < LINEAR:
        return "flat"
    if abs(value / size_ratio - 1.0) < LINEAR:
        return f"proportional to the input (x{value:.2f} for x{size_ratio:g})"
    return f"grows x{value:.2f} for x{size_ratio:g} the input"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"x{value:.2f}"


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------- A: more CDRs


def _attempt(stage: Stage, body: Callable[[], None]) -> None:
    print(f"-- {stage.label} ...", file=sys.stderr, flush=True)
    began = time.monotonic()
    try:
        body()
    except Exception as exc:
        stage.error = f"{type(exc).__name__}: {exc}"
        print(f"   failed: {stage.error[:2000]}", file=sys.stderr)
    else:
        print(
            f"   {stage.records:,} in {stage.seconds:.2f} s ({stage.rate:,.0f}/s, "
            f"{stage.per_million(stage.cpu_s) or 0:.1f} CPU s/M, "
            f"peak RSS {stage.peak_rss_kb / 1024:.0f} MB; stage took "
            f"{time.monotonic() - began:.1f} s)",
            file=sys.stderr,
            flush=True,
        )


def _worker_stage(
    stage: Stage,
    records: list[dict[str, object]],
    expect_derived: int,
    allowlist: Path,
    workdir: Path,
    partitions: int,
) -> None:
    """The worker on JSON arrays of BATCH CDRs, against its own fresh broker and Redis; the
    topic is produced before anything is measured, as benchmarks.throughput does."""
    with services(argparse.Namespace(kafka=None, redis=None)) as (kafka, redis, pids):
        topic = f"growth-{uuid.uuid4().hex[:8]}-cdrs"
        create_topics(kafka, {topic: partitions})
        t = time.perf_counter()
        sim.produce(records, kafka, topic, partitions, batch_size=BATCH)
        stage.extra["produce_s"] = round(time.perf_counter() - t, 1)
        with ServiceCpu(pids) as svc:
            worker = WorkerRun(kafka, redis, topic, partitions, allowlist, workdir, stage.name)
            try:
                run_worker(stage, worker, len(records), expect_derived, svc)
            finally:
                worker.stop()
                # Faust's data directory for the worker's app id, in the working directory.
                shutil.rmtree(ROOT / f"bench-{worker.tag}-data", ignore_errors=True)


def cdr_growth(
    n: int, settings: Settings, skip_worker: bool, partitions: int
) -> tuple[Stage, Stage]:
    t = time.perf_counter()
    records, allowlist_numbers = make_records(n, settings)
    plan = plan_from_setting(settings.numbering_plan)
    cdrs = [r for r in parse_records(records, plan) if isinstance(r, CDR)]
    expect_derived = len(derived_obs(cdrs, settings.international_trunks, 0, plan))
    del cdrs
    print(
        f"A. {len(records):,} scenario records ({expect_derived:,} derived observations) "
        f"generated in {time.perf_counter() - t:.1f} s",
        file=sys.stderr,
    )
    scan = Stage(f"scan_{n}", f"dialwatch scan, JSONL, {n:,}")
    worker = Stage(f"worker_{n}", f"worker, {BATCH} CDRs/msg, {n:,}")
    with tempfile.TemporaryDirectory(prefix="dialwatch-growth-") as tmp:
        workdir = Path(tmp)
        allowlist = workdir / "allowlist.txt"
        allowlist.write_text("\n".join(allowlist_numbers) + "\n")
        jsonl = workdir / "cdrs.jsonl"
        sim.write_jsonl(jsonl, records)
        _attempt(scan, lambda: run_scan(scan, jsonl, allowlist, workdir))
        if skip_worker:
            worker.skipped = "--skip-worker"
        else:
            worker.extra["partitions"] = partitions
            _attempt(
                worker,
                lambda: _worker_stage(
                    worker, records, expect_derived, allowlist, workdir, partitions
                ),
            )
    for stage in (scan, worker):
        stage.extra["derived_observations_expected"] = expect_derived
    return scan, worker


def cdr_summary(sizes: list[int], runs: dict[int, tuple[Stage, Stage]]) -> dict[str, Any]:
    """Largest N over smallest, per path, for CPU s/M, CDRs/s and peak RSS."""
    small, large = min(sizes), max(sizes)
    out: dict[str, Any] = {"from": small, "to": large, "size_ratio": large / small}
    for i, path in enumerate(("scan", "worker")):
        a, b = runs[small][i], runs[large][i]
        if small == large or not (a.ok and b.ok):
            out[path] = None
            continue
        cpu = ratio(a.per_million(a.cpu_s), b.per_million(b.cpu_s))
        rss = ratio(a.peak_rss_kb, b.peak_rss_kb)
        out[path] = {
            "cpu_s_per_million_ratio": _r(cpu),
            "cpu_verdict": verdict(cpu),
            "cdrs_per_s_ratio": _r(ratio(a.rate, b.rate)),
            "peak_rss_ratio": _r(rss),
            "peak_rss_verdict": rss_verdict(rss, large / small),
        }
    return out


def cdr_table(sizes: list[int], runs: dict[int, tuple[Stage, Stage]], summary: Any) -> str:
    head = row_head("path", 22)
    lines = [
        f"A. CDR growth (labelled scenario, same shape; worker on JSON arrays of {BATCH} CDRs)",
        head,
        "-" * len(head),
    ]
    for i, path in enumerate(("dialwatch scan, JSONL", f"worker, {BATCH} CDRs/msg")):
        for n in sizes:
            lines.append(runs[n][i].row(path, 22))
    for path in ("scan", "worker"):
        got = summary.get(path)
        if not got:
            continue
        lines.append(
            f"{path}, {summary['from']:,} -> {summary['to']:,} CDRs: CPU s/M "
            f"{_x(got['cpu_s_per_million_ratio'])} ({got['cpu_verdict']}), CDRs/s "
            f"{_x(got['cdrs_per_s_ratio'])}, peak RSS {_x(got['peak_rss_ratio'])} "
            f"({got['peak_rss_verdict']})"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- B: more numbers


def population_start(settings: Settings, hours: float) -> datetime:
    """The start of a period of ``hours`` that ends at least an hour before now (whole hour)."""
    now = datetime.now(ZoneInfo(settings.timezone))
    return (now - timedelta(hours=hours + 1)).replace(minute=0, second=0, microsecond=0)


def write_population(
    path: str, subscribers: int, start: datetime, hours: float, calls_per_day: float
) -> dict[str, int]:
    """Generate the population and write it as JSON Lines (runs in a child process)."""
    spec = sim.SimSpec(
        start=start,
        subscribers=subscribers,
        hours=hours,
        calls_per_day=calls_per_day,
        bulk_diallers=0,
        near_miss=0,
    )
    records, _ = sim.generate(spec)
    sim.write_jsonl(path, records)
    return {
        "cdrs": len(records),
        "callers": len({r["caller"] for r in records}),
        "callees": len({r["callee"] for r in records}),
        "parties": len({r["caller"] for r in records} | {r["callee"] for r in records}),
    }


async def _scan_redis(engine: Engine, derived: Engine, path: Path) -> Counter[str]:
    from streams.scan import scan

    try:
        return await scan(engine, [str(path)], io.StringIO(), io.StringIO(), derived=derived)
    finally:
        await engine.store.close()
        await derived.store.close()


def _reset_peak_rss() -> int | None:
    """Reset this process's VmHWM to its current RSS (Linux: clear_refs 5); that RSS in KiB,
    or None when the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return None
    return peak_rss_kb()


@dataclass
class NumbersRun:
    numbers: int  # subscribers asked for
    doc: dict[str, Any]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.doc.get("cdrs", 0) > 0


def _key_kinds(client: Any) -> dict[str, int]:
    """Keys by what they hold: stage-1 number windows, stage-2 callee and block windows, and
    the per-partition hashes (meta, episodes, due...)."""
    kinds: Counter[str] = Counter()
    for key in client.scan_iter(count=20_000):
        text = key.decode(errors="replace")
        if ":n:callee:" in text:
            kinds["callee"] += 1
        elif ":n:block:" in text:
            kinds["block"] += 1
        elif ":n:trunk:" in text:
            kinds["trunk"] += 1
        elif ":n:" in text:
            kinds["number"] += 1
        else:
            kinds["other"] += 1
    return dict(kinds)


def number_growth(m: int, settings: Settings) -> NumbersRun:
    import redis

    from streams.factory import build_engines

    run = NumbersRun(m, {"subscribers": m, "hours": HOURS, "calls_per_day": CALLS_PER_NUMBER})
    print(f"-- B. {m:,} subscribers ...", file=sys.stderr, flush=True)
    service = start_redis()
    try:
        path = service.workdir / "cdrs.jsonl"
        start = population_start(settings, HOURS)
        t = time.perf_counter()
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            counts = pool.submit(
                write_population, str(path), m, start, HOURS, CALLS_PER_NUMBER
            ).result()
        run.doc.update(counts, generate_s=round(time.perf_counter() - t, 1))
        run.doc["start"] = start.isoformat()
        client = redis.Redis.from_url(service.address)
        try:
            before = client.info("memory")
            engine, derived = build_engines(settings, service.address)
            gc.collect()
            rss0 = _reset_peak_rss()
            redis_cpu0, cpu0 = cpu_seconds(service.proc.pid), time.process_time()
            wall0 = time.perf_counter()
            totals = asyncio.run(_scan_redis(engine, derived, path))
            wall = time.perf_counter() - wall0
            cpu, redis_cpu = time.process_time() - cpu0, cpu_seconds(service.proc.pid) - redis_cpu0
            peak = peak_rss_kb()
            after = client.info("memory")
            dbsize = int(client.dbsize())
            kinds = _key_kinds(client)
        finally:
            client.close()
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
        print(f"   failed: {run.error[:2000]}", file=sys.stderr)
        return run
    finally:
        service.stop()  # removes its directory, the JSON Lines file with it
    n, callers = run.doc["cdrs"], run.doc["callers"]
    seconds = totals["seconds_x1000"] / 1000
    growth = int(after["used_memory"]) - int(before["used_memory"])
    run.doc.update(
        read=totals["read"],
        accepted=totals["accepted"],
        rejected=sum(v for k, v in totals.items() if k.startswith("rejected:")),
        alerts=sum(v for k, v in totals.items() if k.startswith("alerts:")),
        calls_per_caller=round(n / callers, 3),
        # Event time one scan batch (settings.chunk_records records) spans: the batch's watermark
        # runs that far ahead of its oldest calls, and what the engine prunes depends on it.
        batch_span_min=round(settings.chunk_records / n * HOURS * 60, 2),
        # This process's RSS before the scan and its peak during it (VmHWM, reset before it).
        rss_before_mb=None if rss0 is None else round(rss0 / 1024, 1),
        scan_peak_rss_mb=None if rss0 is None else round(peak / 1024, 1),
        seconds=round(seconds, 3),
        wall_s=round(wall, 3),
        cdrs_per_s=round(n / seconds, 1),
        scan_cpu_s=round(cpu, 3),
        redis_cpu_s=round(redis_cpu, 3),
        scan_cpu_s_per_million=round(cpu / n * 1e6, 2),
        redis_cpu_s_per_million=round(redis_cpu / n * 1e6, 2),
        cpu_s_per_million=round((cpu + redis_cpu) / n * 1e6, 2),
        used_memory_before=int(before["used_memory"]),
        used_memory_after=int(after["used_memory"]),
        used_memory_growth=growth,
        used_memory_rss_after=int(after["used_memory_rss"]),
        # Of which the data itself (used_memory less Redis's own overhead: key tables, clients).
        used_memory_dataset_growth=int(after["used_memory_dataset"])
        - int(before["used_memory_dataset"]),
        bytes_per_number=round(growth / callers, 1),
        bytes_per_key=round(growth / max(1, dbsize), 1),
        dbsize=dbsize,
        keys_per_number=round(dbsize / callers, 3),
        keys=kinds,
    )
    if totals["read"] != n:
        run.error = f"scan read {totals['read']:,} records, {n:,} written"
    print(
        f"   {n:,} CDRs from {callers:,} callers in {seconds:.1f} s ({n / seconds:,.0f}/s); "
        f"used_memory +{growth / 2**20:,.1f} MB = {growth / callers:,.0f} B/number, "
        f"{dbsize:,} keys",
        file=sys.stderr,
        flush=True,
    )
    return run


def number_summary(sizes: list[int], runs: dict[int, NumbersRun]) -> dict[str, Any]:
    small, large = min(sizes), max(sizes)
    a, b = runs[small], runs[large]
    out: dict[str, Any] = {"from": small, "to": large, "size_ratio": large / small}
    if small == large or not (a.ok and b.ok):
        return out
    for figure in (
        "bytes_per_number",
        "keys_per_number",
        "scan_cpu_s_per_million",
        "redis_cpu_s_per_million",
        "cpu_s_per_million",
        "cdrs_per_s",
        "calls_per_caller",
    ):
        value = ratio(a.doc[figure], b.doc[figure])
        out[figure] = {"ratio": _r(value), "verdict": verdict(value)}
    return out


def number_table(sizes: list[int], runs: dict[int, NumbersRun], summary: Any) -> str:
    head = (
        f"{'numbers':>9} {'CDRs':>10} {'callers':>9} {'calls/':>6} {'seconds':>8} "
        f"{'CDRs/s':>7} {'scan CPU':>8} {'Redis CPU':>9} {'used_memory':>11} {'B/number':>8} "
        f"{'dbsize':>10} {'keys/':>6} {'batch':>6}"
    )
    sub = (
        f"{'':>9} {'':>10} {'':>9} {'caller':>6} {'':>8} {'':>7} {'s/M':>8} {'s/M':>9} "
        f"{'growth MB':>11} {'':>8} {'':>10} {'number':>6} {'min':>6}"
    )
    lines = [
        f"B. Distinct-number growth (simulated subscribers, {HOURS:g} h at "
        f"{CALLS_PER_NUMBER:g} calls a day; scan into a fresh Redis, both stages)",
        head,
        sub,
        "-" * len(head),
    ]
    for m in sizes:
        run = runs[m]
        if not run.ok:
            lines.append(f"{m:>9,} FAILED: {str(run.error).splitlines()[0][:200]}")
            continue
        d = run.doc
        lines.append(
            f"{m:>9,} {d['cdrs']:>10,} {d['callers']:>9,} {d['calls_per_caller']:>6.2f} "
            f"{d['seconds']:>8.1f} {d['cdrs_per_s']:>7,.0f} {d['scan_cpu_s_per_million']:>8.1f} "
            f"{d['redis_cpu_s_per_million']:>9.1f} {d['used_memory_growth'] / 2**20:>11.1f} "
            f"{d['bytes_per_number']:>8,.0f} {d['dbsize']:>10,} {d['keys_per_number']:>6.2f} "
            f"{d['batch_span_min']:>6.1f}"
        )
    names = (
        ("bytes_per_number", "Redis bytes per number"),
        ("keys_per_number", "keys per number"),
        ("scan_cpu_s_per_million", "scan CPU per CDR"),
        ("redis_cpu_s_per_million", "Redis CPU per CDR"),
        ("cpu_s_per_million", "scan+Redis CPU per CDR"),
    )
    for name, label in names:
        if name in summary:
            got = summary[name]
            lines.append(
                f"{label}, {summary['from']:,} -> {summary['to']:,} numbers: "
                f"{_x(got['ratio'])} ({got['verdict']})"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cdrs", type=_sizes, default=[100_000, 1_000_000])
    parser.add_argument("--numbers", type=_sizes, default=[10_000, 1_000_000])
    parser.add_argument("--partitions", type=int, default=4, help="part A worker's topic")
    parser.add_argument("--json", type=Path, help="write every figure here as JSON")
    parser.add_argument("--skip-worker", action="store_true", help="part A: scan only")
    args = parser.parse_args(argv)
    if args.partitions < 1:
        parser.error("--partitions must be positive")
    settings = Settings()
    report: dict[str, Any] = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(
            ["python -m benchmarks.growth", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": machine(),
        "loadavg_before": round(os.getloadavg()[0], 2),
    }
    started = time.monotonic()

    cdr_runs = {n: cdr_growth(n, settings, args.skip_worker, args.partitions) for n in args.cdrs}
    gc.collect()
    a_summary = cdr_summary(args.cdrs, cdr_runs)
    number_runs = {m: number_growth(m, settings) for m in args.numbers}
    b_summary = number_summary(args.numbers, number_runs)

    report["loadavg_after"] = round(os.getloadavg()[0], 2)
    report["total_s"] = round(time.monotonic() - started, 1)
    report["cdr_growth"] = {
        "batch": BATCH,
        "partitions": args.partitions,
        "runs": [
            {"cdrs": n, "scan": scan.as_dict(), "worker": worker.as_dict()}
            for n, (scan, worker) in cdr_runs.items()
        ],
        "summary": a_summary,
    }
    report["number_growth"] = {
        "hours": HOURS,
        "calls_per_day": CALLS_PER_NUMBER,
        "runs": [{**run.doc, "error": run.error, "ok": run.ok} for run in number_runs.values()],
        "summary": b_summary,
    }
    print(cdr_table(args.cdrs, cdr_runs, a_summary))
    print()
    print(number_table(args.numbers, number_runs, b_summary))
    print(
        f"1-minute load average {report['loadavg_before']} before, "
        f"{report['loadavg_after']} after ({os.cpu_count()} CPUs); took {report['total_s']:.0f} s"
    )
    if args.json:
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    stages = [s for pair in cdr_runs.values() for s in pair]
    ok = all(s.ok or s.skipped for s in stages) and all(r.ok for r in number_runs.values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
