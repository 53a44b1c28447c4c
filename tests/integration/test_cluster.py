"""The store's key layout and Lua scripts on a real three-node Redis Cluster (docs/cluster.md).

The cluster is started on free loopback ports by ``streams.tools.services.start_redis_cluster`` for
this module; without redis-server the module fails (ServiceError), it is never skipped.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import MovedError, RedisError

from config.numbering import CHINA
from config.policy import load_policy
from config.settings import Settings
from streams.engine import Engine
from streams.factory import PARTITION_KEYS_TTL_MS, build_engine, key_prefix
from streams.items import DERIVED_KINDS
from streams.observe import derived_obs
from streams.security import describe, redis_acl_rule, redis_client
from streams.state.base import Changes, PartitionMeta, StaleOffset, Store
from streams.state.memory import MemoryStore
from streams.state.redis import RedisStore
from streams.tools import services
from streams.tools import simulate as sim
from streams.tools.services import CLUSTER_SLOTS, ClusterService, ServiceError, start_redis_cluster
from streams.tools.verify import read_state
from tests.factories import T0, cdr, derived_batch, dial
from tests.integration import test_store_contract as contract

NOW_MS = contract.NOW_MS
PARTITIONS = 16  # dw:{p0} .. dw:{p15}


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterService]:
    service = start_redis_cluster(3)
    yield service
    service.stop()


def node_clients(cluster: ClusterService) -> list[redis.Redis]:
    return [redis.Redis(host="127.0.0.1", port=port) for port in cluster.ports]


def slot_owners(cluster: ClusterService) -> dict[int, int]:
    """Port of the node serving each slot, from CLUSTER SLOTS as the first node sees it."""
    client = redis.Redis(host="127.0.0.1", port=cluster.ports[0])
    try:
        owners: dict[int, int] = {}
        for first, last, primary, *_ in client.execute_command(  # type: ignore[no-untyped-call]  # unannotated in redis-py
            "CLUSTER SLOTS"
        ):
            owners.update(dict.fromkeys(range(first, last + 1), int(primary[1])))
        return owners
    finally:
        client.close()


def owner_of(cluster: ClusterService, key: str) -> int:
    client = redis.Redis(host="127.0.0.1", port=cluster.ports[0])
    try:
        return slot_owners(cluster)[int(client.cluster("KEYSLOT", key))]
    finally:
        client.close()


def keys_by_node(cluster: ClusterService, prefix: str) -> dict[int, list[bytes]]:
    found: dict[int, list[bytes]] = {}
    for port, client in zip(cluster.ports, node_clients(cluster), strict=True):
        found[port] = sorted(client.scan_iter(match=f"{prefix}:*", count=1000))
        client.close()
    return found


def cluster_store(cluster: ClusterService, prefix: str) -> RedisStore:
    """A store on the cluster, built as streams.factory builds it (redis_client)."""
    client = redis_client(Settings(), cluster.address)
    assert isinstance(client, RedisCluster)
    return RedisStore(client, prefix=prefix, window_ttl_ms=90_000_000, partition_ttl_ms=600_000_000)


@pytest.fixture
async def store(cluster: ClusterService, unique: str) -> AsyncIterator[RedisStore]:
    s = cluster_store(cluster, f"t{unique}")
    yield s
    await s.close()


# --------------------------------------------------------------------------- the cluster


def test_three_nodes_serve_all_slots(cluster: ClusterService) -> None:
    assert len(set(cluster.ports)) == 3
    for client in node_clients(cluster):
        info = client.cluster("INFO")
        client.close()
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_ok"]) == CLUSTER_SLOTS
        assert int(info["cluster_known_nodes"]) == 3
    owners = slot_owners(cluster)
    assert set(owners) == set(range(CLUSTER_SLOTS))
    assert set(owners.values()) == set(cluster.ports)


def test_a_missing_redis_server_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "redis_binary", lambda: None)
    with pytest.raises(ServiceError, match="redis-server not found"):
        start_redis_cluster(3)


def test_partitions_spread_over_the_nodes(cluster: ClusterService) -> None:
    """Each partition's keys share one slot (hash tag {p<N>}), and the partitions' slots fall
    on more than one node, so the tests below really exercise the client's routing."""
    store = cluster_store(cluster, "dw")
    owners = {}
    for p in range(PARTITIONS):
        keys = [store.key(p, kind) for kind in ("meta", "ep", "due", "cp", "outbox")]
        keys += [store.number_key(p, "17012345678"), f"dw:x:{{p{p}}}:meta"]
        nodes = {owner_of(cluster, key) for key in keys}
        assert len(nodes) == 1, (p, keys)  # one partition, one slot, one node
        owners[p] = nodes.pop()
    assert len(set(owners.values())) > 1, owners


