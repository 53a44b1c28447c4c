"""Kamailio with deploy/kamailio/kamailio.cfg and SIPp on both sides, on loopback: what the SIP
integration test (tests/integration/test_sip.py) and benchmarks/sip.py run (docs/sip.md).

Each process runs on free UDP ports and is stopped by its pid. Kamailio's standard error (its
log, with the accounting lines) goes to a file that ``dialwatch ingest --follow --format
kamailio`` can tail.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streams.tools.services import ServiceError, terminate

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"
SCENARIOS = ROOT / "deploy" / "kamailio" / "sipp"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(name: str, path: str) -> str:
    found = shutil.which(name) or (path if Path(path).exists() else None)
    if found is None:
        raise ServiceError(f"{name} is not installed (deploy/bootstrap.sh --test installs it)")
    return found


def defines(values: Mapping[str, str | int]) -> list[str]:
    """``-A NAME=value`` arguments; strings are quoted as the configuration expects."""
    out: list[str] = []
    for name, value in values.items():
        out += ["-A", f"{name}={value}" if isinstance(value, int) else f'{name}="{value}"']
    return out


def check_config(extra: Mapping[str, str | int] | None = None) -> subprocess.CompletedProcess[str]:
    """``kamailio -c``: the configuration parses and every module loads."""
    return subprocess.run(
        [binary("kamailio", "/usr/sbin/kamailio"), "-c", "-f", str(CONFIG),
         *defines(extra or {})],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    def stop(self) -> None:
        terminate(self.proc)


@dataclass
class Kamailio(Proc):
    accounting: Path = field(default_factory=Path)


def start_kamailio(
    workdir: Path, redis_port: int, next_hop_port: int, key_prefix: str,
    *, lookup: bool = True, workers: int = 4, redress: str | None = None,
    timeout_s: float = 15.0,
) -> Kamailio:  # fmt: skip
    """Kamailio in the foreground (``-DD -E``), its log (the accounting file) in ``workdir``.
    ``lookup=False`` starts it without the interception lookup (``-A NO_LOOKUP``): the
    benchmark's baseline."""
    port = free_udp_port()
    values: dict[str, str | int] = {
        "NEXT_HOP": f"sip:127.0.0.1:{next_hop_port}",
        "REDIS_SERVER": f"name=il;addr=127.0.0.1;port={redis_port}",
        "KEY_PREFIX": key_prefix,
        "WORKERS": workers,
    }
    if redress:
        values["REDRESS_CONTACT"] = redress
    args = ["-A", f"LISTEN=udp:127.0.0.1:{port}", *defines(values)]  # a socket, not a string
    if not lookup:
        args += ["-A", "NO_LOOKUP"]
    log = workdir / "kamailio.log"
    fh = log.open("ab")
    proc = subprocess.Popen(
        [binary("kamailio", "/usr/sbin/kamailio"), "-DD", "-E", "-m", "256", "-M", "16",
         "-f", str(CONFIG), "-Y", str(workdir), "-P", str(workdir / "kamailio.pid"),
         "-w", str(workdir), *args],
        stdout=fh, stderr=fh,
    )  # fmt: skip
    fh.close()
    deadline = time.monotonic() + timeout_s
    while "dialwatch: ready" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise ServiceError(f"kamailio did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return Kamailio("kamailio", proc, log, port, accounting=log)


def start_uas(workdir: Path, name: str = "uas") -> Proc:
    """The answering side (deploy/kamailio/sipp/uas.xml)."""
    port = free_udp_port()
    log = workdir / f"{name}.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [binary("sipp", "/usr/bin/sipp"), "-sf", str(SCENARIOS / "uas.xml"),
             "-i", "127.0.0.1", "-p", str(port), "-nostdin", "-trace_err",
             "-error_file", str(workdir / f"{name}.errors")],
            stdout=fh, stderr=fh, cwd=workdir,
        )  # fmt: skip
    return Proc(name, proc, log, port)


def write_calls(path: Path, calls: Iterable[tuple[str, str, int]]) -> int:
    """A SIPp injection file: caller;callee;hold ms per line, read in order."""
    lines = ["SEQUENTIAL"] + [f"{a};{b};{hold}" for a, b, hold in calls]
    path.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


def uac(
    workdir: Path, name: str, proxy_port: int, calls: Path, count: int, rate: float,
    *, limit: int = 200, extra: Sequence[str] = (),
) -> subprocess.Popen[bytes]:  # fmt: skip
    """The calling side: ``count`` calls from the injection file at ``rate`` calls/s."""
    port = free_udp_port()
    log = workdir / f"{name}.log"
    with log.open("ab") as fh:
        return subprocess.Popen(
            [binary("sipp", "/usr/bin/sipp"), f"127.0.0.1:{proxy_port}",
             "-sf", str(SCENARIOS / "uac.xml"), "-inf", str(calls), "-i", "127.0.0.1",
             "-p", str(port), "-m", str(count), "-r", str(int(rate * 1000)), "-rp", "1000000",
             "-l", str(limit), "-nostdin", "-trace_stat", "-stf", str(workdir / f"{name}.csv"),
             "-trace_err", "-error_file", str(workdir / f"{name}.errors"), *extra],
            stdout=fh, stderr=fh, cwd=workdir,
        )  # fmt: skip


_SUCCESS = re.compile(r"Successful call\s+\|\s+\d+\s+\|\s+(\d+)")
_FAILED = re.compile(r"Failed call\s+\|\s+\d+\s+\|\s+(\d+)")


def outcome(log: Path) -> tuple[int, int]:
    """(successful, failed) calls from SIPp's final screen in its log."""
    text = log.read_text(errors="replace")
    ok, bad = _SUCCESS.findall(text), _FAILED.findall(text)
    return (int(ok[-1]) if ok else 0, int(bad[-1]) if bad else 0)
