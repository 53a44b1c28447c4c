"""Builds the worker's Faust app: its topics, the agents of both stages (stage 1 over the CDR
and the repartition topic) and complaints, the timers (allowlist refresh, store audit, broker
probe), the web endpoints and rebalance handling, and the interception step with its audit
mirror, all over one ``Context``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial, wraps
from typing import Any

import faust
from redis.exceptions import RedisError

from config.settings import Settings
from streams import agents, web
from streams.campaignwork import (
    CampaignRecorder,
    CampaignTicker,
    intercepted_by_others,
    safe_run,
)
from streams.cdr import decode_message
from streams.context import BrokerHealth, Context
from streams.delivery import Confirmed, Outlet, Outlets, Refusals
from streams.derived import decode_derived
from streams.gauges import Gauges
from streams.idle import Idle
from streams.interception.feed import mirror
from streams.interception.step import Interception, build_store
from streams.kafka_reads import published_ids, reread
from streams.metrics import Metrics
from streams.rekey import decode_rekeyed
from streams.runtime import Links, Runtime
from streams.security import api_token, faust_broker_kwargs, faust_web_kwargs
from streams.state.redis import RedisStore
from streams.topics import WorkerTopics, worker_topics

log = logging.getLogger("dialwatch.worker")
BROKER_PROBE_S = 5.0
BROKER_PROBE_TIMEOUT_S = 3.0


def build_app(settings: Settings, callers: Runtime, subjects: Runtime) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.kafka.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.topic_partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_commit_interval=settings.commit_interval_s,
        stream_wait_empty=False,
        producer_max_request_size=settings.producer_max_request_bytes,
        **faust_broker_kwargs(settings),
        **faust_web_kwargs(),
    )
    topics = worker_topics(app, settings)
    decode_cdrs = partial(decode_message, plan=callers.engine.numbering, tz=callers.engine.tz)
    # The worker's stage 1 moves CDRs to their normalised caller's partition (scan has one).
    callers.engine.rekey_partitions = settings.topic_partitions
    out = outlets(settings, topics, callers.metrics)
    ctx = Context(
        settings,
        callers,
        subjects,
        topics,
        caller_links=links(settings, out.alerts, settings.cdr_topic, decode_cdrs),
        subject_links=links(settings, out.alerts, settings.derived_topic, decode_derived),
        token=api_token(settings),
        rekeyed=callers.rekeyed_input(),
        rekeyed_links=links(settings, out.alerts, settings.repartition_topic, decode_rekeyed),
        out=out,
        campaigns=recorder(settings, subjects),
    )

    async def by_caller(stream: Any) -> None:
        await agents.by_caller(ctx, stream)

    async def by_rekeyed(stream: Any) -> None:
        await agents.by_rekeyed(ctx, stream)

    async def by_subject(stream: Any) -> None:
        await agents.by_subject(ctx, stream)

    async def by_complaint(stream: Any) -> None:
        await agents.by_complaint(ctx, stream)

    feed = partial(agents.send_feed, ctx)  # outbox recovery re-sends feed records too
    ctx.callers.feed = ctx.rekeyed.feed = ctx.subjects.feed = feed
    app.agent(topics.cdrs, name="by_caller")(by_caller)
    app.agent(topics.rekeyed, name="by_rekeyed")(by_rekeyed)
    app.agent(topics.derived, name="by_subject")(by_subject)
    app.agent(topics.complaints, name="complaints")(by_complaint)

    # Faust passes the app to a timer function that takes an argument: these take none.
    @app.timer(settings.allowlist_refresh_s)  # type: ignore[untyped-decorator]
    async def allowlist_timer() -> None:
        await ctx.refresh_allowlist()

    @app.timer(settings.store_audit_s)  # type: ignore[untyped-decorator]
    async def store_audit() -> None:
        await agents.audit_stores(ctx)

    idle = Idle()

    @app.timer(settings.progress_heartbeat_s)  # type: ignore[untyped-decorator]
    async def progress_heartbeat() -> None:
        await agents.tell_idle(ctx, app.consumer, idle)

    @app.timer(BROKER_PROBE_S)  # type: ignore[untyped-decorator]
    async def broker_probe() -> None:
        await probe_broker(app, ctx.broker)

    interception_mirror(app, settings, ctx)
    campaign_timer(app, settings, ctx)
    gauges = operations_gauges(app, settings, ctx)
    web.register(app, ctx, gauges.lag)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        idle.clear()  # another owner may have told stage 2 otherwise meanwhile
        await agents.revoke(ctx, revoked)

    return app


def interception_mirror(app: faust.App, settings: Settings, ctx: Context) -> None:
    """The interception step both stages feed (streams.interception), and the timer that
    mirrors its audit trail to the audit, interceptions and (breaker) alert topics."""
    step = Interception(build_store(settings), settings, ctx.plan)
    ctx.callers.interception = ctx.rekeyed.interception = ctx.subjects.interception = step
    sinks = {
        settings.audit_topic: app.topic(settings.audit_topic, key_type=bytes, value_type=bytes),
        settings.interception_topic: app.topic(
            settings.interception_topic, key_type=bytes, value_type=bytes
        ),
        settings.alert_topic: ctx.topics.alerts,
        settings.feed_topic: ctx.topics.feed,
    }
    names = (settings.audit_topic, settings.interception_topic, settings.alert_topic)
    token = f"{settings.app_id}-{id(app)}-{time.time()}"
    confirmed = Confirmed()  # a tick retried after the cursor write failed skips these

    async def send(topic: str, key: bytes, value: bytes) -> Any:
        return await sinks[topic].send(key=key, value=value)

    @app.timer(settings.intercept_mirror_s)  # type: ignore[untyped-decorator]
    async def audit_mirror() -> None:
        try:
            await mirror(
                step.store,
                send,
                names,
                ctx.tz,
                token,
                ctx.callers.engine.policy.version,
                feed=(settings.feed_topic, ctx.feed_key_id),
                confirmed=confirmed,
            )
        except (RedisError, OSError) as exc:  # the next tick goes on from the cursor
            log.warning("audit mirror failed (%s); retrying", type(exc).__name__)


def recorder(settings: Settings, subjects: Runtime) -> CampaignRecorder | None:
    """Stage 2's campaign recording (streams.campaignwork) on its store's Redis, or None."""
    store = subjects.engine.store
    if not settings.campaigns or not isinstance(store, RedisStore):
        return None
    return CampaignRecorder(store.client, settings, subjects.engine.numbering)


def campaign_timer(app: faust.App, settings: Settings, ctx: Context) -> CampaignTicker | None:
    """The campaign evaluation (streams.campaignwork) and the timer that runs it: campaigns to
    the leak-candidates topic, their alerts and the members intercepted on their evidence to
    the alert topic (and the feed), the interception step."""
    if ctx.campaigns is None:
        return None
    leaks = Outlet(
        app.topic(settings.leak_candidates_topic, key_type=bytes, value_type=bytes),
        ctx.out.alerts.refusals,
    )
    outlets = {
        settings.leak_candidates_topic: leaks,
        settings.alert_topic: ctx.out.alerts,
        settings.feed_topic: ctx.out.feed,
    }
    step = ctx.subjects.interception
    confirmed = Confirmed()  # what a run retried after a Redis failure does not send again

    async def send(topic: str, key: bytes, value: bytes) -> Any:
        return await outlets[topic].send(key=key, value=value)

    async def intercept(alerts: list[dict[str, Any]]) -> None:
        await asyncio.gather(*await agents.feed_sends(ctx, alerts, confirmed))
        await ctx.subjects.intercept(alerts)

    async def listed_by_others(number: str) -> bool:
        return step is not None and intercepted_by_others(await step.store.get(number))

    ticker = CampaignTicker(
        ctx.campaigns,
        settings,
        ctx.plan,
        ctx.tz,
        ctx.subjects.engine.store.load_meta,
        ctx.subjects.engine.sources,
        send,
        intercept,
        listed_by_others,
        ctx.callers.engine.policy.version,
        feed_key_id=ctx.feed_key_id,
        confirmed=confirmed,
    )

    @app.timer(settings.campaign_tick_s)  # type: ignore[untyped-decorator]
    async def campaign_tick() -> None:
        await safe_run(ticker)

    return ticker


def operations_gauges(app: faust.App, settings: Settings, ctx: Context) -> Gauges:
    """The cached gauges of /metrics (streams.gauges) and the timer that refreshes them."""
    step = ctx.callers.interception

    def assignment() -> set[tuple[str, int]]:
        try:
            return {(tp.topic, tp.partition) for tp in app.consumer.assignment()}
        except Exception:  # no consumer yet (starting) or it is being rebuilt
            return set()

    gauges = Gauges(settings, ctx.callers, ctx.subjects, step.store if step else None, assignment)
    ctx.callers.metrics.registry.register(gauges)

    @app.timer(settings.metrics_refresh_s)  # type: ignore[untyped-decorator]
    async def metrics_refresh() -> None:
        await gauges.refresh()

    return gauges


def outlets(settings: Settings, topics: WorkerTopics, metrics: Metrics) -> Outlets:
    """The output topics behind outlets that dead-letter refused sends (streams.delivery)."""
    refusals = Refusals(
        topics.dead,
        settings.dead_letter_topic,
        metrics.refused,
        settings.producer_max_request_bytes,
    )
    return Outlets(
        derived=Outlet(topics.derived, refusals),
        rekeyed=Outlet(topics.rekeyed, refusals),
        alerts=Outlet(topics.alerts, refusals),
        dead=Outlet(topics.dead, refusals),
        feed=Outlet(topics.feed, refusals),
    )


def links(
    settings: Settings,
    alerts: Outlet,
    topic: str,
    decode: Callable[[bytes | None], list[Any]],
) -> Links:
    """The broker calls a stage over input ``topic`` recovers with."""
    return Links(
        partial(published_ids, settings),
        partial(agents.send_raw, alerts),
        partial(reread, settings, topic, decode),
    )


async def probe_broker(app: faust.App, broker: BrokerHealth) -> None:
    """A metadata round trip on the producer's connection: /health turns degraded while the
    broker does not answer, even when there is nothing to send."""
    try:
        producer: Any = app.producer  # faust's aiokafka driver; its client is aiokafka's
        client = producer._ensure_producer().client
        await asyncio.wait_for(client.fetch_all_metadata(), BROKER_PROBE_TIMEOUT_S)
    except Exception as exc:  # any failure means "not reachable now"
        if broker.ok:
            log.warning("broker unreachable (%s)", type(exc).__name__)
        broker.ok = False
        return
    if not broker.ok:
        log.info("broker reachable again")
    broker.ok = broker.answered = True


def set_fetch_max_wait(ms: int) -> None:
    """Make every aiokafka consumer this process creates (Faust's) ask for ``ms`` of fetch wait.

    faust-streaming 0.15 passes a fixed ``fetch_max_wait_ms=1500`` with no setting for it
    (``faust/transport/drivers/aiokafka.py``), so the constructor's argument is replaced here.
    """
    import aiokafka

    original = aiokafka.AIOKafkaConsumer.__init__
    if getattr(original, "dialwatch_fetch_wait", None) == ms:
        return

    @wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["fetch_max_wait_ms"] = ms
        original(self, *args, **kwargs)

    init.dialwatch_fetch_wait = ms  # type: ignore[attr-defined]
    aiokafka.AIOKafkaConsumer.__init__ = init
