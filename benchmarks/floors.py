"""The floors of ``benchmarks.throughput``: consumers that read the CDR topics and do (almost)
nothing, each run as its own process so that its CPU time and peak RSS are its own.

    python -m benchmarks.floors aiokafka BOOTSTRAP TOPIC PARTITIONS EXPECT
    BENCH_KAFKA=... BENCH_TOPIC=... BENCH_APP_ID=... BENCH_EXPECT=... BENCH_OUT=PATH \
        python -m benchmarks.floors faust

``aiokafka``: a plain AIOKafkaConsumer, assigned every partition from the beginning, that calls
``getmany`` (max_records 100,000) and decodes every message with orjson (a JSON array counts
its elements). Prints one JSON object when EXPECT CDRs are decoded.

``faust``: a Faust agent configured like the dialwatch worker (raw serialisers, in-memory
store, no leader topic, earliest offsets) that iterates the topic with
``take_events(2000, 0.2)`` and only counts the messages. Writes one JSON object to BENCH_OUT
when BENCH_EXPECT messages were seen; the parent then stops it.

Both report the record count, the wall-clock time (time.time()) and the process's CPU seconds
(getrusage: user + system, all threads) at the start and at the end of the measured span, and
the peak RSS (VmHWM) in KiB. The aiokafka span starts just before the first ``getmany``; the
Faust span when the first rebalance completes (``app.on_rebalance_complete``), just before
Faust seeks the partitions and resumes the flow.

Imports are local to each command so that neither floor carries the other's modules.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kb(pid: int | str = "self") -> int:
    """VmHWM of a running process, in KiB (0 when the kernel does not say)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def aiokafka_floor(argv: list[str]) -> int:
    import asyncio

    import orjson

    bootstrap, topic, partitions, expect = argv[0], argv[1], int(argv[2]), int(argv[3])
    doc = asyncio.run(_aiokafka_floor(bootstrap, topic, partitions, expect))
    doc["peak_rss_kb"] = peak_rss_kb()
    sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    return 0


async def _aiokafka_floor(
    bootstrap: str, topic: str, partitions: int, expect: int
) -> dict[str, Any]:
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        n = 0
        t_first, cpu_first = time.time(), cpu_self()
        idle_since = time.monotonic()
        while n < expect:
            batches = await consumer.getmany(timeout_ms=1000, max_records=100_000)
            if not batches:
                if time.monotonic() - idle_since > 60:
                    raise RuntimeError(f"no records for 60 s after {n} of {expect}")
                continue
            idle_since = time.monotonic()
            for messages in batches.values():
                for message in messages:
                    doc = orjson.loads(message.value)
                    n += len(doc) if isinstance(doc, list) else 1
        return {
            "records": n,
            "t_first": t_first,
            "t_last": time.time(),
            "cpu_first": cpu_first,
            "cpu_last": cpu_self(),
        }
    finally:
        await consumer.stop()


def faust_floor() -> int:
    import faust
    import orjson

    env = os.environ
    expect = int(env["BENCH_EXPECT"])
    out = Path(env["BENCH_OUT"])
    batch_max = int(env.get("BENCH_BATCH_MAX", "2000"))
    within_s = float(env.get("BENCH_BATCH_WITHIN_S", "0.2"))
    app = faust.App(
        env["BENCH_APP_ID"],
        broker=[f"kafka://{server}" for server in env["BENCH_KAFKA"].split(",")],
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=False,
        topic_partitions=int(env.get("BENCH_PARTITIONS", "4")),
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=6.0,
        stream_wait_empty=False,
    )
    source = app.topic(env["BENCH_TOPIC"], key_type=bytes, value_type=bytes)
    state: dict[str, Any] = {"n": 0, "first": None, "done": False}

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def started(sender: Any, **kwargs: Any) -> None:
        # Sent just before Faust seeks the stream partitions and resumes the flow: nothing has
        # been consumed yet (the worker's span starts at the same point, from its log).
        if state["first"] is None:
            state["first"] = (time.time(), cpu_self())

    @app.agent(source, name="floor")
    async def floor(stream: Any) -> None:
        async for events in stream.take_events(batch_max, within_s):
            if state["first"] is None:
                state["first"] = (time.time(), cpu_self())
            state["n"] += len(events)
            if state["n"] >= expect and not state["done"]:
                state["done"] = True
                t_first, cpu_first = state["first"]
                doc = {
                    "records": state["n"],
                    "t_first": t_first,
                    "t_last": time.time(),
                    "cpu_first": cpu_first,
                    "cpu_last": cpu_self(),
                    "peak_rss_kb": peak_rss_kb(),
                }
                tmp = out.with_suffix(".tmp")
                tmp.write_bytes(orjson.dumps(doc))
                tmp.rename(out)

    worker = faust.Worker(app, loglevel="warning", redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["aiokafka"] and len(argv) == 5:
        return aiokafka_floor(argv[1:])
    if argv == ["faust"]:
        return faust_floor()
    sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