# --------------------------------------------------------------------------- the store contract

# Every contract test of test_store_contract.py that takes only a store, run on the
# cluster store: the same checks as on one redis-server, without a second copy of them.
CONTRACT: dict[str, Callable[[Store], Awaitable[None]]] = {
    name: fn
    for name, fn in vars(contract).items()
    if name.startswith("test_")
    and inspect.iscoroutinefunction(fn)
    and list(inspect.signature(fn).parameters) == ["store"]
}


def test_the_whole_contract_is_covered() -> None:
    expected = {
        "test_empty_partition",
        "test_write_then_read_round_trips",
        "test_write_is_fenced_on_the_offset",
        "test_empty_blob_deletes",
        "test_due_episodes_come_back_once_the_watermark_passes",
        "test_engine_gives_the_same_alerts_on_both_stores",
        "test_derived_engine_gives_the_same_alerts_on_both_stores",
        "test_source_progress_round_trips",
        "test_complaint_blobs_swap_only_when_unchanged",
        "test_outbox_holds_alerts_until_confirmed",
    }
    assert expected <= set(CONTRACT)


@pytest.mark.parametrize("name", sorted(CONTRACT))
async def test_store_contract_on_the_cluster(name: str, store: RedisStore) -> None:
    await CONTRACT[name](store)


async def test_contract_holds_on_every_node(cluster: ClusterService, store: RedisStore) -> None:
    """Fenced write, read, delete, due, complaint swap and outbox on a partition of each node."""
    by_node: dict[int, int] = {}
    for p in range(PARTITIONS):
        by_node.setdefault(owner_of(cluster, store.key(p, "meta")), p)
    assert len(by_node) > 1
    ep = b'{"bulk_dialling":["critical",1000]}'
    blob = contract.windows(1_000_000, 4)
    for p in by_node.values():
        await store.write(
            p,
            -1,
            Changes(
                PartitionMeta(5, 1_000_000, ((0, 9),)),
                {"13800000001": blob, "13800000002": blob},
                {"17000000001": (ep, 50_000)},
                outbox={"a1": b"{}"},
            ),
        )
        with pytest.raises(StaleOffset):
            await store.write(p, 4, Changes(PartitionMeta(6, 1), {"13800000001": b""}, {}))
        assert await store.load_meta(p) == PartitionMeta(5, 1_000_000, ((0, 9),))
        read = await store.read(p, ["13800000001", "13800000003"], due_before_ms=50_000)
        assert read.windows == {"13800000001": blob, "13800000003": None}
        assert read.due == {"17000000001": (ep, 50_000)}
        await store.write(p, 5, Changes(PartitionMeta(6, 1), {"13800000001": b""}, {}))
        assert (await store.read(p, ["13800000001"], 0)).windows["13800000001"] is None
        assert await store.swap_complaints(p, {"13800000002": None}, {"13800000002": b"[]"})
        assert not await store.swap_complaints(p, {"13800000002": None}, {"13800000002": b"x"})
        assert await store.pending_alerts(p) == {"a1": b"{}"}
        await store.confirm_alerts(p, ["a1"])
        assert await store.pending_alerts(p) == {}
    found = keys_by_node(cluster, store.prefix)
    assert sum(1 for keys in found.values() if keys) == len(by_node)


async def test_scripts_are_reloaded_on_a_node_that_lost_them(
    cluster: ClusterService, store: RedisStore
) -> None:
    """EVALSHA goes to the node of the keys' slot; a NOSCRIPT there (node restarted, SCRIPT
    FLUSH) loads the script again and the call succeeds."""
    p = 0
    await store.write(p, -1, Changes(PartitionMeta(1, 5), {"13800000001": b"[5]"}, {}))
    node = owner_of(cluster, store.key(p, "meta"))
    flusher = redis.Redis(host="127.0.0.1", port=node)
    try:
        assert flusher.script_exists(store._write.sha) == [True]
        flusher.script_flush()
        assert flusher.script_exists(store._write.sha, store._read.sha) == [False, False]
        await store.write(p, 1, Changes(PartitionMeta(2, 6), {"13800000001": b"[6]"}, {}))
        assert (await store.read(p, ["13800000001"], 0)).windows == {"13800000001": b"[6]"}
        assert flusher.script_exists(store._write.sha, store._read.sha) == [True, True]
    finally:
        flusher.close()


