"""Throughput of the dialwatch worker against its floors, side by side in one run.

    python -m benchmarks.throughput [--cdrs 200000] [--partitions 4] [--json PATH]
                                    [--kafka HOST:PORT] [--redis URL]
                                    [--diallers 200] [--short-fetch-ms 10]

One broker (Tansu) and one redis-server are started on free loopback ports unless --kafka and
--redis name existing ones. The labelled scenario (streams.tools.scenario, every harassment pattern)
is generated with enough subscribers for about --cdrs records and its first --cdrs records are
produced twice before anything is measured: one CDR per message (keyed by caller) and JSON
arrays of 500 per message. Then, one after the other, each stage reads the same records:

1. aiokafka floor: a plain AIOKafkaConsumer (getmany, max_records 100,000) that decodes every
   message with orjson and does nothing else, on the single-CDR and on the batched topic;
2. Faust floor: benchmarks.floors, an agent that iterates the single-CDR topic with
   take_events(2000, 0.2) and does nothing;
3. the dialwatch worker (python -m streams worker, Redis store, both stages) on the single-CDR
   topic;
4. the same on the batched topic;
5. dialwatch scan on the same records from a JSON Lines file, in-process store, and from the
   contract CSV (its column-wise reader, streams.fastcsv; the alert ids must be the same).

If the worker fails on the batched topic, it is run again on it with DIALWATCH_BATCH_MAX=20.
Then two extras: the alert latency of a fresh worker fed live traffic at half its measured rate
on single CDRs (benchmarks.probes alert-latency: 200 planted bulk diallers, from producing the
CDR that crosses the threshold to reading the alert), once as is and once with its consumers'
fetch wait cut to 10 ms (Tansu holds every fetch for the whole wait, Faust asks for 1.5 s);
and, during both worker stages and for 3 s before them, the GET round trip of another Redis
client (benchmarks.probes redis-get, one GET every 10 ms).

Every stage runs in its own process. Seconds run from the start of consumption to the last
record done, CPU is user + system time of that process over the same span, peak RSS is its
VmHWM. The floors time themselves (benchmarks.floors: aiokafka from just before its first
getmany, Faust from its first batch). The worker is timed from outside by polling /metrics
every 0.2 s, from the last poll showing nothing counted to the first showing both stages
complete, so its seconds carry up to 0.2 s of slack at each end; its CPU comes from
/proc/<pid>/stat at those two polls. Scan reports its own seconds (read, parse, sort, detect);
its CPU is the whole process's (wait4) less that of a scan of an empty file. The CPU of the
broker and of Redis over each span is given separately when this command started them.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from benchmarks.floors import peak_rss_kb
from config.numbering import plan_from_setting
from config.settings import Settings
from streams.cdr import CDR, parse_records
from streams.observe import derived_obs
from streams.tools import simulate as sim
from streams.tools.scenario import ScenarioSpec, generate_scenario, write_scenario_csv
from streams.tools.services import Service, free_port, start_broker, start_redis
from streams.tools.simulate import default_start
from streams.topics import create_topics

ROOT = Path(__file__).resolve().parents[1]
BATCH = 500  # CDRs per message on the batched topic
# When the worker fails on the batched topic with its default DIALWATCH_BATCH_MAX (2000
# messages, up to a million CDRs, per take), it is run once more with takes of at most this many
# messages (10,000 CDRs), so that a figure for batched input is still there.
BOUNDED_BATCH_MAX = 20
RESULTS = ("accepted", "duplicate", "replayed", "to_trunk", "rejected")
# Records per subscriber of the default scenario (20,000 subscribers, 12 h: 155,131 records).
RECORDS_PER_SUBSCRIBER = 7.75


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of another process (all its threads) from /proc/<pid>/stat, in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Stage:
    name: str
    label: str
    records: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    peak_rss_kb: int = 0
    broker_cpu_s: float | None = None
    redis_cpu_s: float | None = None
    error: str | None = None
    skipped: str | None = None  # why this stage was not run
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.records > 0 and self.seconds > 0

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.ok else 0.0

    def per_million(self, cpu: float | None) -> float | None:
        return None if cpu is None or not self.ok else cpu / self.records * 1e6

    def row(self, label: str, width: int = 28) -> str:
        """The stage's line of a results table (``ROW_HEAD`` gives the columns)."""
        if self.skipped:
            return f"{label:{width}} not run: {self.skipped}"
        if not self.ok:
            return f"{label:{width}} FAILED: {str(self.error).splitlines()[0][:300]}"
        svc = [c for c in (self.broker_cpu_s, self.redis_cpu_s) if c is not None]
        svc_text = f"{self.per_million(sum(svc)):.1f}" if svc else "-"
        return (
            f"{label:{width}} {self.records:>9,} {self.seconds:>8.2f} {self.rate:>9,.0f} "
            f"{self.per_million(self.cpu_s):>8.1f} {self.peak_rss_kb / 1024:>11.1f} "
            f"{svc_text:>21}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "ok": self.ok,
            "error": self.error,
            "skipped": self.skipped,
            "records": self.records,
            "seconds": round(self.seconds, 3),
            "cdrs_per_s": round(self.rate, 1),
            "cpu_s": round(self.cpu_s, 3),
            "cpu_s_per_million": _round(self.per_million(self.cpu_s)),
            "peak_rss_mb": round(self.peak_rss_kb / 1024, 1),
            # CPU of the services over the same span; absent when not started by this command.
            "services_cpu_s_per_million": {
                name: _round(self.per_million(cpu))
                for name, cpu in (("broker", self.broker_cpu_s), ("redis", self.redis_cpu_s))
                if cpu is not None
            },
            **self.extra,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class ServiceCpu:
    """Samples the CPU seconds of the broker and Redis every 0.1 s in a background thread, so
    their share over a stage's [first, last] span can be read afterwards."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ServiceCpu:
        if self.pids:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                sample = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
                self.samples.append((time.time(), sample))
            self._stop.wait(0.1)

    def between(self, name: str, t0: float, t1: float) -> float | None:
        if name not in self.pids:
            return None
        deadline = time.monotonic() + 1.0
        while (not self.samples or self.samples[-1][0] < t1) and time.monotonic() < deadline:
            time.sleep(0.02)
        before = [s for t, s in self.samples if t <= t0]
        after = [s for t, s in self.samples if t >= t1]
        if not before or not after:
            return None
        return after[0][name] - before[-1][name]


# --------------------------------------------------------------------------- records


def make_records(target: int, settings: Settings) -> tuple[list[dict[str, object]], list[str]]:
    """The first ``target`` records (delivery order) of a scenario sized for about that many,
    and the scenario's allowlist."""
    start = default_start(settings)
    subscribers = max(200, math.ceil(target / RECORDS_PER_SUBSCRIBER))
    for _ in range(5):
        spec = ScenarioSpec(start=start, subscribers=subscribers, scale=subscribers / 20_000)
        scenario = generate_scenario(spec)
        if len(scenario.records) >= target:
            return scenario.records[:target], scenario.allowlist
        subscribers = math.ceil(subscribers * 1.1 * target / max(1, len(scenario.records)))
    raise RuntimeError(f"could not generate {target} records")


# --------------------------------------------------------------------------- processes


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _last_warning(path: Path) -> str:
    lines = [
        line for line in _tail(path, 20_000).splitlines() if "WARNING" in line or "ERROR" in line
    ]
    return lines[-1].strip()[:300] if lines else "none"


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# --------------------------------------------------------------------------- stages


def run_aiokafka_floor(
    stage: Stage, bootstrap: str, topic: str, partitions: int, expect: int, svc: ServiceCpu
) -> None:
    argv = [sys.executable, "-m", "benchmarks.floors", "aiokafka", bootstrap, topic]
    argv += [str(partitions), str(expect)]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = proc.communicate(timeout=120 + expect / 2000)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise RuntimeError("aiokafka floor timed out") from None
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {err.decode(errors='replace')[-1500:]}")
    _fill(stage, orjson.loads(out.splitlines()[-1]), svc)


def _fill(stage: Stage, doc: dict[str, Any], svc: ServiceCpu) -> None:
    stage.records = int(doc["records"])
    stage.seconds = doc["t_last"] - doc["t_first"]
    stage.cpu_s = doc["cpu_last"] - doc["cpu_first"]
    stage.peak_rss_kb = int(doc.get("peak_rss_kb", 0))
    stage.broker_cpu_s = svc.between("broker", doc["t_first"], doc["t_last"])
    stage.redis_cpu_s = svc.between("redis", doc["t_first"], doc["t_last"])


def run_faust_floor(
    stage: Stage,
    bootstrap: str,
    topic: str,
    partitions: int,
    expect: int,
    workdir: Path,
    svc: ServiceCpu,
) -> None:
    out = workdir / f"{stage.name}.json"
    log = workdir / f"{stage.name}.log"
    env = _env(
        BENCH_KAFKA=bootstrap,
        BENCH_TOPIC=topic,
        BENCH_APP_ID=f"bench-{uuid.uuid4().hex[:10]}-faust-floor",
        BENCH_EXPECT=str(expect),
        BENCH_OUT=str(out),
        BENCH_PARTITIONS=str(partitions),
    )
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.floors", "faust"],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120 + expect / 1000
        while not out.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"Faust floor exited with {proc.returncode}: {_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Faust floor timed out: {_tail(log)}")
            time.sleep(0.05)
        _fill(stage, orjson.loads(out.read_bytes()), svc)
    finally:
        stop(proc)


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as page:
        return str(page.read().decode())


