"""``dialwatch demo``: the embedded default, end to end on one machine.

Starts the bundled broker (or uses ``DIALWATCH_KAFKA``), picks a window store (``DIALWATCH_REDIS``,
else a bundled redis-server when one is installed, else the worker's in-process store), runs the
worker as a subprocess, streams simulated traffic with two bulk diallers into it and shows the
alerts live. The traffic is a small version of the labelled detection scenario (every harassment
pattern and every legitimate busy caller, docs/scenario.md). It ends with a summary scored by
``streams.tools.evaluate`` and exits 0 only when every target holds and nobody legitimate was
intercepted.

Callee numbers are personal data and are never shown. The only numbers shown are alert
subjects (callees only by pseudonym) and the simulator's own attackers.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final

import orjson
from kafka import KafkaConsumer  # type: ignore[import-untyped, unused-ignore]
from prometheus_client.parser import text_string_to_metric_families
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from config.settings import Settings
from streams.tools import services
from streams.tools import simulate as sim
from streams.tools.evaluate import FAIL, MESSAGE_RECORDS, evaluate
from streams.tools.scenario import Scenario, ScenarioSpec, generate_scenario, write_allowlist
from streams.topics import create_topics

STREAM_S: Final = 25.0  # wall time over which the simulated period is streamed
CHUNK_S: Final = 2.5  # the producer reports progress after each chunk of this much wall time
BATCH_SIZE: Final = MESSAGE_RECORDS  # evaluate --order delivery replays these messages
QUIET_S: Final = 8.0  # stop once the producer is done and no alert came for this long
CATCH_UP_GRACE_S: Final = 60.0  # ... and the worker caught up, or this long after the producer
HARD_CAP_S: Final = 180.0
WORKER_START_S: Final = 60.0
WORKER_STOP_S: Final = 10.0
LIVE_ROWS: Final = 15
INTERRUPTED: Final = 130
USAGE: Final = 2
MIN_HOURS: Final = 4.0  # the scenario's office hours and taxi peaks need a 4-hour day
MIN_SUBSCRIBERS: Final = 100
WIDE: Final = 120  # from this many columns the live table also shows severity and reasons
DEMO_SCALE: Final = 0.2  # of every non-normal class of the scenario, at least one unit each


@dataclass(slots=True)
class AlertRow:
    alert_id: str
    episode_id: str
    event_time: str
    number: str
    detector: str
    state: str
    severity: str
    action: str
    reasons: str

    @classmethod
    def from_message(cls, value: bytes) -> AlertRow:
        a: dict[str, Any] = orjson.loads(value)
        return cls(
            alert_id=str(a.get("alert_id", "")),
            episode_id=str(a.get("episode_id", "")),
            event_time=str(a.get("event_time", ""))[:19].replace("T", " "),
            number=str(a.get("number", "")),
            detector=str(a.get("detector", "")),
            state=str(a.get("state", "")),
            severity=str(a.get("severity", "")),
            action=str(a.get("action", "")),
            reasons="; ".join(str(r) for r in a.get("reasons", ())),
        )

    def line(self) -> str:
        return (
            f"{self.event_time}  {self.number:<14} {self.detector} {self.state} "
            f"{self.severity} {self.action}  {self.reasons}"
        )


@dataclass(slots=True)
class Producer:
    """Streams the records from a background thread and counts what the broker acknowledged."""

    records: Sequence[dict[str, object]]
    bootstrap: str
    topic: str
    partitions: int
    rate_per_s: float
    sent: int = 0
    done: bool = False
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="demo-producer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        # produce() flushes before it returns, so calling it per chunk gives an exact count of
        # delivered CDRs after each chunk; batch_by_partition keeps each caller's order anyway.
        chunk = max(BATCH_SIZE, round(self.rate_per_s * CHUNK_S))
        try:
            for i in range(0, len(self.records), chunk):
                if self.stop.is_set():
                    return
                self.sent += sim.produce(
                    self.records[i : i + chunk],
                    self.bootstrap,
                    self.topic,
                    self.partitions,
                    batch_size=BATCH_SIZE,
                    rate_per_s=self.rate_per_s,
                )
        except BaseException as exc:
            self.error = exc
        finally:
            self.done = True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after the current chunk. A producer still blocked in its flush (the broker went
        first, e.g. on Ctrl-C) is left to the daemon thread, and kafka-python's exit hook, which
        would then time out on that flush and print a traceback, is kept quiet."""
        self.stop.set()
        if self.thread is None:
            return
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            sys.unraisablehook = _quiet_kafka_exit_hook


