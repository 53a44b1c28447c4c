"""``dialwatch scan``: replay CDR files in event-time order through the worker's engines.

Stage 1 (callers) and stage 2 (callees, blocks, trunks) run one after the other on each batch,
each on its own single partition, exactly as the worker's two agents would on one partition.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

import orjson

from streams.cdr import CDR, Reject
from streams.complaints import Complaint, decode_complaints, record
from streams.engine import Engine
from streams.errors import InputError
from streams.fastscan import Spill, batches, fresh, gate_pass, replay_fast, usable
from streams.files import RejectLog, read_located
from streams.formats import Format
from streams.items import Item, Outcome
from streams.observe import derived_obs
from streams.reorder import Progress
from streams.timeorder import OnReject, in_time_order

SCAN_PARTITION = 0


async def load_complaints(engine: Engine, path: str, totals: Counter[str]) -> set[str]:
    """Store the reports of a JSON Lines file before the CDRs are replayed: each applies from
    its own reported_at, so the order of the two inputs does not matter."""
    complaints: list[Complaint] = []
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            for rec in decode_complaints(line, engine.numbering):
                if isinstance(rec, Reject):
                    totals[f"complaints_rejected:{rec.reason}"] += 1
                else:
                    complaints.append(rec)
    horizon_ms = engine.policy.complaints.horizon_s * 1000
    await record(engine.store, SCAN_PARTITION, complaints, horizon_ms)
    totals["complaints"] += len(complaints)
    return {c.number for c in complaints}


async def scan(
    engine: Engine,
    paths: Iterable[str],
    out: TextIO,
    err: TextIO | None = None,
    derived: Engine | None = None,
    complaints: str | None = None,
    fmt: Format | None = None,
    rejects: RejectLog | None = None,
) -> Counter[str]:
    """Write every alert as one JSON line to ``out``; return the summary counts.

    Progress (on a terminal) and the summary go to ``err``, standard error by default."""
    err = sys.stderr if err is None else err
    started = time.perf_counter()
    totals: Counter[str] = Counter()
    reported: set[str] = set()
    if complaints is not None:
        reported = await load_complaints(engine, complaints, totals)
    paths = list(paths)
    counted = Counter[str]()

    def reject(n: int, line: int, rec: Reject) -> None:
        counted[rec.reason] += 1
        if rejects is not None:
            rejects.write(paths[n], line, rec)

    def ordered(on_reject: OnReject = reject) -> Iterator[CDR]:
        columnar = engine.settings.csv_reader == "columnar"
        files = (read_located(p, engine.numbering, engine.tz, fmt, columnar) for p in paths)
        return in_time_order(files, engine.lateness_ms, on_reject)

    def emit(outcome: Outcome, stage: int) -> None:
        _count(outcome, totals, out, engine, stage)

    progress = err.isatty()
    ticks: _Progress | None = None
    if engine.settings.scan_path == "fast" and await fresh(engine, derived, SCAN_PARTITION):
        # Two passes: the gate (streams.fastgate), then the replay of the kept records.
        spill = Spill()
        try:
            gates = gate_pass(engine, derived, ordered(), SCAN_PARTITION, reported, spill.write)
            n_records = gates.records
            _read(totals, counted, n_records, paths)
            ticks = _Progress(err, n_records, engine.settings.chunk_records) if progress else None
            if usable(engine, gates):
                await replay_fast(
                    engine, derived, spill.read(), SCAN_PARTITION, gates, emit, totals, ticks
                )
            else:
                await replay_reference(engine, derived, spill.read(), emit, ticks)
        finally:
            spill.close()
    else:
        tally = _Tally(ordered())
        ticks = _Progress(err, None, engine.settings.chunk_records) if progress else None
        await replay_reference(engine, derived, tally, emit, ticks)
        n_records = tally.count
        _read(totals, counted, n_records, paths)
    if progress:  # on a pipe there is no progress line, so no line to end
        err.write(f"\r{n_records:,} of {n_records:,} records\n")
    out.flush()
    seconds = time.perf_counter() - started
    totals["seconds_x1000"] = int(seconds * 1000)
    _summary(totals, seconds, err)
    return totals


def _read(totals: Counter[str], rejected: Counter[str], records: int, paths: list[str]) -> None:
    for reason, n in rejected.items():
        totals[f"rejected:{reason}"] += n
    totals["read"] = records + rejected.total()
    if not totals["read"]:
        names = ", ".join("standard input" if p == "-" else p for p in paths)
        raise InputError(f"no CDRs in {names}: the input is empty")


class _Tally:
    """The records of a single pass, counted as they go by."""

    def __init__(self, records: Iterable[CDR]) -> None:
        self.records, self.count = records, 0

    def __iter__(self) -> Iterator[CDR]:
        for rec in self.records:
            self.count += 1
            yield rec


class _Progress:
    """The progress line on a terminal: every 50 batches."""

    def __init__(self, err: TextIO, total: int | None, batch: int) -> None:
        self.err, self.total, self.every, self.next = err, total, batch * 50, 0

    def __call__(self, done: int) -> None:
        if done > self.next or done == self.total:
            of = "" if self.total is None else f" of {self.total:,}"
            self.err.write(f"\r{done:,}{of} records")
            self.next += self.every


async def replay_reference(
    engine: Engine,
    derived: Engine | None,
    records: Iterable[CDR],
    emit: Callable[[Outcome, int], None],
    progress: Callable[[int], None] | None = None,
) -> None:
    """The reference replay (the oracle of streams.fastscan): every record of every batch
    through both engines, as the worker's two agents would on one partition."""
    trunks = engine.settings.international_trunks
    first = (await engine.meta(SCAN_PARTITION)).offset + 1
    second = (await derived.meta(SCAN_PARTITION)).offset + 1 if derived else 0
    done = 0
    # Records per store round trip, as in the worker.
    for chunk, last in batches(records, engine.settings.chunk_records):
        items: list[Item] = [(first + done + j, r) for j, r in enumerate(chunk)]
        outcome = await engine.process(SCAN_PARTITION, items)
        emit(outcome, 1)
        if derived is not None:
            observed = derived_obs(outcome.admitted, trunks, SCAN_PARTITION, engine.numbering)
            # Each chunk ends with its progress, as a worker's derived message does; the last
            # tells stage 2 the input is read, releasing what it holds (streams.reorder).
            items = [(second + j, o) for j, o in enumerate(observed)]
            items.append((second + len(observed), Progress(SCAN_PARTITION, outcome.front_ms, last)))
            second += len(items)
            emit(await derived.process(SCAN_PARTITION, items), 2)
        done += len(chunk)
        if progress is not None:
            progress(done)


def _count(
    outcome: Outcome, totals: Counter[str], out: TextIO, engine: Engine, stage: int = 1
) -> None:
    if stage == 1:
        totals["accepted"] += outcome.accepted
        totals["duplicates"] += outcome.duplicates
        totals["to_trunk"] += outcome.to_trunk
        for _, rej in outcome.rejects:
            totals[f"rejected:{rej.reason}"] += 1
    for alert in outcome.alerts:
        out.write(orjson.dumps(alert.to_dict(engine.tz)).decode() + "\n")
        totals[f"alerts:{alert.action}"] += 1


def _summary(totals: Counter[str], seconds: float, err: TextIO) -> None:
    rate = totals["read"] / seconds if seconds > 0 else 0.0
    err.write(
        f"scanned {totals['read']:,} records in {seconds:.2f} s ({rate:,.0f}/s): "
        f"{totals['accepted']:,} accepted, {totals['duplicates']:,} duplicates, "
        f"{totals['to_trunk']:,} unasserted identities counted for their trunk\n"
    )
    for key in sorted(totals):
        if key.startswith(("rejected:", "alerts:", "complaints")):
            err.write(f"  {key:28} {totals[key]:,}\n")