def _counted(text: str, name: str) -> int:
    total = 0.0
    for result in RESULTS:
        match = re.search(rf'^{name}{{result="{result}"}} (\S+)$', text, re.MULTILINE)
        if match:
            total += float(match.group(1))
    return int(total)


@dataclass
class WorkerRun:
    """One dialwatch worker subprocess on its own topics, app id and Redis key prefix."""

    bootstrap: str
    redis: str
    cdr_topic: str
    partitions: int
    allowlist: Path
    workdir: Path
    name: str
    settings: dict[str, str] = field(default_factory=dict)  # extra DIALWATCH_* variables
    command: tuple[str, ...] = ("-m", "streams", "worker")
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    def __post_init__(self) -> None:
        self.web_port = free_port()
        self.alert_topic = f"bench-{self.tag}-alerts"
        self.log = self.workdir / f"{self.name}.log"
        create_topics(self.bootstrap, {self.alert_topic: 1, f"bench-{self.tag}-dead": 1})
        env = _env(
            DIALWATCH_KAFKA=self.bootstrap,
            DIALWATCH_REDIS=self.redis,
            DIALWATCH_CDR_TOPIC=self.cdr_topic,
            DIALWATCH_ALERT_TOPIC=self.alert_topic,
            DIALWATCH_DEAD_LETTER_TOPIC=f"bench-{self.tag}-dead",
            DIALWATCH_DERIVED_TOPIC=f"bench-{self.tag}-derived",
            DIALWATCH_REPARTITION_TOPIC=f"bench-{self.tag}-repartition",
            DIALWATCH_COMPLAINT_TOPIC=f"bench-{self.tag}-complaints",
            DIALWATCH_ALLOWLIST_FILE=str(self.allowlist),
            DIALWATCH_APP_ID=f"bench-{self.tag}",
            DIALWATCH_KEY_PREFIX=f"b{self.tag}",
            DIALWATCH_TOPIC_PARTITIONS=str(self.partitions),
            DIALWATCH_WEB_PORT=str(self.web_port),
            DIALWATCH_SESSION_TIMEOUT_S="6",
            DIALWATCH_HEARTBEAT_INTERVAL_S="1",
            DIALWATCH_REBALANCE_TIMEOUT_S="6",
            **self.settings,
        )
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, *self.command],
                cwd=ROOT,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )

    def counts(self) -> tuple[int, int]:
        """(CDRs counted by stage 1, observations counted by stage 2); (0, 0) before /metrics."""
        try:
            text = _metrics(self.web_port)
        except OSError:
            return 0, 0
        return (
            _counted(text, "dialwatch_cdrs_total"),
            _counted(text, "dialwatch_derived_observations_total"),
        )

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}: {_tail(self.log)}")

    def stop(self) -> None:
        stop(self.proc)


