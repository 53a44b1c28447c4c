"""Builds the engine and its store from settings: the one place that wiring lives."""

from __future__ import annotations

from config.policy import load_policy
from config.settings import Settings
from streams.allowlist import Allowlist
from streams.engine import Engine
from streams.state.base import Store
from streams.state.memory import MemoryStore
from streams.state.redis import RedisStore

PARTITION_KEYS_TTL_MS = 7 * 86_400_000


def build_engine(settings: Settings, redis_url: str | None = None) -> Engine:
    """An engine over Redis when a URL is given (or configured), else over memory."""
    policy = load_policy(settings.policy_file)
    allowlist = Allowlist(settings.allowlist_file)
    url = redis_url or settings.redis
    store: Store = MemoryStore()
    engine = Engine(settings, policy, store, allowlist)
    if url:
        engine.store = RedisStore.from_url(
            url,
            prefix=settings.key_prefix,
            window_ttl_ms=engine.window_ttl_ms(),
            partition_ttl_ms=PARTITION_KEYS_TTL_MS,
        )
    return engine
