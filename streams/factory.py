"""Builds the engines and their stores from settings: the one place that wiring lives."""

from __future__ import annotations

from collections.abc import Collection

from config.numbering import plan_from_setting
from config.policy import load_policy
from config.settings import Settings
from streams.allowlist import Allowlist
from streams.circles import Circles, RedisCircles
from streams.engine import Engine
from streams.items import CALLER_KINDS, DERIVED_KINDS
from streams.security import redis_client
from streams.state.base import Store
from streams.state.memory import MemoryStore
from streams.state.redis import RedisStore

PARTITION_KEYS_TTL_MS = 7 * 86_400_000


def key_prefix(settings: Settings, kinds: Collection[str]) -> str:
    """Stage 2 (callee, block, trunk) keeps its partitions under their own prefix."""
    return settings.key_prefix if set(kinds) == CALLER_KINDS else f"{settings.key_prefix}:x"


def build_engine(
    settings: Settings,
    redis_url: str | None = None,
    kinds: Collection[str] = CALLER_KINDS,
    allowlist: Allowlist | None = None,
    sources: int = 1,
    outbox: bool = False,
) -> Engine:
    """An engine over Redis when a URL is given (or configured), else over memory."""
    policy = load_policy(settings.policy_file)
    if allowlist is None:
        allowlist = Allowlist(settings.allowlist_file, plan_from_setting(settings.numbering_plan))
    url = redis_url or settings.redis
    store: Store = MemoryStore()
    engine = Engine(
        settings,
        policy,
        store,
        allowlist,
        kinds=kinds,
        sources=sources,
        outbox=outbox,
    )
    key = settings.pseudonym_key.encode()
    if url:
        client = redis_client(settings, url)
        engine.store = RedisStore(
            client,
            prefix=key_prefix(settings, kinds),
            window_ttl_ms=max(1000, int(engine.window_ttl_ms() * settings.key_ttl_scale)),
            partition_ttl_ms=PARTITION_KEYS_TTL_MS,
        )
        if settings.circle_days > 0 and set(kinds) != CALLER_KINDS:
            prefix = key_prefix(settings, kinds)
            engine.circles = RedisCircles(client, prefix, key, sources, settings.circle_days)
    elif settings.circle_days > 0 and set(kinds) != CALLER_KINDS:
        engine.circles = Circles(key, sources, settings.circle_days)
    return engine


def build_engines(
    settings: Settings, redis_url: str | None = None, sources: int = 1, outbox: bool = False
) -> tuple[Engine, Engine]:
    """Stage 1 (callers) and stage 2 (callees, blocks, trunks), sharing one allowlist.

    ``sources``: stage-1 partitions feeding stage 2 (the worker: the CDR topic's partitions;
    scan: its one partition). ``outbox``: keep alerts in the store until confirmed sent."""
    allowlist = Allowlist(settings.allowlist_file, plan_from_setting(settings.numbering_plan))
    callers = build_engine(settings, redis_url, CALLER_KINDS, allowlist, outbox=outbox)
    derived = build_engine(settings, redis_url, DERIVED_KINDS, allowlist, sources, outbox)
    # Stage 2 reads the complaint reports stage 1 stores (debt collection's members).
    derived.reports = callers.store
    return callers, derived