def _quiet_kafka_exit_hook(unraisable: sys.UnraisableHookArgs) -> None:
    if type(unraisable.exc_value).__module__.startswith("kafka."):
        return
    sys.__unraisablehook__(unraisable)


@dataclass(slots=True)
class Store:
    kind: str  # "redis" | "memory"
    url: str | None
    service: services.Service | None
    note: str


def _pick_store(settings: Settings) -> Store:
    if settings.redis:
        return Store("redis", settings.redis, None, "Redis from DIALWATCH_REDIS")
    if services.redis_binary() is not None:
        try:
            svc = services.start_redis()
        except services.ServiceError as exc:
            return Store("memory", None, None, f"in-process memory (redis-server failed: {exc})")
        return Store("redis", svc.address, svc, f"Redis (bundled redis-server on port {svc.port})")
    return Store("memory", None, None, "in-process memory (no redis-server found)")


def _external_kafka(settings: Settings) -> bool:
    return bool(os.environ.get("DIALWATCH_KAFKA")) or settings.kafka != Settings().kafka


def _worker_env(
    settings: Settings,
    bootstrap: str,
    topics: Mapping[str, str],
    store: Store,
    web_port: int,
    allowlist: Path,
) -> dict[str, str]:
    suffix = secrets.token_hex(3)
    env = {
        **os.environ,
        "DIALWATCH_KAFKA": bootstrap,
        "DIALWATCH_CDR_TOPIC": topics["cdr"],
        "DIALWATCH_ALERT_TOPIC": topics["alert"],
        "DIALWATCH_DEAD_LETTER_TOPIC": topics["dead"],
        "DIALWATCH_DERIVED_TOPIC": topics["derived"],
        "DIALWATCH_REPARTITION_TOPIC": topics["repartition"],
        "DIALWATCH_COMPLAINT_TOPIC": topics["complaints"],
        "DIALWATCH_ALLOWLIST_FILE": str(allowlist),
        "DIALWATCH_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "DIALWATCH_WEB_PORT": str(web_port),
        # A group and key prefix of its own, so a shared broker or Redis keeps demos apart.
        "DIALWATCH_APP_ID": f"dwdemo-{suffix}",
        "DIALWATCH_KEY_PREFIX": f"dwdemo{suffix}",
        "DIALWATCH_SESSION_TIMEOUT_S": "6",
        "DIALWATCH_HEARTBEAT_INTERVAL_S": "1",
        "DIALWATCH_REBALANCE_TIMEOUT_S": "6",
        # Info, not warning: Faust's start-up spinner (terminal escape codes, even into a file)
        # is only drawn at warning and above, and the log is worth reading at info.
        "DIALWATCH_LOG_LEVEL": "info",
        # The bundled Tansu holds every fetch for the whole wait: keep the demo's alerts quick.
        "DIALWATCH_FETCH_MAX_WAIT_MS": os.environ.get("DIALWATCH_FETCH_MAX_WAIT_MS", "10"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DIALWATCH_REDIS", None)
    if store.url:
        env["DIALWATCH_REDIS"] = store.url
    return env


def _stop_worker(proc: subprocess.Popen[bytes], signalled_at: float) -> None:
    """Wait for a worker sent SIGTERM at ``signalled_at``; SIGKILL it after WORKER_STOP_S."""
    try:
        proc.wait(timeout=max(0.0, signalled_at + WORKER_STOP_S - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _fetch_metrics(web_port: int) -> dict[str, float] | None:
    """dialwatch_cdrs_total by result, or None if the worker does not answer."""
    url = f"http://127.0.0.1:{web_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            body = response.read().decode()
    except OSError:
        return None
    by_result: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "dialwatch_cdrs_total":
                by_result[sample.labels.get("result", "?")] = sample.value
    return by_result


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """Cleanup is bounded (every wait has a timeout), so a second Ctrl-C must not cut it short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (e.g. from ``timeout``) takes the same cleanup path as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(slots=True)
class Watch:
    """What the live view shows and the summary scores."""

    store_kind: str
    total: int
    started: float = field(default_factory=time.monotonic)
    alerts: dict[str, AlertRow] = field(default_factory=dict)  # by alert_id: replays dedupe
    raw: list[dict[str, Any]] = field(default_factory=list)  # the alerts as published, once each
    processed: int | None = None
    cleared: set[str] = field(default_factory=set)  # episode ids that a cleared alert closed

    def add(self, row: AlertRow, alert: dict[str, Any]) -> bool:
        """Record an alert once (by id); False for a repeat."""
        if row.alert_id in self.alerts:
            return False
        self.alerts[row.alert_id] = row
        self.raw.append(alert)
        if row.state == "cleared":
            self.cleared.add(row.episode_id)
        return True

    def counts(self) -> tuple[int, int]:
        """(raised or escalated, cleared) alerts: the header and the summary count the same."""
        cleared = sum(1 for r in self.alerts.values() if r.state == "cleared")
        return len(self.alerts) - cleared, cleared

    def header(self, sent: int) -> Text:
        # The producer counts a chunk once it is flushed; what the worker processed was
        # produced too, so the larger of the two is still a lower bound.
        sent = max(sent, self.processed or 0)
        processed = "-" if self.processed is None else f"{self.processed:,}"
        raised, cleared = self.counts()
        return Text(
            f"CDRs {sent:,}/{self.total:,} sent, {processed} processed  "
            f"alerts {raised} raised, {cleared} cleared  "
            f"{time.monotonic() - self.started:.0f} s  {self.store_kind}",
            style="bold",
        )

    def view(self, sent: int, width: int, height: int = 40) -> Group:
        """The newest raised alerts (a cleared episode's row stays, marked), fitted to
        ``width`` columns and ``height`` lines: columns never wrap, only the reasons do,
        between words."""
        wide = width >= WIDE
        rows = min(LIVE_ROWS, max(3, (height - 6) // 2 if wide else height - 6))
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=wide, show_edge=False)
        table.add_column("time" if not wide else "event time", no_wrap=True)
        table.add_column("number", no_wrap=True)
        table.add_column("detector", no_wrap=True)
        table.add_column("action", no_wrap=True)
        table.add_column("state", no_wrap=True)
        if wide:
            table.add_column("severity", no_wrap=True)
            table.add_column("reasons", overflow="ellipsis", ratio=1)
        styles = {"intercept": "bold red", "monitor": "yellow", "protect": "bold cyan"}
        shown = [r for r in self.alerts.values() if r.state != "cleared"][-rows:]
        for row in shown:
            closed = row.episode_id in self.cleared
            cells: list[str | Text] = [
                row.event_time if wide else row.event_time[-8:],
                row.number,
                row.detector,
                Text(row.action, style=styles.get(row.action, "")),
                Text("cleared", style="dim") if closed else row.state,
            ]
            if wide:
                cells += [row.severity, row.reasons]
            table.add_row(*cells, style="dim" if closed else "")
        return Group(self.header(sent), table)


def _watch(
    console: Console,
    consumer: Any,
    producer: Producer,
    worker: subprocess.Popen[bytes],
    web_port: int,
    watch: Watch,
    deadline: float,
) -> str:
    """Show alerts as they arrive; return why watching stopped."""
    live: Live | None = None
    if console.is_interactive:
        live = Live(
            watch.view(0, console.width, console.height), console=console, refresh_per_second=4
        )
    last_alert = time.monotonic()
    produced_at: float | None = None
    next_metrics = 0.0
    with live if live is not None else nullcontext():
        while True:
            now = time.monotonic()
            if now >= deadline:
                return f"hard cap of {HARD_CAP_S:.0f} s reached"
            if worker.poll() is not None:
                return f"worker exited with code {worker.returncode}"
            for messages in consumer.poll(timeout_ms=250).values():
                for message in messages:
                    row = AlertRow.from_message(message.value)
                    if not watch.add(row, orjson.loads(message.value)):
                        continue
                    last_alert = time.monotonic()
                    if live is None:
                        console.print(row.line(), markup=False, highlight=False)
            if now >= next_metrics:
                metrics = _fetch_metrics(web_port)
                if metrics is not None:
                    watch.processed = round(sum(metrics.values()))
                next_metrics = now + 1.0
            if live is not None:
                live.update(watch.view(producer.sent, console.width, console.height))
            if producer.done:
                if producer.error is not None:
                    return f"producer failed: {producer.error!r}"
                produced_at = produced_at or now
                caught_up = watch.processed is not None and watch.processed >= producer.sent
                quiet = now - last_alert >= QUIET_S and now - produced_at >= QUIET_S
                if quiet and (caught_up or now - produced_at >= CATCH_UP_GRACE_S):
                    return "done" if caught_up else "worker did not catch up"


def _summary(
    console: Console,
    watch: Watch,
    sent: int,
    scenario: Scenario,
    metrics: Mapping[str, float] | None,
    settings: Settings,
) -> bool:
    report = evaluate(
        scenario.records,
        scenario.labels,
        watch.raw,
        settings.pseudonym_key.encode(),
        allowlist=scenario.allowlist,
    )
    console.rule("summary")
    console.print(f"CDRs produced     {sent:,}")
    if metrics is None:
        console.print("worker CDRs       (metrics unavailable)")
    else:
        counts = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(metrics.items())) or "none"
        console.print(f"worker CDRs       {counts}  (dialwatch_cdrs_total by result)")
    by_action = Counter(str(a.get("action")) for a in watch.raw if a.get("state") != "cleared")
    actions = ", ".join(f"{k} {v}" for k, v in sorted(by_action.items())) or "none"
    raised, cleared = watch.counts()
    console.print(f"alerts            {raised} raised ({actions}), {cleared} cleared")
    for pattern in report.patterns:
        ok = pattern.detected == pattern.labelled
        mark = "[green]" if ok else "[bold red]"
        median = (
            "" if pattern.median_ttd_min is None else f", median {pattern.median_ttd_min:.1f} min"
        )
        console.print(
            f"{pattern.role:<20} {mark}{pattern.detected}/{pattern.labelled} {pattern.expect}[/]"
            f"{median}",
            highlight=False,
        )
    if report.false_intercepts:
        listed = ", ".join(f"{f.number} ({f.role})" for f in report.false_intercepts)
        console.print(f"[bold red]false intercepts  {len(report.false_intercepts)}: {listed}[/]")
    else:
        console.print("false intercepts  [green]none[/]")
    passed = report.passed
    for target in report.targets:
        if target.status == FAIL:
            console.print(  # one line, however narrow the terminal
                f"[bold red]FAIL[/]  {escape(target.target)}: {escape(target.detail)}",
                highlight=False,
                soft_wrap=True,
            )
    console.print("[bold green]PASS[/]" if passed else "[bold red]FAIL[/]")
    return passed


def demo_spec(settings: Settings, *, subscribers: int, hours: float, seed: int) -> ScenarioSpec:
    """The demo's scenario; ValueError names the option to fix."""
    from streams.tools.simulate import default_start

    if not (math.isfinite(hours) and hours >= MIN_HOURS):
        raise ValueError(f"--hours must be at least {MIN_HOURS:g} (got {hours:g})")
    if subscribers < MIN_SUBSCRIBERS:
        raise ValueError(f"--subscribers must be at least {MIN_SUBSCRIBERS} (got {subscribers})")
    try:
        return ScenarioSpec(
            start=default_start(settings),
            seed=seed,
            hours=hours,
            subscribers=subscribers,
            scale=DEMO_SCALE,
        )
    except ValueError as exc:
        raise ValueError(f"--subscribers {subscribers}, --hours {hours:g}: {exc}") from None


def run_demo(
    settings: Settings, *, subscribers: int, hours: float, seed: int, keep: bool = False
) -> int:
    # Arguments first: nothing is started for a run that cannot go ahead.
    try:
        spec = demo_spec(settings, subscribers=subscribers, hours=hours, seed=seed)
    except ValueError as exc:
        print(f"dialwatch demo: {exc}", file=sys.stderr)
        return USAGE
    console = Console()
    # Logs and pipes get one line per message, not lines wrapped at 80 columns.
    console.soft_wrap = not console.is_interactive
    deadline = time.monotonic() + HARD_CAP_S
    workdir = Path(tempfile.mkdtemp(prefix="dialwatch-demo-"))
    started: list[services.Service] = []
    worker: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    producer: Producer | None = None
    consumer: Any = None
    try:
        with _sigterm_as_interrupt():
            if _external_kafka(settings):
                bootstrap = settings.kafka
                run_id = secrets.token_hex(3)
                topics = {
                    "cdr": f"{settings.cdr_topic}.{run_id}",
                    "alert": f"{settings.alert_topic}.{run_id}",
                    "dead": f"{settings.dead_letter_topic}.{run_id}",
                    "derived": f"{settings.derived_topic}.{run_id}",
                    "repartition": f"{settings.repartition_topic}.{run_id}",
                    "complaints": f"{settings.complaint_topic}.{run_id}",
                }
                console.print(f"broker: external {bootstrap} (topics suffixed .{run_id})")
            else:
                broker = services.start_broker()
                started.append(broker)
                bootstrap = broker.address
                topics = {
                    "cdr": settings.cdr_topic,
                    "alert": settings.alert_topic,
                    "dead": settings.dead_letter_topic,
                    "derived": settings.derived_topic,
                    "repartition": settings.repartition_topic,
                    "complaints": settings.complaint_topic,
                }
                console.print(f"broker: bundled Tansu on {bootstrap}")
            store = _pick_store(settings)
            if store.service is not None:
                started.append(store.service)
            console.print(f"store: {escape(store.note)}")
            create_topics(
                bootstrap,
                {topics["cdr"]: settings.topic_partitions, topics["alert"]: 1, topics["dead"]: 1},
            )

            scenario = generate_scenario(spec)
            records = scenario.records
            allowlist = workdir / "allowlist.txt"
            write_allowlist(allowlist, scenario.allowlist)

            web_port = services.free_port()
            log_path = workdir / "worker.log"
            if keep:
                console.print(f"worker log: {log_path}")
            log = log_path.open("wb")
            worker = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=_worker_env(settings, bootstrap, topics, store, web_port, allowlist),
                start_new_session=True,  # Ctrl-C reaches the demo, which stops the worker
            )

            rate = max(1.0, len(records) / STREAM_S)
            console.print(
                f"traffic: {len(records):,} CDRs, {subscribers:,} subscribers, {hours:g} h "
                f"from {spec.start:%Y-%m-%d %H:%M}, every harassment pattern and every "
                f"legitimate busy caller (scale {DEMO_SCALE}); streaming at {rate:,.0f} CDR/s"
            )
            try:
                services.wait_for_port(web_port, WORKER_START_S, worker)
            except services.ServiceError as exc:
                console.print(f"[bold red]worker did not start: {escape(str(exc))}[/]")
                console.print(_tail(log_path), markup=False, highlight=False)
                return 1

            consumer = KafkaConsumer(
                topics["alert"],
                bootstrap_servers=bootstrap,
                group_id=None,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                consumer_timeout_ms=250,
                client_id="dialwatch-demo",
            )
            producer = Producer(records, bootstrap, topics["cdr"], settings.topic_partitions, rate)
            watch = Watch(store.kind, len(records))
            producer.start()
            why = _watch(console, consumer, producer, worker, web_port, watch, deadline)
            console.print(f"stopped watching: {escape(why)}", highlight=False)
            if why.startswith(("worker exited", "producer failed")):
                console.print(_tail(log_path), markup=False, highlight=False)
            metrics = _fetch_metrics(web_port)
            passed = _summary(console, watch, producer.sent, scenario, metrics, settings)
            return 0 if passed else 1
    except services.ServiceError as exc:
        console.print(f"[bold red]{escape(str(exc))}[/]")
        return 1
    except KeyboardInterrupt:
        console.print("\ninterrupted; cleaning up")
        return INTERRUPTED
    finally:
        with _signals_ignored():
            # SIGTERM first, so the worker shuts down while the producer finishes its chunk.
            signalled_at = time.monotonic()
            if worker is not None and worker.poll() is None:
                worker.terminate()
            if producer is not None:
                producer.close()
            if consumer is not None:
                with suppress(Exception):
                    consumer.close()
            if worker is not None:
                _stop_worker(worker, signalled_at)
            if log is not None:
                log.close()
            for service in reversed(started):
                service.stop()
            if keep:
                console.print(f"kept the demo's files (worker log, allowlist) in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