_FLOW_STARTED = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \[\d+\] \[INFO\] "
    r"\[\^-*Recovery\]: Seek stream partitions to committed offsets",
    re.MULTILINE,
)


def flow_started(log: Path) -> float | None:
    """When Faust, after the first assignment, seeks the stream partitions and resumes the
    flow (the worker logs it at INFO): nothing is consumed before. Epoch seconds, or None."""
    match = _FLOW_STARTED.search(_tail(log, 200_000))
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def run_worker(
    stage: Stage,
    worker: WorkerRun,
    expect: int,
    expect_derived: int,
    svc: ServiceCpu,
    on_running: Callable[[], None] | None = None,
) -> None:
    """Poll /metrics every 0.2 s until both stages have counted everything.

    The span starts when the worker's log says the stream partitions are sought and the flow
    resumes (else, at the last poll that showed nothing counted: that misses the first batch,
    which with JSON arrays can hold most of the records). Its CPU at that moment is the newest
    /proc sample taken no later.
    """
    pid = worker.proc.pid
    samples: list[tuple[float, float]] = []  # (time, worker CPU s) at every poll
    last_zero = (time.time(), 0.0)
    started: float | None = None
    stall_s = 90.0
    progress = (time.monotonic(), 0.0)  # last count change: (monotonic time, CPU s)
    seen = (0, 0)
    while True:
        worker.alive()
        now, cpu = time.time(), cpu_seconds(pid)
        samples.append((now, cpu))
        cdrs, observed = worker.counts()
        if started is None:
            started = flow_started(worker.log)
        if cdrs == 0 and observed == 0:
            last_zero = (now, cpu)
        elif on_running is not None:
            on_running()
            on_running = None
        if (cdrs, observed) != seen:
            seen, progress = (cdrs, observed), (time.monotonic(), cpu)
        if cdrs >= expect and observed >= expect_derived:
            break
        idle_s = time.monotonic() - progress[0]
        if idle_s > stall_s:
            # Busy on one big batch (over a third of a core) is not a stall; retrying is.
            if (cpu - progress[1]) / idle_s > 0.33:
                progress = (time.monotonic(), cpu)
            else:
                raise RuntimeError(
                    f"no progress for {stall_s:.0f} s at {cdrs:,} of {expect:,} CDRs and "
                    f"{observed:,} of {expect_derived:,} derived observations; last warning: "
                    f"{_last_warning(worker.log)}\n{_tail(worker.log)}"
                )
        time.sleep(0.2)
    if started is not None and started <= last_zero[0]:
        t0 = started
        cpu0 = max((c for t, c in samples if t <= started), default=samples[0][1])
        stage.extra["span_from"] = "worker log: flow resumed after the first assignment"
    else:
        t0, cpu0 = last_zero
        stage.extra["span_from"] = "last /metrics poll with nothing counted"
    stage.records = cdrs
    stage.seconds = now - t0
    stage.cpu_s = cpu - cpu0
    stage.peak_rss_kb = peak_rss_kb(pid)
    stage.broker_cpu_s = svc.between("broker", t0, now)
    stage.redis_cpu_s = svc.between("redis", t0, now)
    stage.extra["derived_observations"] = observed
    stage.extra["first_count_after_s"] = round(last_zero[0] - t0, 3)


