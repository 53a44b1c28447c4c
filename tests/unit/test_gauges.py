"""The cached /metrics gauges (streams.gauges) and the issue-16 histograms, over the in-process
store and a counting stand-in for the list's Redis: a scrape reads only the cache."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import generate_latest

from config.policy import load_policy
from config.settings import Settings
from streams.engine import Engine
from streams.gauges import Gauges
from streams.items import Outcome
from streams.metrics import STAGE_SUBJECTS, Metrics
from streams.runtime import Runtime
from streams.state.memory import MemoryStore
from tests.factories import T0, dial

NOW_MS = (T0 + 30 * 86_400) * 1000
SETTINGS = Settings(metrics_refresh_s=1.0, cdr_topic="c", repartition_topic="r", derived_topic="d")


class Pipeline:
    def __init__(self, owner: ListRedis) -> None:
        self.owner = owner

    def zcount(self, key: str, low: str, high: str) -> None:
        assert low.startswith("(") and high == "+inf"  # only entries not yet expired

    def exists(self, key: str) -> None:
        assert key.endswith(":brkopen")

    async def execute(self) -> list[int]:
        self.owner.calls += 1
        return [3, 1, 2, 1]


class ListRedis:
    """Stands in for the interception store: counts round trips."""

    def __init__(self) -> None:
        self.calls = 0
        self.client = self

    def pipeline(self, transaction: bool = False) -> Pipeline:
        return Pipeline(self)

    def key(self, kind: str, name: str = "") -> str:
        return f"dw:{{il}}:{kind}:{name}" if name else f"dw:{{il}}:{kind}"


def runtimes() -> tuple[Runtime, Runtime]:
    metrics = Metrics()
    policy = load_policy(SETTINGS.policy_file)
    engine = Engine(SETTINGS, policy, MemoryStore(), clock_ms=lambda: NOW_MS)
    other = Engine(SETTINGS, policy, MemoryStore(), clock_ms=lambda: NOW_MS, kinds={"callee"})
    return Runtime(SETTINGS, engine, metrics), Runtime(SETTINGS, other, metrics, STAGE_SUBJECTS)


def value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


async def test_list_gauges_come_from_one_cached_round_trip() -> None:
    callers, subjects = runtimes()
    redis = ListRedis()
    gauges = Gauges(SETTINGS, callers, subjects, redis, set)  # type: ignore[arg-type]
    callers.metrics.registry.register(gauges)
    assert value(callers.metrics, "dialwatch_interception_numbers", {"state": "pending"}) is None
    await gauges.refresh()
    assert redis.calls == 1
    for _ in range(5):  # scrapes
        generate_latest(callers.metrics.registry)
    assert redis.calls == 1
    m = callers.metrics
    assert value(m, "dialwatch_interception_numbers", {"state": "intercepted"}) == 3
    assert value(m, "dialwatch_interception_numbers", {"state": "pending"}) == 1
    assert value(m, "dialwatch_interception_numbers", {"state": "protected"}) == 2
    assert value(m, "dialwatch_interception_breaker_open") == 1
    assert value(m, "dialwatch_redis_seconds_count", {"op": "list_gauges"}) == 1
    gauges.cache.lists_at = time.time() - 10  # three refresh periods without a read: dropped
    assert value(m, "dialwatch_interception_numbers", {"state": "pending"}) is None


async def test_lag_per_assigned_input_partition_both_views() -> None:
    callers, subjects = runtimes()
    await callers.process(0, list(enumerate(dial("17012345678", 30, 10))))  # offsets 0..29
    assigned = {("c", 0), ("c", 1), ("r", 0), ("d", 0), ("alerts", 0)}
    gauges = Gauges(SETTINGS, callers, subjects, None, lambda: assigned)
    callers.metrics.registry.register(gauges)
    ends = {("c", 0): 50, ("c", 1): 7, ("r", 0): 0, ("d", 0): 4}
    committed = {("c", 0): 20, ("c", 1): 7}

    def offsets(tps: list[tuple[str, int]]) -> tuple[dict[Any, int], dict[Any, int]]:
        assert sorted(tps) == sorted(ends)  # only the three input topics
        return ends, committed

    gauges._offsets = offsets  # type: ignore[method-assign]
    await gauges.refresh()
    m = callers.metrics
    state = "dialwatch_state_lag_messages"
    kafka = "dialwatch_consumer_lag_messages"
    assert value(m, state, {"topic": "c", "partition": "0"}) == 50 - 30
    assert value(m, state, {"topic": "c", "partition": "1"}) == 7  # nothing applied there
    assert value(m, state, {"topic": "r", "partition": "0"}) == 0
    assert value(m, state, {"topic": "d", "partition": "0"}) == 4
    assert value(m, kafka, {"topic": "c", "partition": "0"}) == 30
    assert value(m, kafka, {"topic": "c", "partition": "1"}) == 0
    assert value(m, kafka, {"topic": "d", "partition": "0"}) == 4  # never committed
    assert value(m, state, {"topic": "alerts", "partition": "0"}) is None
    # /health's lag: the same cached reads, summed per topic
    health = gauges.lag()
    assert health["topics"] == {
        "c": {"state_messages": 20 + 7, "kafka_messages": 30 + 0},
        "r": {"state_messages": 0, "kafka_messages": 0},
        "d": {"state_messages": 4, "kafka_messages": 4},
    }
    assert isinstance(health["event_time_s"], float) and health["read_at"] == gauges.cache.lag_at
    gauges.cache.lag_at = time.time() - 10  # stale: the lag is not known
    assert all(v is None for t in gauges.lag()["topics"].values() for v in t.values())  # type: ignore[attr-defined]


async def test_event_time_lag_batch_sizes_and_alert_latency() -> None:
    callers, subjects = runtimes()
    calls = dial("17012345678", 40, 10)
    outcome: Outcome = await callers.process(3, list(enumerate(calls)))
    gauges = Gauges(SETTINGS, callers, subjects, None, set)
    callers.metrics.registry.register(gauges)
    m = callers.metrics
    newest_s = max(c.start_ms for c in calls) / 1000
    lag = value(m, "dialwatch_event_time_lag_seconds", {"stage": "callers", "partition": "3"})
    assert lag is not None and abs(lag - (time.time() - newest_s)) < 5
    assert value(m, "dialwatch_batch_records_sum", {"stage": "callers"}) == 40
    m.alerts_latency("callers", len(outcome.alerts), time.time() - 2)
    assert outcome.alerts
    count = value(m, "dialwatch_alert_latency_seconds_count", {"stage": "callers"})
    assert count == len(outcome.alerts)
    under_1s = {"stage": "callers", "le": "1.0"}
    assert value(m, "dialwatch_alert_latency_seconds_bucket", under_1s) == 0
