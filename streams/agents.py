"""The worker's agents, as functions of a ``Context`` and a Faust stream (``streams.app`` wires
them), and what they send.

``by_caller`` reads the CDR topic (keyed by caller). For each partition of a batch it runs the
caller engine's detection, publishes the CDRs whose normalised caller belongs to another
partition to the repartition topic and the batch's callee, block and trunk observations to the
derived topic, one message per target partition each (README "Batches and partitions",
"Derived stream"), then makes the engine's fenced store write, publishes the alerts and dead
letters, and only then lets Faust acknowledge the batch. ``by_rekeyed`` reads the repartition
topic into the same caller engine (its second input, fenced on its own offset). ``by_subject``
reads the derived topic and runs the subject engine the same way. ``by_complaint`` records
subscriber reports on the caller partition of their number.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from functools import partial
from typing import Any

import orjson

from streams.batches import chunks, oldest_times, split
from streams.campaignwork import recording
from streams.cdr import Reject, decode_message
from streams.complaints import Complaint, decode_complaints, record
from streams.context import Context
from streams.deadletter import dead_letter
from streams.delivery import Confirmed, Outlet
from streams.derived import decode_derived, derived_messages, progress_messages
from streams.feed.records import alert_record, canonical
from streams.idle import Idle, idle_due
from streams.items import Outcome
from streams.observe import derived_obs
from streams.rekey import decode_rekeyed, rekeyed_messages
from streams.state.base import PartitionMeta
from streams.topics import partition_for

ADMISSION_REASONS = frozenset({"future", "too_late"})  # decided by the engine, not the parser
IDLE_CALL_TIMEOUT_S = 3.0  # each broker or store call of the idle heartbeat (skipped after)
log = logging.getLogger("dialwatch.worker")


async def by_caller(ctx: Context, stream: Any) -> None:
    """Stage 1 over the CDR topic."""
    settings, callers = ctx.settings, ctx.callers
    decode = partial(decode_message, plan=ctx.plan, tz=ctx.tz)
    async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
        by_partition, raw = split(events)
        arrived = oldest_times(events)
        for partition, messages in by_partition.items():
            for items in chunks(messages, decode, settings.chunk_records):
                async with callers.lock(partition):
                    outcome = await callers.handle(
                        partition,
                        items[0][0],
                        items,
                        ctx.caller_links,
                        partial(forward, ctx, partition),
                    )
                    sends = partial(batch_sends, ctx, settings.cdr_topic, partition, outcome, raw)
                    await callers.publish(partition, outcome, sends)
                    callers.metrics.alerts_latency(
                        callers.stage, len(outcome.alerts), arrived.get(partition)
                    )


async def by_rekeyed(ctx: Context, stream: Any) -> None:
    """Stage 1 over the repartition topic: CDRs admitted on another partition, applied to their
    caller's state as if they had been keyed by caller. Their rejects and their stage-2
    observations were made where they arrived; a repartition message the worker cannot read
    is counted only (internal topic)."""
    settings, rekeyed = ctx.settings, ctx.rekeyed
    async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
        by_partition, raw = split(events)
        arrived = oldest_times(events)
        for partition, messages in by_partition.items():
            for items in chunks(messages, decode_rekeyed, settings.chunk_records):
                async with rekeyed.lock(partition):
                    # Nothing to forward: these CDRs went to stage 2 from where they arrived.
                    outcome = await rekeyed.handle(partition, items[0][0], items, ctx.rekeyed_links)
                    sends = partial(
                        batch_sends,
                        ctx,
                        settings.repartition_topic,
                        partition,
                        outcome,
                        raw,
                        internal=True,
                    )
                    await rekeyed.publish(partition, outcome, sends)
                    rekeyed.metrics.alerts_latency(
                        rekeyed.stage, len(outcome.alerts), arrived.get(partition)
                    )


async def by_subject(ctx: Context, stream: Any) -> None:
    """Stage 2 over the derived topic."""
    settings, subjects = ctx.settings, ctx.subjects
    async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
        by_partition, raw = split(events)
        arrived = oldest_times(events)
        for partition, messages in by_partition.items():
            for items in chunks(messages, decode_derived, settings.chunk_records):
                async with subjects.lock(partition):
                    # Before the write: which victim each bombing alert is about (interception).
                    stage = (
                        subjects.interception.stage_for(items) if subjects.interception else None
                    )
                    forward = recording(stage, ctx.campaigns)  # and the campaign sketches
                    outcome = await subjects.handle(
                        partition, items[0][0], items, ctx.subject_links, forward
                    )
                    sends = partial(
                        batch_sends,
                        ctx,
                        settings.derived_topic,
                        partition,
                        outcome,
                        raw,
                        internal=True,
                    )
                    await subjects.publish(partition, outcome, sends)
                    subjects.metrics.alerts_latency(
                        subjects.stage, len(outcome.alerts), arrived.get(partition)
                    )


async def by_complaint(ctx: Context, stream: Any) -> None:
    """Reports go to the caller partition of their number (README "Complaints")."""
    settings, callers = ctx.settings, ctx.callers
    horizon_ms = callers.engine.policy.complaints.horizon_s * 1000
    async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
        by_partition: dict[int, list[Complaint]] = {}
        rejects: list[tuple[Any, Reject]] = []
        for event in events:
            for rec in decode_complaints(event.message.value, ctx.plan):
                if isinstance(rec, Reject):
                    rejects.append((event.message, rec))
                    continue
                target = partition_for(rec.number.encode(), settings.topic_partitions)
                by_partition.setdefault(target, []).append(rec)
        for target, complaints in by_partition.items():
            await callers.retry(
                "complaint write",
                partial(record, callers.engine.store, target, complaints, horizon_ms),
            )
            callers.metrics.complaints.labels("accepted").inc(len(complaints))
        if rejects:
            await callers.send_confirmed(-1, partial(dead_complaints, ctx.out.dead, rejects))
            for _, reject in rejects:
                callers.metrics.complaints.labels(reject.reason).inc()


async def forward(ctx: Context, partition: int, outcome: Outcome) -> None:
    """Before the state write (``Runtime.handle``'s ``forward``), stage 1's moved CDRs go to
    their caller's partition and its admitted CDRs (moved ones too) to stage 2: a crash in
    between replays them, and both targets drop the repeats by cdr_id."""
    partitions = ctx.settings.topic_partitions
    if outcome.moved:
        moved = rekeyed_messages(outcome.moved, partition, partitions)
        await ctx.callers.send_confirmed(partition, partial(send_to, ctx.out.rekeyed, moved))
    trunks = ctx.settings.international_trunks
    observed = derived_obs(outcome.admitted, trunks, partition, ctx.plan, outcome.fronts)
    # Every derived partition hears this partition's progress, observations or not: stage 2
    # releases observations in canonical order as its sources' fronts pass them.
    messages = derived_messages(observed, partition, partitions, outcome.front_ms)
    await ctx.callers.send_confirmed(partition, partial(send_to, ctx.out.derived, messages))


async def tell_idle(ctx: Context, consumer: Any, idle: Idle) -> int:
    """Stage 1's heartbeat (docs/ordering.md): each CDR partition this process owns whose
    stored offset has stayed at the end of its log for ``progress_idle_s`` while another of
    its partitions receives input, or for ``progress_stopped_s`` when none does
    (streams.idle.idle_due; seen at every round in between), tells every derived partition
    that it is idle, with its front, so it stops holding back stage 2's release; once per
    change. Returns how many partitions told; a broker or store call that fails or hangs skips
    the round and forgets what was seen (a partition must then be seen at its end for the whole
    time again)."""
    settings = ctx.settings
    tps = [tp for tp in consumer.assignment() if tp.topic == settings.cdr_topic]
    if not tps:
        return 0
    try:
        ends = await asyncio.wait_for(consumer.highwaters(*tps), IDLE_CALL_TIMEOUT_S)
    except Exception as exc:  # the broker is away: nobody is told anything this round
        log.debug("idle heartbeat skipped (%s)", type(exc).__name__)
        idle.caught.clear()
        return 0
    quiet: dict[int, float] = {}  # partition -> seconds at its end (0: receiving input)
    for tp in sorted(tps, key=lambda t: t.partition):
        partition, lock = tp.partition, ctx.callers.lock(tp.partition)
        end = ends.get(tp)
        if end is None:
            continue
        if lock.locked():  # a batch in flight (or the store audit's short look)
            quiet[partition] = 0.0
            continue
        async with lock:
            meta = await idle_meta(ctx, partition, idle)
        if meta is None:
            return 0
        now = time.monotonic()
        offset, since = idle.caught.get(partition, (None, now))
        if meta.offset + 1 < end:
            idle.caught.pop(partition, None)  # input left to read
            quiet[partition] = 0.0
        elif offset != meta.offset:
            idle.caught[partition] = (meta.offset, now)  # at the end from now on
            quiet[partition] = 0.0
        else:
            quiet[partition] = now - since
    count = 0
    due = idle_due(quiet, settings.progress_idle_s, settings.progress_stopped_s)
    for partition in sorted(due):
        lock = ctx.callers.lock(partition)
        if lock.locked():
            continue
        async with lock:
            meta = await idle_meta(ctx, partition, idle)
            if meta is None:
                return count
            if meta.offset != idle.caught.get(partition, (None, 0.0))[0]:
                continue  # a batch applied meanwhile: the next round sees it
            front = dict(meta.sources).get(partition, meta.newest_ms)
            if idle.told.get(partition) == (meta.offset, front):
                continue
            messages = progress_messages(partition, settings.topic_partitions, front)
            try:
                pending = await asyncio.wait_for(
                    send_to(ctx.out.derived, messages), IDLE_CALL_TIMEOUT_S
                )
                await asyncio.wait_for(asyncio.gather(*pending), IDLE_CALL_TIMEOUT_S)
            except Exception as exc:
                log.debug("idle heartbeat not sent (%s)", type(exc).__name__)
                return count
            idle.told[partition] = (meta.offset, front)
            # Logged so a chaos run's differing stage-2 episode can be matched with the idle
            # tellings around it (docs/recovery.md): partition, offset and front only.
            log.info(
                "told idle: caller partition %d at offset %d, front %d, after %.1f s quiet",
                partition,
                meta.offset,
                front,
                quiet[partition],
            )
            count += 1
    return count


async def idle_meta(ctx: Context, partition: int, idle: Idle) -> PartitionMeta | None:
    """A caller partition's stored meta for the heartbeat, or None (and nothing remembered)
    when the store does not answer in time."""
    try:
        return await asyncio.wait_for(
            ctx.callers.engine.store.load_meta(partition), IDLE_CALL_TIMEOUT_S
        )
    except Exception as exc:
        log.debug("idle heartbeat skipped (%s)", type(exc).__name__)
        idle.caught.clear()
        return None


async def send_to(topic: Outlet, messages: list[tuple[int, bytes]]) -> list[Any]:
    """Internal messages (derived, repartition), each to its target partition."""
    return [await topic.send(value=value, partition=target) for target, value in messages]


async def send_raw(alerts: Outlet, alerts_json: list[bytes]) -> list[Any]:
    """Alerts as the outbox stored them (``Links.send_raw``), keyed by number."""
    pending = []
    for value in alerts_json:
        number = str(orjson.loads(value).get("number", ""))
        pending.append(await alerts.send(key=number.encode(), value=value))
    return pending


async def feed_sends(
    ctx: Context, alerts: Iterable[dict[str, Any]], confirmed: Confirmed | None = None
) -> list[Any]:
    """The regulator feed's records of the alerts that flag a number (streams.feed.records),
    keyed by the number; with ``confirmed``, none whose record id the broker confirmed before
    (the campaign ticker's retry)."""
    pending = []
    for alert in alerts:
        record = alert_record(alert, ctx.feed_key_id)
        if record is not None:
            send = partial(
                ctx.out.feed.send, key=record["number"].encode(), value=canonical(record)
            )
            if confirmed is None:
                pending.append(await send())
            else:
                rid = f"{ctx.out.feed.name} {record['record_id']}"
                pending.append(await confirmed.once(rid, send))
    return pending


async def send_feed(ctx: Context, alerts_json: list[bytes]) -> list[Any]:
    """``Runtime.feed``: the feed records of alerts as the outbox stored them (none that this
    worker's broker already confirmed: the outbox lists an alert until its confirm is written)."""
    return await feed_sends(ctx, [orjson.loads(value) for value in alerts_json], ctx.sent)


async def batch_sends(
    ctx: Context,
    source: str,
    partition: int,
    outcome: Outcome,
    raw: dict[tuple[int, int], bytes],
    internal: bool = False,
) -> list[Any]:
    """The alerts, feed records and dead letters of a batch; an alert or feed record the broker
    confirmed before (this batch's earlier try) is not sent again. ``internal`` (the derived
    topic): a stage-2 admission reject is only counted; its record's dead letter, if any, came
    from stage 1, and the derived message holds a whole batch of other calls."""
    alerts, dead = ctx.out.alerts, ctx.out.dead
    shown = [alert.to_dict(ctx.tz) for alert in outcome.alerts]
    pending = [
        await ctx.sent.once(
            f"{alerts.name} {alert['alert_id']}",
            partial(alerts.send, key=str(alert["number"]).encode(), value=orjson.dumps(alert)),
        )
        for alert in shown
    ]
    pending.extend(await feed_sends(ctx, shown, ctx.sent))
    for offset, reject in outcome.rejects:
        if internal and reject.reason in ADMISSION_REASONS:
            continue
        value, headers = dead_letter(
            raw[(partition, offset)], reject, f"{source}/{partition}/{offset}"
        )
        pending.append(await dead.send(key=None, value=value, headers=headers))
    return pending


async def dead_complaints(dead: Outlet, rejects: list[tuple[Any, Reject]]) -> list[Any]:
    pending = []
    for message, reject in rejects:
        source = f"{message.topic}/{message.partition}/{message.offset}"
        value, headers = dead_letter(message.value or b"", reject, source)
        pending.append(await dead.send(key=None, value=value, headers=headers))
    return pending


async def audit_stores(ctx: Context) -> None:
    """The store-audit timer: both stages re-apply what the store lost (``Runtime.audit``)."""
    for runtime, links in (
        (ctx.callers, ctx.caller_links),
        (ctx.rekeyed, ctx.rekeyed_links),
        (ctx.subjects, ctx.subject_links),
    ):
        await runtime.audit(links)


async def revoke(ctx: Context, revoked: Iterable[Any]) -> None:
    """A rebalance took these topic partitions away: each stage forgets its own."""
    by_topic = {
        ctx.settings.derived_topic: ctx.subjects,
        ctx.settings.repartition_topic: ctx.rekeyed,
    }
    for tp in revoked:
        runtime = by_topic.get(tp.topic, ctx.callers)
        await runtime.revoke(tp.partition, ctx.settings.rebalance_timeout_s / 2)