def _run_scan(
    path: Path,
    env: dict[str, str],
    workdir: Path,
    name: str,
    expect: int = 0,
    command: tuple[str, ...] = ("streams", "scan"),
) -> tuple[str, Any, float]:
    """Run dialwatch scan (or ``python -m`` another ``command`` on the file), wait with wait4
    for its rusage; (stderr, rusage, wall seconds). ``expect``: the exit status expected (an
    empty file's scan exits 1: nothing accepted). Its standard output goes to NAME.alerts.jsonl."""
    err_path = workdir / f"{name}.stderr"
    with (workdir / f"{name}.alerts.jsonl").open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", *command, str(path)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
        )
    try:
        deadline = started + 600
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise RuntimeError("scan timed out")
            time.sleep(0.02)
    finally:
        if proc.returncode is None:
            stop(proc)
    wall = time.monotonic() - started
    stderr = err_path.read_text(errors="replace")
    if proc.returncode != expect:
        raise RuntimeError(f"scan exited with {proc.returncode}: {stderr[-1500:]}")
    return stderr, usage, wall


def run_scan(
    stage: Stage,
    path: Path,
    allowlist: Path,
    workdir: Path,
    scan_path: str = "fast",
    name: str | None = None,
) -> None:
    env = _env(
        DIALWATCH_REDIS="", DIALWATCH_ALLOWLIST_FILE=str(allowlist), DIALWATCH_SCAN_PATH=scan_path
    )
    empty = workdir / "empty.jsonl"
    empty.write_bytes(b"")
    # Start-up varies by tens of milliseconds from run to run (more than a small file's work):
    # subtract the cheaper of two empty runs, one on each side of the real one.
    name = name or f"scan-{scan_path}"
    _, base, base_wall = _run_scan(empty, env, workdir, f"{name}-empty", expect=1)
    stderr, usage, wall = _run_scan(path, env, workdir, name)
    _, again, again_wall = _run_scan(empty, env, workdir, f"{name}-empty", expect=1)
    if again.ru_utime + again.ru_stime < base.ru_utime + base.ru_stime:
        base, base_wall = again, again_wall
    match = re.search(r"scanned ([\d,]+) records in ([\d.]+) s", stderr)
    if not match:
        raise RuntimeError(f"no summary in scan's output: {stderr[-1500:]}")
    stage.records = int(match.group(1).replace(",", ""))
    stage.seconds = float(match.group(2))
    cpu = usage.ru_utime + usage.ru_stime
    base_cpu = base.ru_utime + base.ru_stime
    stage.cpu_s = cpu - base_cpu
    stage.peak_rss_kb = int(usage.ru_maxrss)
    alerts = (workdir / f"{name}.alerts.jsonl").read_bytes().count(b"\n")
    stage.extra.update(
        process_wall_s=round(wall, 3),
        process_cdrs_per_s=round(stage.records / wall, 1),
        process_cpu_s=round(cpu, 3),
        startup_cpu_s=round(base_cpu, 3),
        startup_wall_s=round(base_wall, 3),
        alerts=alerts,
    )


def alert_ids(path: Path) -> list[str]:
    return [str(orjson.loads(line)["alert_id"]) for line in path.read_bytes().splitlines()]


def run_duckdb(stage: Stage, path: Path, workdir: Path) -> None:
    """benchmarks.duckdb_peer on the scan's file: seconds are its own (read and query); CPU is
    the whole process's, its start-up included (a few hundredths of the 2M-CDR run's), so
    the CPU ratio leans towards scan, never against it."""
    command = ("benchmarks.duckdb_peer",)
    _, usage, wall = _run_scan(path, _env(), workdir, "duckdb", command=command)
    doc = orjson.loads((workdir / "duckdb.alerts.jsonl").read_bytes())
    stage.records, stage.seconds = int(doc["rows"]), float(doc["seconds"])
    stage.cpu_s = usage.ru_utime + usage.ru_stime
    stage.peak_rss_kb = int(usage.ru_maxrss)
    stage.extra.update(
        process_wall_s=round(wall, 3),
        process_cdrs_per_s=round(stage.records / wall, 1),
        callers=doc["callers"],
    )


# --------------------------------------------------------------------------- extras