# --------------------------------------------------------------------------- the engine


def dialler(partition: int) -> str:
    return f"170{partition:02d}345678"


async def run_callers(store: Store, partitions: list[int]) -> list[str]:
    """A bulk dialler (and a service number) in each partition; batches interleaved."""
    settings = Settings()
    engine = Engine(settings, load_policy(settings.policy_file), store, clock_ms=lambda: NOW_MS)
    per_partition = {}
    for p in partitions:
        calls = dial(dialler(p), 600, 4800, T0 + p * 60) + dial(f"955{p:02d}345", 100, 4800)
        per_partition[p] = sorted(calls, key=lambda c: c.start_ms)
    ids = []
    for i in range(0, 700, 97):
        for p in partitions:
            batch = per_partition[p][i : i + 97]
            out = await engine.process(p, [(i + j, c) for j, c in enumerate(batch)])
            ids += [a.alert_id for a in out.alerts]
    return ids


async def run_derived(store: Store, partitions: list[int]) -> list[tuple[str, str, str]]:
    """A call bomber's victim (three callers) in each partition, through the derived engine."""
    settings = Settings()
    policy = load_policy(settings.policy_file)
    engine = Engine(settings, policy, store, clock_ms=lambda: NOW_MS, kinds=DERIVED_KINDS)
    observed = {}
    for p in partitions:
        victim = f"1381111{p:04d}"
        bombing = [
            cdr(f"139{p:02d}00000{i % 3}", T0 + p * 30 + i * 10, i, callee=victim)
            for i in range(40)
        ]
        observed[p] = derived_obs(bombing, settings.international_trunks, 0, CHINA)
    alerts = []
    for i in range(0, max(len(o) for o in observed.values()), 13):
        for p in partitions:
            batch = observed[p][i : i + 13]
            if not batch:
                continue
            last = i + 13 >= len(observed[p])
            out = await engine.process(p, derived_batch(batch, i, last))
            alerts += [(a.alert_id, a.subject, a.action) for a in out.alerts]
    return alerts


async def test_caller_engine_gives_the_same_alerts_on_the_cluster(
    cluster: ClusterService, unique: str
) -> None:
    partitions = list(range(0, PARTITIONS, 3))  # 0, 3, 6, 9, 12, 15
    nodes = {owner_of(cluster, f"dw:{{p{p}}}:meta") for p in partitions}
    assert len(nodes) > 1
    prefix = f"c{unique}"
    on_cluster = cluster_store(cluster, prefix)
    try:
        expected = await run_callers(MemoryStore(), partitions)
        got = await run_callers(on_cluster, partitions)
    finally:
        await on_cluster.close()
    assert len(expected) >= 3 * len(partitions)  # bulk dialling, robocall, quota per dialler
    assert got == expected
    found = keys_by_node(cluster, prefix)
    assert sum(1 for keys in found.values() if keys) == len(nodes)
    # The verifier reads such a state too: its reads never span two partitions' slots.
    reader = cluster_store(cluster, prefix)
    try:
        stored = await read_state(reader.client, prefix)
    finally:
        await reader.close()
    assert {p for p, _ in stored.numbers} == set(partitions)
    assert {dialler(p) for p in partitions} <= {n for _, n in stored.numbers}
    assert set(stored.meta) == set(partitions)


