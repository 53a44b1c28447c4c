"""``dialwatch worker``: creates the topics it owns, builds both stages' engines and runtimes
and runs the Faust app (``streams.app``) until stopped.

Where the rest lives: ``streams.agents`` (the agents, over a ``streams.context.Context``),
``streams.runtime`` (retry in place, outbox recovery, restore), ``streams.web`` (endpoints),
``streams.derived`` (the derived stream's wire), ``streams.batches`` (Faust batches to engine
items), ``streams.kafka_reads`` (re-reads for recovery), ``streams.deadletter``.
"""

from __future__ import annotations

import logging

from config.settings import Settings
from streams.app import build_app, set_fetch_max_wait
from streams.factory import build_engines
from streams.metrics import STAGE_CALLERS, STAGE_SUBJECTS, Metrics
from streams.runtime import Runtime
from streams.security import describe, kafka_python_kwargs
from streams.shutdown import Worker
from streams.state.redis import RedisStore
from streams.topics import create_topics, owned_topics, topic_configs

log = logging.getLogger("dialwatch.worker")


def run_worker(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    log.info("starting: %s", describe(settings))
    if settings.fetch_max_wait_ms is not None:
        set_fetch_max_wait(settings.fetch_max_wait_ms)
    create_topics(
        settings.kafka,
        owned_topics(settings),
        kafka_options=kafka_python_kwargs(settings),
        replication=settings.topic_replication,
        configs=topic_configs(settings),
    )
    caller_engine, subject_engine = build_engines(
        settings, sources=settings.topic_partitions, outbox=True
    )
    metrics = Metrics()
    for engine in (caller_engine, subject_engine):
        if isinstance(engine.store, RedisStore):  # dialwatch_redis_seconds{op="read"|"write"}
            engine.store.timing = metrics.redis_call
    callers = Runtime(settings, caller_engine, metrics, STAGE_CALLERS)
    subjects = Runtime(settings, subject_engine, metrics, STAGE_SUBJECTS)
    app = build_app(settings, callers, subjects)
    worker = Worker(
        app,
        loglevel=settings.log_level,
        redirect_stdouts=False,
        stop_timeout_s=settings.stop_timeout_s,
    )
    worker.execute_from_commandline()
    return 0