class RedisProbe:
    """``benchmarks.probes redis-get``: another client's GET round trips while it runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.proc: subprocess.Popen[bytes] | None = None
        self.result: dict[str, Any] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.probes", "redis-get", self.url],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> dict[str, Any] | None:
        if self.proc is None:
            return None
        self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            stop(self.proc)
            return {"error": "the Redis probe did not stop"}
        lines = out.splitlines()
        if not lines:
            return {"error": err.decode(errors="replace")[-500:] or "no output"}
        self.result = orjson.loads(lines[-1])
        return self.result


def slowlog_mark(url: str) -> int:
    """The newest id in Redis's slowlog (-1 if empty or unreadable): entries after it are new."""
    import redis as redis_py

    try:
        client = redis_py.Redis.from_url(url)
        try:
            entries = client.slowlog_get(1)
        finally:
            client.close()
    except Exception:
        return -1
    return int(entries[0]["id"]) if entries else -1


def slowlog(url: str, after: int) -> dict[str, Any] | None:
    """Redis's own log of commands over 10 ms (its default) since ``slowlog_mark``: how many,
    the longest and which command that was. The log is read, never reset."""
    import redis as redis_py

    try:
        client = redis_py.Redis.from_url(url)
        try:
            entries = [e for e in client.slowlog_get(100_000) if int(e["id"]) > after]
        finally:
            client.close()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if not entries:
        return {"over_10ms": 0}
    worst = max(entries, key=lambda e: e["duration"])
    command = worst["command"]
    name = command.split()[0] if isinstance(command, (bytes, str)) else b"?"
    return {
        "over_10ms": len(entries),
        # Redis keeps only slowlog-max-len entries (128 by default; 10,000 in the Redis this
        # command starts): when the oldest new one is gone, the count is a lower bound.
        "over_10ms_capped": min(int(e["id"]) for e in entries) > after + 1,
        "max_ms": round(worst["duration"] / 1000, 1),
        "max_command": name.decode() if isinstance(name, bytes) else str(name),
    }


def redis_idle(url: str, seconds: float = 3.0) -> dict[str, Any] | None:
    probe = RedisProbe(url)
    probe.start()
    time.sleep(seconds)
    return probe.stop()


def run_alert_latency(
    stage: Stage,
    kafka: str,
    redis: str,
    topic: str,
    partitions: int,
    allowlist: Path,
    workdir: Path,
    rate: float,
    diallers: int,
    fetch_wait_ms: int | None = None,
) -> None:
    """A fresh worker on live traffic at ``rate`` CDRs/s (benchmarks.probes alert-latency).
    With ``fetch_wait_ms`` the worker's Kafka consumers ask for that fetch wait instead of
    Faust's fixed 1,500 ms (benchmarks.probes worker)."""
    from benchmarks.probes import _record

    create_topics(kafka, {topic: partitions})
    command: tuple[str, ...] = ("-m", "streams", "worker")
    if fetch_wait_ms is not None:
        command = ("-m", "benchmarks.probes", "worker", str(fetch_wait_ms))
    worker = WorkerRun(
        kafka, redis, topic, partitions, allowlist, workdir, stage.name, command=command
    )
    try:
        now = time.time()
        warm = [_record(f"1390000{i:04d}", "13900009999", i, now, True) for i in range(100)]
        sim.produce(warm, kafka, topic, partitions)
        deadline = time.monotonic() + 120
        while worker.counts()[0] < len(warm):
            worker.alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start: {_tail(worker.log)}")
            time.sleep(0.2)
        argv = [sys.executable, "-m", "benchmarks.probes", "alert-latency", kafka, topic]
        argv += [worker.alert_topic, str(partitions), f"{rate:.1f}", str(diallers)]
        out_path, err_path = workdir / "latency.json", workdir / "latency.stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=out, stderr=err)
        # The worker's CPU every 0.2 s, to take its share over the driver's sending span.
        samples: list[tuple[float, float]] = []
        deadline = time.monotonic() + 120 + diallers * 22 / (rate * 0.2)
        try:
            while proc.poll() is None:
                worker.alive()
                samples.append((time.time(), cpu_seconds(worker.proc.pid)))
                if time.monotonic() > deadline:
                    raise RuntimeError("the alert-latency driver timed out")
                time.sleep(0.2)
        finally:
            stop(proc)
        text = out_path.read_text()
        if proc.returncode != 0 or not text.strip():
            raise RuntimeError(f"driver exit {proc.returncode}: {_tail(err_path)}")
        doc = orjson.loads(text.splitlines()[-1])
        if not samples:
            raise RuntimeError("the driver finished before the worker's CPU was sampled")
        t0, t1 = doc.pop("t_start"), doc.pop("t_end")
        before = [c for t, c in samples if t <= t0] or [samples[0][1]]
        after = [c for t, c in samples if t >= t1] or [samples[-1][1]]
        stage.records = int(doc["cdrs_sent"])
        stage.seconds = t1 - t0
        stage.cpu_s = after[0] - before[-1]
        stage.peak_rss_kb = peak_rss_kb(worker.proc.pid)
        stage.extra.update(doc)
        stage.extra["worker_cpu_share"] = round(stage.cpu_s / stage.seconds, 3)
        if not doc.get("alerts"):
            raise RuntimeError(f"no dialler alert came back ({doc})")
    finally:
        worker.stop()