async def test_derived_engine_gives_the_same_alerts_on_the_cluster(
    cluster: ClusterService, unique: str
) -> None:
    partitions = [1, 5, 10, 14]
    prefix = f"d{unique}:x"  # stage 2's prefix, as streams.factory.key_prefix builds it
    assert key_prefix(Settings(key_prefix=f"d{unique}"), DERIVED_KINDS) == prefix
    nodes = {owner_of(cluster, f"{prefix}:{{p{p}}}:meta") for p in partitions}
    assert len(nodes) > 1
    on_cluster = cluster_store(cluster, prefix)
    try:
        expected = await run_derived(MemoryStore(), partitions)
        got = await run_derived(on_cluster, partitions)
    finally:
        await on_cluster.close()
    assert {(subject, action) for _, subject, action in expected} == {
        ("callee", "protect"),
        ("number", "intercept"),
    }
    # bombing only (a flood is not also debt collection since policy 2026.12.3): each victim,
    # three callers
    assert len(expected) == 4 * len(partitions)
    assert got == expected
    found = keys_by_node(cluster, prefix)
    assert sum(1 for keys in found.values() if keys) == len(nodes)


async def test_factory_builds_cluster_stores(cluster: ClusterService, unique: str) -> None:
    settings = Settings(key_prefix=f"f{unique}")
    for kinds in ({"number"}, DERIVED_KINDS):
        engine = build_engine(settings, cluster.address, kinds)
        assert isinstance(engine.store, RedisStore)
        assert isinstance(engine.store.client, RedisCluster)
        assert engine.store.partition_ttl_ms == PARTITION_KEYS_TTL_MS
        assert await engine.store.load_meta(7) == PartitionMeta(-1, 0)
        await engine.store.close()


async def test_a_single_server_client_is_refused_by_the_cluster(cluster: ClusterService) -> None:
    """A plain redis:// URL of one node does not silently work on part of the data: the first
    command on a partition another node serves fails with MOVED."""
    port = cluster.ports[0]
    other = next(p for p in range(PARTITIONS) if owner_of(cluster, f"dw:{{p{p}}}:meta") != port)
    plain = RedisStore(
        aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0"),
        prefix="dw",
        window_ttl_ms=1000,
        partition_ttl_ms=1000,
    )
    try:
        with pytest.raises(MovedError):
            await plain.load_meta(other)
    finally:
        await plain.close()


def migrate_slot(cluster: ClusterService, key: str, target: int, finish: bool) -> None:
    """Move the slot of ``key`` to the node on port ``target`` as ``redis-cli --cluster
    reshard`` does: mark it migrating/importing and move its keys; with ``finish``, assign it
    to the target on every node (else clients are sent there with ASK)."""
    clients = dict(zip(cluster.ports, node_clients(cluster), strict=True))
    try:
        slot = int(clients[target].cluster("KEYSLOT", key))
        source = slot_owners(cluster)[slot]
        ids = {port: c.cluster("MYID").decode() for port, c in clients.items()}
        if source != target:
            clients[target].cluster("SETSLOT", slot, "IMPORTING", ids[source])
            clients[source].cluster("SETSLOT", slot, "MIGRATING", ids[target])
            while keys := clients[source].cluster("GETKEYSINSLOT", slot, 1000):
                clients[source].migrate("127.0.0.1", target, keys, 0, 5000)
        if finish:
            for port in [target, source, *(p for p in clients if p not in (target, source))]:
                clients[port].cluster("SETSLOT", slot, "NODE", ids[target])
    finally:
        for c in clients.values():
            c.close()


