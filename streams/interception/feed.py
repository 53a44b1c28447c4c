"""The audit trail mirrored to Kafka (README "Interception").

The Redis audit stream is the outbox of both topics: ``mirror`` sends every entry after the
stored cursor to ``DIALWATCH_AUDIT_TOPIC``, the list changes among them to
``DIALWATCH_INTERCEPTION_TOPIC``, and a breaker trip also to the alert topic; only then does it
move the cursor. Delivery is at least once: consumers drop repeats by ``event_id`` (the stream
entry id). One worker mirrors at a time (a short lock in Redis). With a ``Confirmed``
(streams.delivery), a tick retried after the cursor write failed (a Redis timeout) skips the
sends the broker already confirmed, so only a change of mirroring worker repeats entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any

import orjson

from streams.delivery import Confirmed
from streams.feed.records import decision_record
from streams.interception.store import InterceptStore

SCHEMA_VERSION = 1
# Audit events that change what switches see, and how the interceptions topic names them.
LIST_EVENTS: Mapping[str, tuple[str, str]] = {
    "add": ("add", "intercept"),
    "approve": ("add", "intercept"),
    "release": ("remove", "intercept"),
    "protect": ("add", "protect"),
    "protect_member": ("add", "protect"),
}
INT_FIELDS = ("expires_at_ms", "at_ms")
Send = Callable[[str, bytes, bytes], Awaitable[Any]]  # (topic, key, value) -> delivery future


def _iso(ms: int, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="seconds")


def audit_event(entry_id: str, fields: Mapping[str, str], tz: tzinfo) -> dict[str, Any]:
    """One audit stream entry as a ``dialwatch.audit`` message."""
    out: dict[str, Any] = {"event_id": entry_id, "schema_version": SCHEMA_VERSION}
    for name, value in fields.items():
        if name in INT_FIELDS:
            out[name] = int(value) if value else None
        else:
            out[name] = value
    if out.get("at_ms"):
        out["at"] = _iso(out["at_ms"], tz)
    if out.get("expires_at_ms"):
        out["expires_at"] = _iso(out["expires_at_ms"], tz)
    return out


def list_event(audit: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``dialwatch.interceptions`` message for an audit event, or None."""
    kind = LIST_EVENTS.get(str(audit.get("event")))
    if kind is None:
        return None
    event, list_name = kind
    out = {
        "event_id": audit["event_id"],
        "event": event,
        "list": list_name,
        "number": audit.get("number", ""),
        "detector": audit.get("detector", ""),
        "alert_id": audit.get("alert_id", ""),
        "episode_id": audit.get("episode_id", ""),
        "reason": audit.get("reason", ""),
        "actor": audit.get("actor", ""),
        "at": audit.get("at"),
        "expires_at": audit.get("expires_at") if event == "add" else None,
        "schema_version": SCHEMA_VERSION,
    }
    if list_name == "protect":
        out["caller"] = audit.get("caller", "")
    return out


def breaker_alert(audit: Mapping[str, Any], policy_version: str) -> dict[str, Any]:
    """An alert (README "Alert" schema) saying the breaker opened and why."""
    digest = hashlib.blake2b(f"breaker|{audit['event_id']}".encode(), digest_size=16).hexdigest()
    return {
        "alert_id": digest,
        "episode_id": digest,
        "number": "interception-breaker",
        "number_class": "unknown",
        "subject": "system",
        "detector": "intercept_breaker",
        "state": "raised",
        "severity": "critical",
        "action": "monitor",
        "category": "interception",
        "event_time": audit.get("at"),
        "detected_at": audit.get("at"),
        "evidence": {},
        "reasons": [audit.get("reason", "")],
        "allowlisted": False,
        "schema_version": SCHEMA_VERSION,
        "policy_version": policy_version,
    }


async def mirror(
    store: InterceptStore,
    send: Send,
    topics: tuple[str, str, str],
    tz: tzinfo,
    token: str,
    policy_version: str = "",
    limit: int = 500,
    feed: tuple[str, str] | None = None,
    confirmed: Confirmed | None = None,
) -> int:
    """Mirror the audit entries after the cursor; returns how many. ``topics``: audit,
    interceptions, alerts; ``feed``: (regulator feed topic, pseudonym key id), which gets each
    decision about a number (``streams.feed.records.decision_record``). ``send`` returns a
    future that resolves when the broker confirms; ``confirmed``: the (topic, entry) sends
    confirmed before, not sent again."""
    if not await store.mirror_lock(token):
        return 0
    cursor = await store.mirror_cursor()
    rows = await store.audit(f"({cursor}", limit)
    if not rows:
        return 0
    audit_topic, list_topic, alert_topic = topics
    pending = []
    for entry_id, fields in rows:
        event = audit_event(entry_id, fields, tz)
        key = str(event.get("number", "")).encode()

        async def once(topic: str, key: bytes, value: bytes, entry: str = entry_id) -> Any:
            if confirmed is None:
                return await send(topic, key, value)
            return await confirmed.once(f"{topic} {entry}", lambda: send(topic, key, value))

        pending.append(await once(audit_topic, key, orjson.dumps(event)))
        change = list_event(event)
        if change is not None:
            pending.append(await once(list_topic, key, orjson.dumps(change)))
        if feed is not None:
            record = decision_record(event, feed[1])
            if record is not None:
                value = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
                pending.append(await once(feed[0], key, value))
        if event.get("event") == "breaker":
            alert = breaker_alert(event, policy_version)
            pending.append(await once(alert_topic, b"interception-breaker", orjson.dumps(alert)))
    for future in pending:
        await future
    await store.set_mirror_cursor(rows[-1][0])
    return len(rows)
