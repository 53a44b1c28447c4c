"""Feed records: what leaves dialwatch for regulators (README "Regulator feed").

Pure functions from an alert (its topic JSON) or an audit event (``dialwatch.audit`` JSON) to a
feed record, or None when the event is not about a flagged number. Only the flagged number is
written in clear: victims, callees, blocks, trunks and members never enter a record, and an
alert's evidence is reduced to its counts. A leak candidate (``leak_records``, from a campaign's
record on the leak-candidates topic) names the business and the campaign's own numbers, with
counts only: no victim.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

SCHEMA_VERSION = 1
RECORD_TYPES = ("alert", "decision", "leak_candidate")
# Audit events about a number's interception, and the state each leaves it in. A "clear"
# keeps the entry until its expiry: the state says the episode ended.
DECISION_STATES: Mapping[str, str] = {
    "add": "active",
    "extend": "active",
    "approve": "active",
    "pending": "pending",
    "reject": "released",
    "release": "released",
    "allowlist": "released",
    "withheld": "withheld",
    "clear": "cleared",
}


def canonical(value: object) -> bytes:
    """One byte form per value: sorted keys, no spaces (orjson), so digests and exports are
    reproducible."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def evidence_digest(alert_id: str, counts: Mapping[str, int | float], reasons: list[str]) -> str:
    """``sha256:`` + hex over the alert's id, counts and reasons: a regulator holding the
    operator's evidence can check it is what the feed was built from."""
    body = canonical({"alert_id": alert_id, "counts": counts, "reasons": reasons})
    return "sha256:" + hashlib.sha256(body).hexdigest()


def is_flagging(alert: Mapping[str, Any]) -> bool:
    """A calling number the worker asked to intercept (allowlisted ones only get monitor)."""
    return (
        alert.get("subject") == "number"
        and alert.get("action") == "intercept"
        and not alert.get("allowlisted")
        and not str(alert.get("number", "")).startswith("ps:")
    )


def alert_record(alert: Mapping[str, Any], key_id: str) -> dict[str, Any] | None:
    """The feed record of an alert that flags a number, else None."""
    if not is_flagging(alert):
        return None
    raw = alert.get("evidence") or {}
    counts = {
        str(k): v
        for k, v in sorted(raw.items())
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    reasons = [str(r) for r in alert.get("reasons") or ()]
    alert_id = str(alert["alert_id"])
    return {
        "record_type": "alert",
        "record_id": f"alert:{alert_id}",
        "schema_version": SCHEMA_VERSION,
        "number": str(alert["number"]),
        "number_type": str(alert.get("number_class", "unknown")),
        "category": str(alert.get("category", "")),
        "detector": str(alert.get("detector", "")),
        "alert_id": alert_id,
        "episode_id": str(alert.get("episode_id", "")),
        "state": str(alert.get("state", "")),
        "severity": str(alert.get("severity", "")),
        "action": "intercept",
        "event_time": alert.get("event_time"),
        "detected_at": alert.get("detected_at"),
        "counts": counts,
        "reasons": reasons,
        "evidence_digest": evidence_digest(alert_id, counts, reasons),
        "policy_version": str(alert.get("policy_version", "")),
        "pseudonym_key_id": key_id,
    }


def decision_record(audit: Mapping[str, Any], key_id: str) -> dict[str, Any] | None:
    """The feed record of an audit event about a number's interception, else None
    (protection entries name victims; breaker events name no number)."""
    event = str(audit.get("event", ""))
    number = str(audit.get("number", ""))
    if event not in DECISION_STATES or not number or number.startswith("ps:"):
        return None
    return {
        "record_type": "decision",
        "record_id": f"decision:{audit.get('event_id', '')}",
        "schema_version": SCHEMA_VERSION,
        "number": number,
        "event": event,
        "interception_state": DECISION_STATES[event],
        "actor": str(audit.get("actor", "")),
        "reason": str(audit.get("reason", "")),
        "kind": str(audit.get("kind", "")),
        "alert_id": str(audit.get("alert_id", "")),
        "episode_id": str(audit.get("episode_id", "")),
        "detector": str(audit.get("detector", "")),
        "at": audit.get("at"),
        "at_ms": audit.get("at_ms"),
        "expires_at": audit.get("expires_at"),
        "pseudonym_key_id": key_id,
    }


def leak_records(campaign: Mapping[str, Any], key_id: str) -> list[dict[str, Any]]:
    """One feed record per leak candidate of a reportable campaign record
    (docs/leak-candidates.schema.json); none below the minimum victim count. The id names the
    campaign, the business and the record's digest, so a campaign that grew gives new records
    and a repeated one the same."""
    candidates = campaign.get("candidates")
    if not campaign.get("reportable") or not isinstance(candidates, list):
        return []
    cid = str(campaign.get("campaign_id", ""))
    digest = hashlib.sha256(canonical(dict(campaign))).hexdigest()[:16]
    out = []
    for rank, c in enumerate(candidates, 1):
        if not isinstance(c, Mapping):
            continue
        business = str(c.get("number", ""))
        out.append(
            {
                "record_type": "leak_candidate",
                "record_id": f"leak_candidate:{cid}:{business}:{digest}",
                "schema_version": SCHEMA_VERSION,
                "number": business,  # the business: the only number besides the members
                "campaign_id": cid,
                "rank": rank,
                "campaign_members": [str(m) for m in campaign.get("members") or ()],
                "campaign_size": campaign.get("size"),
                "victims": campaign.get("victims"),
                "first_activity": campaign.get("first_activity"),
                "last_activity": campaign.get("last_activity"),
                "days": campaign.get("days"),
                "counts": {
                    k: c[k] for k in sorted(c) if k != "number" and isinstance(c[k], int | float)
                },
                "pseudonym_key_id": key_id,
            }
        )
    return out