async def test_a_partition_moves_to_another_node_mid_run(
    cluster: ClusterService, unique: str
) -> None:
    """Resharding moves a partition whole (its keys share one slot). While the slot migrates,
    single-key reads follow the ASK redirection to the importing node, but the scripts (several
    keys, some not existing yet) get TRYAGAIN: the batch fails with a RedisError, which the
    worker retries. Once the slot is handed over, the client follows MOVED and the alerts are
    the same as in memory. The store runs as an ACL user with only the cluster rule."""
    prefix, p, password = f"m{unique}", 11, f"pw{unique}"
    rule = redis_acl_rule("dialwatch", prefix, password, cluster=True)
    for admin in node_clients(cluster):
        admin.execute_command(  # type: ignore[no-untyped-call]  # unannotated in redis-py
            "ACL", "SETUSER", "dialwatch", *rule.split()[2:]
        )
        admin.close()
    settings = Settings(redis_password=password)
    client = redis_client(settings, f"redis+cluster://dialwatch@127.0.0.1:{cluster.ports[0]}")
    on_cluster = RedisStore(client, prefix=prefix, window_ttl_ms=90_000_000, partition_ttl_ms=10**9)
    meta_key = on_cluster.key(p, "meta")
    home = owner_of(cluster, meta_key)
    target = next(port for port in cluster.ports if port != home)
    policy = load_policy(settings.policy_file)
    calls = dial(dialler(p), 600, 4800) + dial("95512345", 100, 4800)
    calls.sort(key=lambda c: c.start_ms)
    results = []
    try:
        for store in (MemoryStore(), on_cluster):
            engine = Engine(settings, policy, store, clock_ms=lambda: NOW_MS)
            ids = []
            for i in range(0, len(calls), 97):
                batch = [(i + j, c) for j, c in enumerate(calls[i : i + 97])]
                if store is on_cluster and i == 97 * 3:
                    migrate_slot(cluster, meta_key, target, finish=False)
                    assert (await on_cluster.load_meta(p)).offset == i - 1  # via ASK
                    with pytest.raises(RedisError):
                        await engine.process(p, batch)
                    engine.forget(p)  # as the worker does before it retries
                    migrate_slot(cluster, meta_key, target, finish=True)
                out = await engine.process(p, batch)
                ids += [a.alert_id for a in out.alerts]
            results.append(ids)
    finally:
        await on_cluster.close()
    assert owner_of(cluster, meta_key) == target
    assert len(results[0]) >= 3
    assert results[0] == results[1]
    found = keys_by_node(cluster, prefix)
    assert found[target] and not any(keys for port, keys in found.items() if port != target)


# --------------------------------------------------------------------------- settings, client


@pytest.mark.parametrize(
    ("changes", "url"),
    [
        ({}, "redis+cluster://127.0.0.1:7000"),
        ({}, "REDIS+CLUSTER://127.0.0.1:7000/0"),
        ({"redis_cluster": True}, "redis://127.0.0.1:7000"),
        (
            {"redis": "redis+cluster://dialwatch@127.0.0.1:7000", "redis_password": "s3cret-Pw"},
            None,
        ),
    ],
)
async def test_cluster_urls_give_a_cluster_client(
    changes: dict[str, object], url: str | None
) -> None:
    client = redis_client(Settings().with_(**changes), url)
    try:
        assert isinstance(client, RedisCluster)
        assert set(client.nodes_manager.startup_nodes) == {"127.0.0.1:7000"}
        if "redis_password" in changes:
            kwargs = client.nodes_manager.connection_kwargs
            assert (kwargs["username"], kwargs["password"]) == ("dialwatch", "s3cret-Pw")
            assert "s3cret-Pw" not in repr(client)
    finally:
        await client.aclose()


async def test_tls_settings_reach_the_cluster_client() -> None:
    settings = Settings(
        redis="rediss://127.0.0.1:7000", redis_cluster=True, redis_ssl_cafile=Path("/etc/ca.pem")
    )
    client = redis_client(settings)
    try:
        assert isinstance(client, RedisCluster)
        kwargs = client.nodes_manager.connection_kwargs
        assert kwargs["ssl_ca_certs"] == "/etc/ca.pem"
        assert kwargs["connection_class"].__name__ == "SSLConnection"
    finally:
        await client.aclose()
    assert describe(settings).endswith("ca=/etc/ca.pem cluster")


async def test_plain_urls_still_give_one_server() -> None:
    client = redis_client(Settings(), "redis://127.0.0.1:7000/3")
    try:
        assert type(client) is aioredis.Redis
        assert client.connection_pool.connection_kwargs["db"] == 3
    finally:
        await client.aclose()