# --------------------------------------------------------------------------- report

STAGES = (
    ("aiokafka_single", "aiokafka floor, 1 CDR/msg"),
    ("aiokafka_batched", f"aiokafka floor, {BATCH} CDRs/msg"),
    ("faust_floor_single", "Faust floor, 1 CDR/msg"),
    ("worker_single", "worker, 1 CDR/msg"),
    ("worker_batched", f"worker, {BATCH} CDRs/msg"),
    ("worker_batched_bounded", f"worker, {BATCH}/msg, BATCH_MAX={BOUNDED_BATCH_MAX}"),
    ("scan", "dialwatch scan, JSONL"),
    ("scan_csv", "dialwatch scan, CSV"),
    ("scan_reference", "scan, reference path"),
    ("duckdb", "DuckDB, seed's rule, 1 thr"),
    ("alert_latency", "worker, live at half its rate"),
    ("alert_latency_short_fetch", "worker, live, short fetch wait"),
)
# (stage, floor): how the stage compares with the floor of its transport.
RATIOS = (
    ("worker_single", "faust_floor_single"),
    ("worker_batched", "aiokafka_batched"),
    ("worker_batched_bounded", "aiokafka_batched"),
    ("scan", "aiokafka_batched"),
    ("scan", "aiokafka_single"),
    ("scan", "scan_reference"),
    ("scan", "duckdb"),
    ("scan_csv", "scan"),
    ("scan_csv", "duckdb"),
)
# The reference scan costs about 200 CPU us per CDR: above this many records it is not run.
REFERENCE_MAX = 400_000


def ratios(stages: dict[str, Stage]) -> list[dict[str, Any]]:
    out = []
    for name, floor_name in RATIOS:
        stage, floor = stages[name], stages[floor_name]
        if not (stage.ok and floor.ok):
            continue
        cpu, floor_cpu = stage.per_million(stage.cpu_s), floor.per_million(floor.cpu_s)
        out.append(
            {
                "stage": name,
                "floor": floor_name,
                "rate_ratio": round(stage.rate / floor.rate, 4),
                "cpu_per_cdr_ratio": round(cpu / floor_cpu, 2) if cpu and floor_cpu else None,
            }
        )
    return out


def _ms(doc: dict[str, Any] | None) -> str:
    if not doc or "p99_ms" not in doc:
        return f"unavailable ({(doc or {}).get('error', 'not measured')})"
    return f"p50 {doc['p50_ms']:.2f} ms, p99 {doc['p99_ms']:.2f} ms, max {doc['max_ms']:.2f} ms"


def row_head(first: str, width: int = 28) -> str:
    """The column heads of ``Stage.row`` lines."""
    return (
        f"{first:{width}} {'records':>9} {'seconds':>8} {'CDRs/s':>9} {'CPU s/M':>8} "
        f"{'peak RSS MB':>11} {'broker+redis CPU s/M':>21}"
    )


