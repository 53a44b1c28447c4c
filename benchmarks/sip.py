"""The interception lookup's cost at the call path (docs/sip.md): Kamailio with
deploy/kamailio/kamailio.cfg, with and without the lookup, side by side in one run.

    python -m benchmarks.sip [--rate 100] [--seconds 15] [--probes 1000] [--peak-rate 400]
                             [--entries 100000] [--json FILE]

Starts a redis-server holding ``--entries`` interception entries and protection entries, the
SIPp answering side, and two Kamailio proxies: one with the lookup, one started with
``-A NO_LOOKUP`` (the same configuration without it). SIPp places calls at ``--rate`` calls/s
in all (half to each proxy, answered and hung up at once) for ``--seconds`` while a probe sends
``--probes`` INVITEs to each, alternating, one after the other, each timed from sending to
Kamailio's ``100 Trying`` (sent by ``t_relay`` right after the lookup), to a callee that does
not answer (480, ACKed).
Prints each proxy's INVITE-to-100 p50/p99/max and the difference (the added latency). Then
offers ``--peak-rate`` calls/s for 5 s to the proxy with the lookup and prints the rate it
sustained (successful calls per second of the run) and the failed calls.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis

from benchmarks.probes import percentiles
from streams.tools import services, sip

PREFIX = "bench"


def fill(client: redis.Redis, entries: int) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(entries):
        pipe.hset(f"{PREFIX}:{{il}}:icpt:1880{i:07d}", mapping={"state": "active"})
        if i % 10 == 0:
            pipe.hset(f"{PREFIX}:{{il}}:prot:1990{i:07d}", mapping={f"1880{i:07d}": "a"})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def probe(ports: list[int], count: int) -> list[list[float]]:
    """INVITE -> 100 Trying, in seconds, ``count`` times per port, alternating between the
    ports so both proxies see the same moments of a shared machine."""
    times: list[list[float]] = [[] for _ in ports]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        me = s.getsockname()[1]
        for i in range(count):
            for n, port in enumerate(ports):
                times[n].append(_one(s, me, port, i))
    return times


def _one(s: socket.socket, me: int, port: int, i: int) -> float:
    branch, call = f"z9hG4bK-{uuid.uuid4().hex}", f"{uuid.uuid4().hex}@127.0.0.1"
    head = (
        f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch={branch}\r\n"
        f"From: <sip:1350{i % 10**7:07d}@127.0.0.1:{me}>;tag=p{i}\r\n"
    )
    callee = f"1370{i * 7919 % 10**7:07d}"
    invite = (
        f"INVITE sip:{callee}@127.0.0.1:{port} SIP/2.0\r\n{head}"
        f"To: <sip:{callee}@127.0.0.1:{port}>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:p@127.0.0.1:{me}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    started = time.perf_counter()
    s.sendto(invite.encode(), ("127.0.0.1", port))
    took, final = 0.0, ""
    while not final:
        reply = s.recv(65535).decode(errors="replace")
        if reply.startswith("SIP/2.0 100") and call in reply:
            took = time.perf_counter() - started
        elif reply.startswith("SIP/2.0 4") and call in reply:
            final = reply
    to = next(line for line in final.split("\r\n") if line.lower().startswith("to:"))
    ack = (
        f"ACK sip:{callee}@127.0.0.1:{port} SIP/2.0\r\n{head}{to}\r\nCall-ID: {call}\r\n"
        "CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    s.sendto(ack.encode(), ("127.0.0.1", port))
    return took


def load(work: Path, name: str, port: int, rate: float, seconds: float) -> Any:
    count = int(rate * seconds)
    path = work / f"{name}.csv"
    sip.write_calls(path, [(f"1360{i:07d}", f"1391{i * 7919 % 10**7:07d}", 0)
                           for i in range(count)])  # fmt: skip
    return sip.uac(work, name, port, path, count, rate, limit=2000), count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sip")
    parser.add_argument("--rate", type=float, default=100.0, help="background calls/s")
    parser.add_argument("--seconds", type=float, default=15.0, help="of background load")
    parser.add_argument("--probes", type=int, default=1000, help="timed INVITEs per proxy")
    parser.add_argument("--peak-rate", type=float, default=400.0, help="offered calls/s")
    parser.add_argument("--entries", type=int, default=100_000, help="entries in the list")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dialwatch-sip-bench-"))
    store = services.start_redis()
    results: dict[str, Any] = {"rate": args.rate, "entries": args.entries}
    procs: list[sip.Proc] = []
    try:
        fill(redis.Redis(port=store.port), args.entries)
        uas = sip.start_uas(work)
        procs.append(uas)
        proxies = {}
        for name, lookup in (("without lookup", False), ("with lookup", True)):
            sub = work / name.replace(" ", "-")
            sub.mkdir()
            proxies[name] = sip.start_kamailio(sub, store.port, uas.port, PREFIX, lookup=lookup)
            procs.append(proxies[name])
        names = list(proxies)
        ports = [proxies[n].port for n in names]
        probe(ports, 50)  # warm up
        # The same background load on both at once, the probes alternating between them.
        background = [load(proxies[n].log.parent, "load", proxies[n].port, args.rate / 2,
                           args.seconds) for n in names]  # fmt: skip
        timed = probe(ports, args.probes)
        for bg, _ in background:
            bg.wait(timeout=args.seconds * 4 + 60)
        for name, times in zip(names, timed, strict=True):
            results[name] = percentiles(times)
            ok, failed = sip.outcome(proxies[name].log.parent / "load.log")
            results[name] |= {"background_ok": ok, "background_failed": failed}
            print(f"{name:>15}: INVITE -> 100 Trying p50 {results[name]['p50_ms']:.3f} ms,"
                  f" p99 {results[name]['p99_ms']:.3f} ms, max {results[name]['max_ms']:.3f} ms"
                  f" ({len(times)} probes; {ok} background calls at {args.rate / 2:g}/s,"
                  f" {failed} failed)")  # fmt: skip
        added = {
            q: round(results["with lookup"][q] - results["without lookup"][q], 3)
            for q in ("p50_ms", "p99_ms")
        }
        results["added"] = added
        print(f"added by the lookup: p50 {added['p50_ms']:.3f} ms, p99 {added['p99_ms']:.3f} ms"
              " (target p99 < 1 ms)")  # fmt: skip
        proxy = proxies["with lookup"]
        started = time.monotonic()
        peak, offered = load(proxy.log.parent, "peak", proxy.port, args.peak_rate, 5)
        peak.wait(timeout=120)
        elapsed = time.monotonic() - started
        ok, failed = sip.outcome(proxy.log.parent / "peak.log")
        results["peak"] = {"offered_per_s": args.peak_rate, "calls": offered, "ok": ok,
                           "failed": failed, "sustained_per_s": round(ok / elapsed, 1)}  # fmt: skip
        print(
            f"with lookup at {args.peak_rate:g} calls/s offered: {ok} of {offered} calls done"
            f" in {elapsed:.1f} s = {ok / elapsed:.0f} calls/s sustained, {failed} failed"
        )
    finally:
        for proc in reversed(procs):
            proc.stop()
        store.stop()
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
