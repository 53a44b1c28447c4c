"""``dialwatch ingest``: the shipper. Reads CDR files of any format (streams.formats), publishes
them to the CDR topic as contract JSON arrays grouped by partition (the worker's fast path), and
with ``--follow`` tails them as a switch writes them.

Delivery guarantee (README "Ingest"): at least once, and exactly once as counted by the worker.
A file's position is written to its state file only after the producer's flush confirmed every
message of the batch before it, so a crash can only make the shipper re-send the records read
since the last confirmed batch. Each published record keeps its stable cdr_id (the format's id,
or one derived from the fields that tell two attempts apart), and the worker drops a repeated
id within its horizon, so a re-sent record never counts twice.

    file:  | confirmed, in the state file | sent, not yet confirmed | not read | partial |
                                           ^ re-sent after a crash    ^ read next  ^ waits for "\n"
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO, cast
from zoneinfo import ZoneInfo

import orjson
from kafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]

from config.numbering import NumberingPlan, plan_from_setting
from config.settings import Settings
from streams.cdr import CDR, Reject, parse_record, to_contract
from streams.files import RejectLog, open_rejects
from streams.formats import Format, from_cli
from streams.topics import partition_for

MAX_RECORDS_PER_MESSAGE = 2000  # ~0.5 MB per array, well under the 4 MiB message limit
POLL_S = 0.2
PROGRESS_S = 2.0
STATE_SUFFIX = ".dialwatch-pos"


@dataclass(slots=True)
class Position:
    """Where a file was read up to: its identity, the byte after the last confirmed line,
    and that line's number."""

    dev: int
    ino: int
    offset: int
    line: int

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"dev": self.dev, "ino": self.ino, "offset": self.offset, "line": self.line}
        )

    @classmethod
    def load(cls, path: Path) -> Position | None:
        try:
            doc = orjson.loads(path.read_bytes())
            return cls(int(doc["dev"]), int(doc["ino"]), int(doc["offset"]), int(doc["line"]))
        except FileNotFoundError:
            return None
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ValueError(f"state file {path} is not a dialwatch position; remove it") from None

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as fh:
            fh.write(self.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


class Source:
    """The complete lines of one CDR file, from a position, in batches. Follows rotation
    (the path names a new file: the old one is read to its end first) and truncation (the
    file shrank below the position: read again from the start), waits on a partial last line,
    and finds a file rotated while the shipper was down by its identity among its siblings."""

    def __init__(self, path: Path, fmt: Format, state: Path | None, follow: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.state = state
        self.follow = follow
        self.header: list[str] | None = None
        self._decided = False
        self.notes: list[str] = []
        self._fh: IO[bytes]
        self._ident: tuple[int, int] = (0, 0)
        self._final = False
        self.offset = 0  # read up to here (pending)
        self.line = 0
        self.confirmed = 0  # the state file says this
        self._open_initial()

    # ------------------------------------------------------------------ opening
    def _open_initial(self) -> None:
        if str(self.path) == "-":
            self._fh = sys.stdin.buffer
            return
        if self.path.suffix == ".gz":
            self._fh = _gunzip(self.path)
            return
        saved = Position.load(self.state) if self.state else None
        if saved is None:
            self._open(self.path, 0, 0)
            return
        current = os.stat(self.path) if self.path.exists() else None
        if current is not None and (current.st_dev, current.st_ino) == (saved.dev, saved.ino):
            if current.st_size < saved.offset:
                self.notes.append(f"{self.path} is shorter than its saved position: read again")
                self._open(self.path, 0, 0)
            else:
                self._open(self.path, saved.offset, saved.line)
            return
        rotated = self._sibling(saved.dev, saved.ino)
        if rotated is None:
            self.notes.append(
                f"{self.path}: the file of the saved position is gone; reading the new one"
            )
            self._open(self.path, 0, 0)
        else:
            self.notes.append(f"{self.path} rotated while stopped: finishing {rotated.name}")
            self._open(rotated, saved.offset, saved.line)

    def _sibling(self, dev: int, ino: int) -> Path | None:
        for candidate in sorted(self.path.parent.glob(self.path.name + "*")):
            try:
                st = candidate.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (dev, ino) and candidate.is_file():
                return candidate
        return None

    def _open(self, path: Path, offset: int, line: int) -> None:
        fh = path.open("rb")
        st = os.fstat(fh.fileno())
        self._fh, self._ident = fh, (st.st_dev, st.st_ino)
        self.header, self._decided, self._final = None, False, False
        if offset > 0 and self.fmt.may_have_header:
            first = fh.readline()
            self._decide(_text(first))
        fh.seek(offset)
        self.offset = self.confirmed = offset
        self.line = line

    def _decide(self, first_line: str) -> bool:
        """Whether ``first_line`` (the file's first non-blank line) is its header."""
        self._decided = True
        first_line = first_line.lstrip("\ufeff")
        if self.fmt.has_header(first_line):
            self.header = [c.strip() for c in next(csv.reader([first_line]), [])]
            return True
        return False

    # ------------------------------------------------------------------ reading
    def read(self, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` complete lines (line number, text) from the current file."""
        out: list[tuple[int, str]] = []
        seekable = self._fh.seekable() and self._fh is not sys.stdin.buffer
        while len(out) < limit:
            start = self._fh.tell() if seekable else self.offset
            raw = self._fh.readline()
            if not raw:
                break
            if not raw.endswith(b"\n") and self.follow and seekable and not self._final:
                self._fh.seek(start)  # a line still being written: wait for its end
                break
            self.offset = start + len(raw)
            self.line += 1
            text = _text(raw)
            if self.line == 1:
                text = text.lstrip("\ufeff")
            if not text.strip():
                continue
            if not self._decided and self._decide(text):
                continue
            out.append((self.line, text))
        return out

    def switch(self) -> bool:
        """At the end of the current file: move on when the path names another file now
        (rotation) or the file shrank (truncation). True when there is something new."""
        if str(self.path) == "-" or self.path.suffix == ".gz":
            return False
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # rotated, the new file not created yet
        if (st.st_dev, st.st_ino) != self._ident:
            if self._fh.read(1):
                # Written before the rotation: read it first; a last line without its
                # newline will not get one now, so it counts as complete.
                self._fh.seek(self.offset)
                self._final = True
                return True
            self._fh.close()
            self._open(self.path, 0, 0)
            return True
        if st.st_size < self.offset:
            self.notes.append(f"{self.path} was truncated: reading from its start")
            self._fh.close()
            self._open(self.path, 0, 0)
            return True
        return False

    def commit(self) -> None:
        """Called once the lines read so far are confirmed by the broker."""
        self.confirmed = self.offset
        if self.state is not None and self._ident != (0, 0):
            Position(self._ident[0], self._ident[1], self.offset, self.line).save(self.state)

    def close(self) -> None:
        if self._fh is not sys.stdin.buffer:
            self._fh.close()


def _gunzip(path: Path) -> IO[bytes]:
    return cast(IO[bytes], gzip.open(path, "rb"))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


class Publisher:
    """Contract JSON arrays, one per partition of the caller (streams.topics.partition_for,
    as the worker expects), sent and flushed per batch."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer

        from streams.security import kafka_python_kwargs

        self.topic = settings.cdr_topic
        self.producer = KafkaProducer(
            bootstrap_servers=settings.kafka,
            acks="all",
            linger_ms=5,
            max_request_size=8 * 1024 * 1024,
            **kafka_python_kwargs(settings),
        )
        found = self.producer.partitions_for(self.topic)
        self.partitions = len(found) if found else settings.topic_partitions

    def send(self, cdrs: list[CDR]) -> None:
        """Send and wait until the broker confirmed every message; raise if one failed."""
        groups: dict[int, list[dict[str, object]]] = {}
        for cdr in cdrs:
            p = partition_for(cdr.caller.encode(), self.partitions)
            groups.setdefault(p, []).append(to_contract(cdr))
        futures = []
        for partition, docs in groups.items():
            for i in range(0, len(docs), MAX_RECORDS_PER_MESSAGE):
                value = orjson.dumps(docs[i : i + MAX_RECORDS_PER_MESSAGE])
                futures.append(self.producer.send(self.topic, value=value, partition=partition))
        self.producer.flush()
        for future in futures:
            future.get(timeout=0)  # raises the send's error, if any

    def close(self) -> None:
        self.producer.close()


@dataclass(slots=True)
class Progress:
    err: TextIO
    started: float
    records: int = 0
    last: float = 0.0

    def show(self, totals: Counter[str], final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < PROGRESS_S:
            return
        self.last = now
        seconds = max(now - self.started, 1e-9)
        rejects = sorted(
            (k.split(":", 1)[1], v) for k, v in totals.items() if k.startswith("rejected:")
        )
        listed = ", ".join(f"{k} {v:,}" for k, v in rejects) or "none"
        line = (
            f"ingest: {totals['published']:,} published, {self.records / seconds:,.0f} records/s,"
            f" {totals['rejected']:,} rejected ({listed})"
        )
        self.err.write(line + ("\n" if final or not self.err.isatty() else "\r"))
        self.err.flush()


def ship(
    source: Source,
    publisher: Publisher,
    plan: NumberingPlan,
    tz: ZoneInfo,
    batch: int,
    totals: Counter[str],
    progress: Progress,
    rejects: RejectLog | None = None,
) -> None:
    """Publish one source until its end (or, following, forever)."""
    name = str(source.path)
    while True:
        lines = source.read(batch)
        for note in source.notes:
            progress.err.write(f"ingest: {note}\n")
        source.notes.clear()
        if lines:
            cdrs: list[CDR] = []
            for number, text in lines:
                for row in source.fmt.decode_line(text, source.header):
                    rec = row if isinstance(row, Reject) else parse_record(row, plan, tz)
                    if isinstance(rec, Reject):
                        totals["rejected"] += 1
                        totals[f"rejected:{rec.reason}"] += 1
                        if rejects is not None:
                            rejects.write(name, number, rec)
                    else:
                        cdrs.append(rec)
            if cdrs:
                publisher.send(cdrs)
            totals["published"] += len(cdrs)
            progress.records += len(cdrs)
            source.commit()
            progress.show(totals)
            continue
        if source.switch():
            continue
        if not source.follow:
            return
        progress.show(totals)
        time.sleep(POLL_S)


def run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """``dialwatch ingest``: exit 0 when every file was published, 2 on a usage mistake."""
    try:
        fmt = from_cli(args.format, args.map)
    except ValueError as exc:
        print(f"dialwatch ingest: {exc}", file=sys.stderr)
        return 2
    paths = [Path(p) for p in args.files]
    if args.follow:
        unfit = [p for p in paths if str(p) == "-" or p.suffix == ".gz"]
        if unfit:
            print(f"dialwatch ingest: --follow tails plain files, not {unfit[0]}", file=sys.stderr)
            return 2
        if len(paths) > 1:
            print(
                "dialwatch ingest: --follow takes one file (run one shipper per file)",
                file=sys.stderr,
            )
            return 2
    if args.state is not None and len(paths) > 1:
        print("dialwatch ingest: --state goes with one file", file=sys.stderr)
        return 2
    if args.batch < 1:
        print("dialwatch ingest: --batch must be positive", file=sys.stderr)
        return 2
    missing = [p for p in paths if str(p) != "-" and not p.exists() and not args.follow]
    if missing:
        print(f"dialwatch ingest: no such file {missing[0]}", file=sys.stderr)
        return 2
    plan = plan_from_setting(settings.numbering_plan)
    tz = ZoneInfo(settings.timezone)
    totals: Counter[str] = Counter()
    progress = Progress(sys.stderr, time.monotonic())
    stack = contextlib.ExitStack()
    rejects_fh = (
        stack.enter_context(open_rejects(args.rejects, append=True)) if args.rejects else None
    )
    rejects = RejectLog(rejects_fh) if rejects_fh else None
    try:
        publisher = Publisher(settings)
    except Exception as exc:  # the broker's client says what is wrong in its message
        stack.close()
        print(f"dialwatch ingest: cannot reach Kafka at {settings.kafka}: {exc}", file=sys.stderr)
        return 1
    if fmt.call_end_order and args.follow:
        print(
            f"ingest: {fmt.name} writes a record when its call ends: a call longer than"
            f" DIALWATCH_ALLOWED_LATENESS_S ({settings.allowed_lateness_s} s) reaches the worker"
            " too late (README Ingest)",
            file=sys.stderr,
        )
    try:
        for path in paths:
            state = args.state
            if state is None and args.follow:
                state = path.with_name(path.name + STATE_SUFFIX)
            while args.follow and not path.exists():
                time.sleep(POLL_S)
            try:
                source = Source(path, fmt, state, args.follow)
            except (ValueError, OSError) as exc:
                print(f"dialwatch ingest: {exc}", file=sys.stderr)
                return 2
            try:
                ship(source, publisher, plan, tz, args.batch, totals, progress, rejects)
            finally:
                source.close()
    except KafkaError as exc:
        print(
            f"dialwatch ingest: publishing to {settings.cdr_topic} failed ({exc}); the position"
            " saved is the last confirmed one: run the same command again",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        publisher.close()
        stack.close()
    progress.show(totals, final=True)
    return 0
