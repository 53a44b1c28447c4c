"""``dialwatch ingest`` against the real broker: partition-aligned contract arrays, and a
followed Asterisk Master.csv that survives a SIGKILL of the shipper mid-file, a rotation while
it is down, a partial last line and a truncation, with every record arriving (distinct cdr_ids)
and the only repeats being records re-sent from the crash window."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from config.numbering import CHINA
from streams.cdr import CDR, decode_message
from streams.files import read_located, read_records
from streams.formats import get
from streams.ingest import Position
from streams.tools import fleet
from streams.topics import create_topics, partition_for

PARTITIONS = 4
INGEST = (sys.executable, "-m", "streams", "ingest")
TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


def contract_records(n: int, first: int = 0) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(first, first + n):
        out.append(
            {
                "cdr_id": f"r{i}",
                "caller": f"1380013{i % 5000:04d}",
                "callee": f"1390013{(i * 7) % 10000:04d}",
                "start_time": (T0 + timedelta(seconds=i // 3)).isoformat(),
                "duration_s": (i * 13) % 300 if i % 4 else 0,
                "answered": bool(i % 4),
                "release_cause": 16 if i % 4 else 19,
                "ingress_trunk": f"core-{i % 3}",
            }
        )
    return out


def asterisk_text(records: list[dict[str, object]], offset: int) -> str:
    out = io.StringIO()
    get("asterisk").write(out, records, TZ)
    # Unique channel names per chunk: the writer numbers channels from 0 for each call.
    return out.getvalue().replace("-0000", f"-{offset:04x}")


def read_topic(bootstrap: str, topic: str) -> list[tuple[int, bytes]]:
    """(partition, value) of every message, read to the topic's end (``fleet.read_records``):
    what a shipper still sends is waited for by a condition (``wait_until``)."""
    return [(m.partition, m.value or b"") for m in fleet.read_records(bootstrap, topic)]


def published_ids(bootstrap: str, topic: str) -> Counter[str]:
    ids: Counter[str] = Counter()
    for _, value in read_topic(bootstrap, topic):
        for rec in decode_message(value, CHINA):
            assert isinstance(rec, CDR)
            ids[rec.cdr_id] += 1
    return ids


def ids_of(path: Path, start: int = 0) -> list[str]:
    """cdr_ids of the records on the lines after byte ``start`` of an Asterisk file."""
    text = path.read_bytes()[start:].decode()
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    try:
        return [
            r.cdr_id
            for r in read_records(str(tmp), CHINA, fmt=get("asterisk"), tz=TZ)
            if isinstance(r, CDR)
        ]
    finally:
        tmp.unlink()


@pytest.fixture
def topic(kafka_bootstrap: str, unique: str) -> str:
    name = f"ingest-{unique}"
    create_topics(kafka_bootstrap, {name: PARTITIONS})
    return name


def env_for(bootstrap: str, topic: str) -> dict[str, str]:
    return {
        **os.environ,
        "DIALWATCH_KAFKA": bootstrap,
        "DIALWATCH_CDR_TOPIC": topic,
        "DIALWATCH_TIMEZONE": "Asia/Shanghai",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }


def shipper(bootstrap: str, topic: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*INGEST, *args],
        env=env_for(bootstrap, topic),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_until(check: object, timeout_s: float = 60.0, poll_s: float = 0.5) -> None:
    """Until ``check()``; a check that reads the topic takes a second itself."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(poll_s)
    raise AssertionError("timed out")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_files_of_every_format_arrive_as_partition_aligned_contract_arrays(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    records = contract_records(3000)
    files: list[tuple[str, Path]] = []
    for name in ("asterisk", "freeswitch-csv", "freeswitch-json"):
        path = tmp_path / f"cdrs.{name}"
        with path.open("w") as out:
            get(name).write(out, records[:1000] if name != "asterisk" else records, TZ)
        files.append((name, path))
    expected: list[CDR] = []
    for name, path in files:
        run = subprocess.run(
            [*INGEST, str(path), "--format", name],
            env=env_for(kafka_bootstrap, topic),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert "records/s" in run.stderr and "0 rejected" in run.stderr
        expected += [
            r for r in read_records(str(path), CHINA, fmt=get(name), tz=TZ) if isinstance(r, CDR)
        ]
    got: list[CDR] = []
    for partition, value in read_topic(kafka_bootstrap, topic):
        batch = decode_message(value, CHINA)
        assert all(isinstance(r, CDR) for r in batch)
        cdrs = [r for r in batch if isinstance(r, CDR)]
        assert {partition_for(r.caller.encode(), PARTITIONS) for r in cdrs} == {partition}
        got += cdrs
    assert len(got) == len(expected) == 5000
    assert sorted(got, key=lambda r: r.cdr_id) == sorted(expected, key=lambda r: r.cdr_id)


def test_shipper_killed_mid_file_and_rotated_while_down_delivers_every_record(
    kafka_bootstrap: str, topic: str, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    master = tmp_path / "Master.csv"
    state = tmp_path / "Master.pos"
    first = asterisk_text(contract_records(30_000), 1)
    master.write_text(first)
    args = (
        str(master),
        "--format",
        "asterisk",
        "--follow",
        "--state",
        str(state),
        "--batch",
        "250",
    )
    procs.append(shipper(kafka_bootstrap, topic, *args))
    size = master.stat().st_size
    wait_until(lambda: state.exists() and Position.load(state).offset > 0, poll_s=0.1)  # type: ignore[union-attr]
    time.sleep(0.3)  # into the file, most likely between a send and its saved position
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    durable = Position.load(state)
    assert durable is not None and 0 < durable.offset < size, "not killed mid-file"
    window = set(ids_of(master, durable.offset))  # sent or not: what may be re-sent
    sent_before = published_ids(kafka_bootstrap, topic)
    confirmed = set(ids_of(master)) - window
    assert confirmed and confirmed <= set(sent_before), "a position was saved before its flush"

    # While it is down: the switch writes more, rotates, and writes on in a new file.
    with master.open("a") as out:
        out.write(asterisk_text(contract_records(500, 30_000), 2))
    rotated = master.with_name("Master.csv.1")
    master.rename(rotated)
    second = asterisk_text(contract_records(1000, 30_500), 3)
    master.write_text(second[: len(second) // 2])
    expected = ids_of(rotated) + ids_of(master)

    procs.append(shipper(kafka_bootstrap, topic, *args))
    # A partial last line waits for its end.
    half = second[len(second) // 2 :]
    cut = half.index("\n") // 2
    with master.open("a") as out:
        out.write(half[:cut])
    time.sleep(1.0)
    with master.open("a") as out:
        out.write(half[cut:])
    expected = ids_of(rotated) + ids_of(master)
    assert len(expected) == len(set(expected)) == 31_500
    wait_until(lambda: set(published_ids(kafka_bootstrap, topic)) >= set(expected), 120)
    procs[1].terminate()
    procs[1].wait(timeout=30)  # whatever it sends on its way out is on the topic
    ids = published_ids(kafka_bootstrap, topic)
    assert set(ids) == set(expected)
    repeated = {i for i, n in ids.items() if n > 1}
    assert repeated <= window & set(sent_before)
    # One batch at most is sent and not yet confirmed when the shipper dies.
    assert len(repeated) <= 250
    assert max(ids.values()) <= 2


def test_followed_file_truncated_is_read_again_from_its_start(
    kafka_bootstrap: str, topic: str, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    master = tmp_path / "Master.csv"
    master.write_text(asterisk_text(contract_records(400), 1))
    before = ids_of(master)
    procs.append(shipper(kafka_bootstrap, topic, str(master), "--format", "asterisk", "--follow"))
    wait_until(lambda: set(published_ids(kafka_bootstrap, topic)) >= set(before))
    with master.open("w") as out:  # truncated in place, then written again
        out.write(asterisk_text(contract_records(100, 400), 2))
    after = ids_of(master)
    wait_until(lambda: set(published_ids(kafka_bootstrap, topic)) >= set(before) | set(after))
    ids = published_ids(kafka_bootstrap, topic)
    assert set(ids) == set(before) | set(after)
    assert max(ids.values()) == 1


def test_rejects_file_names_each_bad_line_and_keeps_its_neighbours(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    text = asterisk_text(contract_records(6), 1).splitlines()
    text[1] = text[1].replace('"ANSWERED"', '"MAYBE"').replace('"NO ANSWER"', '"MAYBE"')
    text[3] = text[3].replace("2026-11-30", "30/11/2026")
    path = tmp_path / "Master.csv"
    path.write_text("\n".join(text) + "\n")
    rejects = tmp_path / "rejects.txt"
    run = subprocess.run(
        [*INGEST, str(path), "--format", "asterisk", "--rejects", str(rejects)],
        env=env_for(kafka_bootstrap, topic),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "2 rejected (bad_time 1, bad_type 1)" in run.stderr
    lines = rejects.read_text().splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == [f"{path}:2", f"{path}:4"]
    good = [
        r.cdr_id
        for _, r in read_located(str(path), CHINA, fmt=get("asterisk"), tz=TZ)
        if isinstance(r, CDR)
    ]
    assert len(good) == 4
    assert sorted(published_ids(kafka_bootstrap, topic)) == sorted(good)
    assert orjson.dumps(lines)  # plain text, one line each