def table(stages: dict[str, Stage], redis_idle: dict[str, Any] | None = None) -> str:
    head = row_head("stage")
    lines = [head, "-" * len(head)]
    for name, _ in STAGES:
        stage = stages[name]
        if name.startswith("alert_latency") and stage.ok:
            continue  # not a throughput: its own line below
        lines.append(stage.row(stage.label))
    for r in ratios(stages):
        label, floor = dict(STAGES)[r["stage"]], dict(STAGES)[r["floor"]]
        cpu = r["cpu_per_cdr_ratio"]
        lines.append(
            f"{label} / {floor}: rate x{r['rate_ratio']:.3f}"
            + (f", CPU per CDR x{cpu:.2f}" if cpu is not None else "")
        )
    if stages["scan"].ok and stages["duckdb"].ok:
        scan_rate = stages["scan"].extra["process_cdrs_per_s"]
        duck_rate = stages["duckdb"].extra["process_cdrs_per_s"]
        lines.append(
            f"whole process, start-up included: scan {scan_rate:,.0f} CDRs/s, DuckDB "
            f"{duck_rate:,.0f} rows/s: scan x{scan_rate / duck_rate:.3f} of DuckDB"
        )
    for name in ("alert_latency", "alert_latency_short_fetch"):
        if not stages[name].ok:
            continue
        x = stages[name].extra
        wait = x.get("fetch_wait_ms", 1500)
        lines.append(
            f"alert latency, worker fetch wait {wait} ms, at {x['rate_sent']:,.0f} CDRs/s "
            f"(worker CPU {x['worker_cpu_share']:.0%} of a core), {x['alerts']} of "
            f"{x['diallers']} diallers: {_ms(x)} (median of the first quarter "
            f"{x['p50_first_quarter_ms']:.0f} ms, of the last {x['p50_last_quarter_ms']:.0f} ms)"
        )
    lines.append(f"Redis GET, other client, idle: {_ms(redis_idle)}")
    for name in ("worker_single", "worker_batched", "worker_batched_bounded"):
        if stages[name].ok and "redis_get_other_client" in stages[name].extra:
            got = stages[name].extra["redis_get_other_client"]
            slow = stages[name].extra.get("redis_slowlog") or {}
            slow_text = (
                f"; Redis slowlog: {'at least ' if slow.get('over_10ms_capped') else ''}"
                f"{slow['over_10ms']} commands over 10 ms, longest "
                f"{slow['max_ms']} ms ({slow['max_command']})"
                if slow.get("over_10ms")
                else "; Redis slowlog: no command over 10 ms"
                if "over_10ms" in slow
                else ""
            )
            lines.append(
                f"Redis GET, other client, during {stages[name].label}: {_ms(got)}{slow_text}"
            )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def services(
    args: argparse.Namespace, needed: bool = True
) -> Iterator[tuple[str, str, dict[str, int]]]:
    """The broker and Redis the run uses (``needed`` False: none, for file stages only)."""
    started: list[Service] = []
    if not needed:
        yield "", "", {}
        return
    try:
        pids: dict[str, int] = {}
        kafka = args.kafka
        if not kafka:
            broker = start_broker()
            started.append(broker)
            kafka, pids["broker"] = broker.address, broker.proc.pid
        redis = args.redis
        if not redis:
            server = start_redis(extra=["--slowlog-max-len", "10000"])
            started.append(server)
            redis, pids["redis"] = server.address, server.proc.pid
        yield kafka, redis, pids
    finally:
        for service in reversed(started):
            service.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdrs", type=int, help="records (default 200,000; --quick: 30,000)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="30,000 CDRs and no alert-latency stages: side by side in under 3 minutes",
    )
    parser.add_argument(
        "--scan-only",
        action="store_true",
        help="only the file stages (scan, its reference path, DuckDB): no broker, no worker",
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write every figure here as JSON")
    parser.add_argument("--kafka", help="bootstrap servers of an existing broker")
    parser.add_argument("--redis", help="URL of an existing Redis")
    parser.add_argument(
        "--diallers",
        type=int,
        default=200,
        help="alert latency: diallers planted in live traffic (0: skip)",
    )
    parser.add_argument(
        "--short-fetch-ms",
        type=int,
        default=10,
        help="alert latency again with the worker's fetch wait at this (0: skip)",
    )
    args = parser.parse_args(argv)
    if args.cdrs is None:
        args.cdrs = 30_000 if args.quick else 200_000
    if args.quick:
        args.diallers, args.short_fetch_ms = 0, 0
    if args.cdrs < 1 or args.partitions < 1:
        parser.error("--cdrs and --partitions must be positive")
    settings = Settings()
    run = uuid.uuid4().hex[:8]
    stages = {name: Stage(name, label) for name, label in STAGES}
    report: dict[str, Any] = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(
            ["python -m benchmarks.throughput", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": machine(),
        # Other work on the machine shares its cores: the 1-minute load before and after.
        "loadavg_before": round(os.getloadavg()[0], 2),
        "cdrs": args.cdrs,
        "partitions": args.partitions,
        "batch": BATCH,
    }

    t = time.perf_counter()
    records, allowlist_numbers = make_records(args.cdrs, settings)
    plan = plan_from_setting(settings.numbering_plan)
    cdrs = [r for r in parse_records(records, plan) if isinstance(r, CDR)]
    expect_derived = len(derived_obs(cdrs, settings.international_trunks, 0, plan))
    report["records"] = len(records)
    report["derived_observations"] = expect_derived
    print(
        f"{len(records):,} records ({len(cdrs):,} valid CDRs, {expect_derived:,} derived "
        f"observations) generated in {time.perf_counter() - t:.1f} s",
        file=sys.stderr,
    )

    with (
        tempfile.TemporaryDirectory(prefix="dialwatch-bench-") as tmp,
        services(args, needed=not args.scan_only) as (
            kafka,
            redis,
            pids,
        ),
    ):
        workdir = Path(tmp)
        allowlist = workdir / "allowlist.txt"
        allowlist.write_text("\n".join(allowlist_numbers) + "\n")
        jsonl = workdir / "cdrs.jsonl"
        sim.write_jsonl(jsonl, records)
        csv_file = workdir / "cdrs.csv"  # the same records as the contract CSV
        write_scenario_csv(csv_file, records)
        single, batched = f"bench-{run}-cdrs-single", f"bench-{run}-cdrs-batched"
        if not args.scan_only:
            create_topics(kafka, {single: args.partitions, batched: args.partitions})
            t = time.perf_counter()
            sim.produce(records, kafka, single, args.partitions, batch_size=1)
            sim.produce(records, kafka, batched, args.partitions, batch_size=BATCH)
            print(f"produced both topics in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        n = len(records)

        def attempt(name: str, body: Callable[[], None]) -> None:
            stage = stages[name]
            if args.scan_only and not name.startswith(("scan", "duckdb")):
                stage.skipped = "--scan-only"
                return
            print(f"-- {stage.label} ...", file=sys.stderr, flush=True)
            began = time.monotonic()
            try:
                body()
            except Exception as exc:
                stage.error = f"{type(exc).__name__}: {exc}"
                print(f"   failed: {stage.error}", file=sys.stderr)
            else:
                print(
                    f"   {stage.records:,} in {stage.seconds:.2f} s "
                    f"(stage took {time.monotonic() - began:.1f} s)",
                    file=sys.stderr,
                )

        def worker_stage(name: str, topic: str, settings: dict[str, str] | None = None) -> None:
            worker = WorkerRun(
                kafka, redis, topic, args.partitions, allowlist, workdir, name, settings or {}
            )
            probe = RedisProbe(redis)
            mark = slowlog_mark(redis)
            try:
                # Another Redis client's GETs, from the first count to the last.
                run_worker(stages[name], worker, n, expect_derived, svc, probe.start)
            finally:
                worker.stop()
                got = probe.stop()
                if got is not None:
                    stages[name].extra["redis_get_other_client"] = got
                stages[name].extra["redis_slowlog"] = slowlog(redis, mark)

        report["redis_get_idle"] = None if args.scan_only else redis_idle(redis)
        with ServiceCpu(pids) as svc:
            attempt(
                "aiokafka_single",
                lambda: run_aiokafka_floor(
                    stages["aiokafka_single"], kafka, single, args.partitions, n, svc
                ),
            )
            attempt(
                "aiokafka_batched",
                lambda: run_aiokafka_floor(
                    stages["aiokafka_batched"], kafka, batched, args.partitions, n, svc
                ),
            )
            attempt(
                "faust_floor_single",
                lambda: run_faust_floor(
                    stages["faust_floor_single"], kafka, single, args.partitions, n, workdir, svc
                ),
            )
            attempt("worker_single", lambda: worker_stage("worker_single", single))
            attempt("worker_batched", lambda: worker_stage("worker_batched", batched))
            if stages["worker_batched"].ok:
                stages["worker_batched_bounded"].skipped = "the default batch size worked"
            else:
                attempt(
                    "worker_batched_bounded",
                    lambda: worker_stage(
                        "worker_batched_bounded",
                        batched,
                        {"DIALWATCH_BATCH_MAX": str(BOUNDED_BATCH_MAX)},
                    ),
                )
            attempt("scan", lambda: run_scan(stages["scan"], jsonl, allowlist, workdir))
            attempt(
                "scan_csv",
                lambda: run_scan(stages["scan_csv"], csv_file, allowlist, workdir, name="scan-csv"),
            )
            if stages["scan"].ok and stages["scan_csv"].ok:
                same = alert_ids(workdir / "scan-fast.alerts.jsonl") == alert_ids(
                    workdir / "scan-csv.alerts.jsonl"
                )
                stages["scan_csv"].extra["same_alert_ids_as_jsonl"] = same
            if len(records) > REFERENCE_MAX:
                stages["scan_reference"].skipped = f"over {REFERENCE_MAX:,} records"
            else:
                attempt(
                    "scan_reference",
                    lambda: run_scan(
                        stages["scan_reference"], jsonl, allowlist, workdir, "reference"
                    ),
                )
            attempt("duckdb", lambda: run_duckdb(stages["duckdb"], jsonl, workdir))
            # Live traffic at half the worker's rate on single CDRs: with Faust's own fetch
            # wait, then (diagnostic) with a short one, to tell the broker's long-poll apart.
            for name, wait in (
                ("alert_latency", None),
                ("alert_latency_short_fetch", args.short_fetch_ms or None),
            ):
                latency = stages[name]
                if args.diallers <= 0:
                    latency.skipped = "--diallers 0"
                elif name.endswith("short_fetch") and wait is None:
                    latency.skipped = "--short-fetch-ms 0"
                elif not stages["worker_single"].ok:
                    latency.skipped = "needs the worker's rate on single CDRs"
                else:
                    if wait is not None:
                        latency.extra["fetch_wait_ms"] = wait
                    attempt(
                        name,
                        partial(
                            run_alert_latency,
                            latency,
                            kafka,
                            redis,
                            f"bench-{run}-{name}",
                            args.partitions,
                            allowlist,
                            workdir,
                            stages["worker_single"].rate / 2,
                            args.diallers,
                            wait,
                        ),
                    )

    report["loadavg_after"] = round(os.getloadavg()[0], 2)
    report["stages"] = {name: stage.as_dict() for name, stage in stages.items()}
    report["ratios"] = ratios(stages)
    print(table(stages, report["redis_get_idle"]))
    print(
        f"1-minute load average {report['loadavg_before']} before, "
        f"{report['loadavg_after']} after ({os.cpu_count()} CPUs)"
    )
    if args.json:
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    return 0 if all(stage.ok or stage.skipped for stage in stages.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