def test_cluster_flag_from_env() -> None:
    settings = Settings.from_env(
        {"DIALWATCH_REDIS": "redis://127.0.0.1:7000", "DIALWATCH_REDIS_CLUSTER": "yes"}
    )
    assert settings.redis_cluster is True
    assert Settings.from_env({}).redis_cluster is False


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"redis": "redis+cluster://r:7000/2"}, "names a database other than 0"),
        ({"redis": "redis://r:7000/2", "redis_cluster": True}, "names a database other than 0"),
        ({"redis": "redis://r:7000?db=1", "redis_cluster": True}, "names a database other than 0"),
        ({"redis": "unix:///tmp/r.sock", "redis_cluster": True}, "redis_cluster needs a redis://"),
        (
            {"redis": "rediss+cluster://r:7000", "redis_ssl_cafile": Path("ca.pem")},
            "for a TLS cluster use rediss:// with redis_cluster=true",
        ),
    ],
)
def test_invalid_cluster_settings(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings().with_(**changes)


@pytest.mark.parametrize(
    ("changes", "url", "message"),
    [
        ({}, "redis+cluster://r:7000/1", "names a database other than 0"),
        ({"redis_cluster": True}, "unix:///tmp/r.sock", "redis_cluster needs a redis://"),
    ],
)
def test_invalid_cluster_urls(changes: dict[str, object], url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        redis_client(Settings().with_(**changes), url)


# --------------------------------------------------------------------------- dialwatch scan


def scan_alerts(path: Path, env: dict[str, str], *extra: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "streams", "scan", str(path), *extra],
        capture_output=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    alerts = [orjson.loads(line) for line in done.stdout.splitlines()]
    for alert in alerts:
        alert.pop("detected_at")  # the wall clock
    return alerts


@pytest.mark.parametrize("how", ["scheme", "flag"])
def test_scan_on_the_cluster_prints_the_same_alerts(
    cluster: ClusterService, tmp_path: Path, unique: str, how: str
) -> None:
    start = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    spec = sim.SimSpec(start=start, seed=11, hours=3, subscribers=600, bulk_diallers=2)
    records, labels = sim.generate(spec)
    path = tmp_path / "cdrs.jsonl"
    sim.write_jsonl(path, records)
    prefix = f"scan{unique}"
    env = {**os.environ, "DIALWATCH_KEY_PREFIX": prefix, "DIALWATCH_REDIS": ""}
    env.pop("DIALWATCH_REDIS_CLUSTER", None)
    expected = scan_alerts(path, env)
    # Seed the client with a node that does not serve scan's partition: it has to route.
    home = owner_of(cluster, f"{prefix}:{{p0}}:meta")
    seed = next(port for port in cluster.ports if port != home)
    if how == "scheme":
        got = scan_alerts(path, env, "--redis", f"redis+cluster://127.0.0.1:{seed}")
    else:
        cluster_env = {
            **env,
            "DIALWATCH_REDIS_CLUSTER": "true",
            "DIALWATCH_REDIS": f"redis://127.0.0.1:{seed}/0",
        }
        got = scan_alerts(path, cluster_env)
    diallers = {label.number for label in labels if label.role == sim.BULK_DIALLER}
    assert diallers <= {str(a["number"]) for a in expected if a["action"] == "intercept"}
    assert got == expected
    # Both stages' keys (dw and dw:x) are in scan's partition 0, on its node only.
    found = keys_by_node(cluster, prefix)
    assert found[home] and not any(keys for port, keys in found.items() if port != home)
    assert any(key.startswith(f"{prefix}:x:".encode()) for key in found[home])


async def test_contact_circles_on_the_cluster(cluster: ClusterService, unique: str) -> None:
    """Circles of subscribers on several derived partitions (so several nodes): one pipelined
    round trip of circle_add.lua across slots, the same reads as in memory."""
    from streams.circles import Circles, RedisCircles

    prefix = f"c{unique}:x"
    client = redis_client(Settings(), cluster.address)
    assert isinstance(client, RedisCluster)
    day_s = (T0 // 86_400) * 86_400
    numbers = [f"139{i:08d}" for i in range(40)]
    try:
        memory = Circles(b"k", 16, 3)
        on_cluster = RedisCircles(client, prefix, b"k", 16, 3)
        for c in (memory, on_cluster):
            for i, a in enumerate(numbers):
                c.note(a, numbers[(i * 7 + 3) % 40], day_s + i)
                c.note(a, numbers[(i * 11 + 5) % 40], day_s - 86_400 + i)
            await c.flush()
        assert len({on_cluster.where(n) for n in numbers}) > 4
        got = await on_cluster.read(numbers, day_s + 100)
        assert got == await memory.read(numbers, day_s + 100)
        assert all(got[n] for n in numbers)
        nodes = {
            owner_of(cluster, on_cluster._key(on_cluster.where(n), day_s // 86_400))
            for n in numbers
        }
        assert len(nodes) > 1
    finally:
        for node_keys in keys_by_node(cluster, prefix).values():
            for key in node_keys:
                await client.delete(key)
        await client.aclose()
