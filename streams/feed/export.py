"""``dialwatch feed export``: the period's flagged numbers, one row each, and the leak
candidates of the campaigns active in it, reproducibly.

Pure: records in, bytes out. A row is built from every ``alert`` record of the number whose
event time falls in ``[since, until)`` and every ``decision`` record about those alerts'
episodes (or about the number alone, such as an allowlisting). Records are de-duplicated by
``record_id`` (the feed is at least once) and everything is sorted, so the same records give
the same bytes in any order, however often repeated.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from streams.feed.period import to_ms
from streams.feed.records import SCHEMA_VERSION, canonical

EXPORT_SCHEMA_VERSION = 1
FORMATS = ("csv", "jsonl")
COUNTS = ("window_calls", "answered", "short_answered", "unallocated", "distinct", "sequential")
COLUMNS = (
    "record_type",
    "number",
    "number_type",
    "categories",
    "first_seen",
    "last_seen",
    "alerts",
    *COUNTS,
    "member_calls",
    "detectors",
    "action",
    "interception_state",
    "approved_by",
    "released_by",
    "release_kind",
    "last_decision_at",
    "evidence_digest",
    "alert_ids",
)
LEAK_COUNTS = (
    "victims_contacted",
    "victim_share",
    "base_contacted",
    "population",
    "base_share",
    "lift",
    "log10_p",
    "p_value",
)
LEAK_COLUMNS = (
    "record_type",
    "campaign_id",
    "number",
    "rank",
    "campaign_size",
    "victims",
    "first_activity",
    "last_activity",
    "days",
    *LEAK_COUNTS,
    "campaign_members",
)
# A later decision wins; events at the same time keep the audit stream's order (its id).
ACTORS = {"approve": "approved_by", "release": "released_by", "reject": "released_by"}


def event_ms(record: Mapping[str, Any]) -> int | None:
    text = record.get("event_time")
    if not isinstance(text, str):
        return None
    try:
        return to_ms(datetime.fromisoformat(text))
    except ValueError:
        return None


def unique(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One record per ``record_id``, the smallest in canonical form when ids repeat with
    different bodies (never expected: records are deterministic)."""
    by_id: dict[str, Mapping[str, Any]] = {}
    for record in records:
        rid = str(record.get("record_id", ""))
        kept = by_id.get(rid)
        if kept is None or canonical(record) < canonical(kept):
            by_id[rid] = record
    return [by_id[k] for k in sorted(by_id)]


def _order(entry_id: str) -> tuple[int, int]:
    """Redis stream ids ``ms-seq`` as numbers (``decision:`` stripped)."""
    raw = entry_id.removeprefix("decision:")
    ms, _, seq = raw.partition("-")
    return (int(ms) if ms.isdigit() else 0, int(seq) if seq.isdigit() else 0)


def rows(
    records: Iterable[Mapping[str, Any]], since_ms: int, until_ms: int
) -> list[dict[str, Any]]:
    """The export rows for ``[since_ms, until_ms)``, sorted by number."""
    alerts: dict[str, list[Mapping[str, Any]]] = {}
    decisions: dict[str, list[Mapping[str, Any]]] = {}
    for record in unique(records):
        kind = record.get("record_type")
        if kind == "alert":
            at = event_ms(record)
            if at is not None and since_ms <= at < until_ms:
                alerts.setdefault(str(record["number"]), []).append(record)
        elif kind == "decision":
            decisions.setdefault(str(record["number"]), []).append(record)
    out = []
    for number in sorted(alerts):
        out.append(_row(number, alerts[number], decisions.get(number, [])))
    return out


def _row(
    number: str, alerts: Sequence[Mapping[str, Any]], decisions: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    alerts = sorted(alerts, key=lambda a: (event_ms(a) or 0, str(a["alert_id"])))
    episodes = {str(a.get("episode_id", "")) for a in alerts}
    busiest = max(alerts, key=lambda a: (a["counts"].get("window_calls", 0), str(a["alert_id"])))
    mine = sorted(
        (d for d in decisions if d.get("episode_id") in episodes or not d.get("episode_id")),
        key=lambda d: _order(str(d.get("record_id", ""))),
    )
    row: dict[str, Any] = {
        "record_type": "flagged_number",
        "number": number,
        "number_type": str(alerts[-1].get("number_type", "")),
        "categories": sorted({str(a.get("category", "")) for a in alerts} - {""}),
        "first_seen": alerts[0].get("event_time"),
        "last_seen": alerts[-1].get("event_time"),
        "alerts": len(alerts),
    }
    for name in COUNTS:
        row[name] = busiest["counts"].get(name, 0)
    row["member_calls"] = max(a["counts"].get("member_calls", 0) for a in alerts)
    row["detectors"] = sorted({str(a.get("detector", "")) for a in alerts})
    row["action"] = "intercept"
    row["interception_state"] = str(mine[-1]["interception_state"]) if mine else "none"
    row["approved_by"] = row["released_by"] = row["release_kind"] = ""
    for d in mine:
        field = ACTORS.get(str(d.get("event")))
        if d.get("event") == "allowlist":
            field = "released_by"
        if field is not None:
            row[field] = str(d.get("actor", ""))
            if field == "released_by":
                row["release_kind"] = str(d.get("kind", "")) or str(d.get("event"))
    row["last_decision_at"] = mine[-1].get("at") if mine else None
    digests = sorted(str(a.get("evidence_digest", "")) for a in alerts)
    row["evidence_digest"] = "sha256:" + hashlib.sha256("\n".join(digests).encode()).hexdigest()
    row["alert_ids"] = [str(a["alert_id"]) for a in alerts]
    row["schema_version"] = EXPORT_SCHEMA_VERSION
    return row


def leak_rows(
    records: Iterable[Mapping[str, Any]], since_ms: int, until_ms: int
) -> list[dict[str, Any]]:
    """The leak candidates of campaigns active in ``[since_ms, until_ms)`` (first activity
    before its end, last at or after its start): per campaign, the candidates of its latest
    record (the one with the latest last activity, then most victims, then record id), sorted
    by campaign and rank."""
    latest: dict[str, list[Mapping[str, Any]]] = {}
    for record in unique(records):
        if record.get("record_type") != "leak_candidate":
            continue
        first, last = _ms(record.get("first_activity")), _ms(record.get("last_activity"))
        if first is None or last is None or not (first < until_ms and last >= since_ms):
            continue
        cid = str(record.get("campaign_id", ""))
        state = str(record["record_id"]).rsplit(":", 1)[-1]
        key = (last, int(record.get("victims") or 0), state)
        kept = latest.get(cid)
        if kept:
            k0 = kept[0]
            known = (
                _ms(k0.get("last_activity")) or 0,
                int(k0.get("victims") or 0),
                str(k0["record_id"]).rsplit(":", 1)[-1],
            )
            if key < known:
                continue
            if key > known:
                kept = []
        latest[cid] = [*(kept or []), record]
    out = []
    for cid in sorted(latest):
        for record in sorted(
            latest[cid], key=lambda r: (int(r.get("rank") or 0), str(r["number"]))
        ):
            counts = record.get("counts") or {}
            row: dict[str, Any] = {
                "record_type": "leak_candidate",
                "campaign_id": cid,
                "number": str(record["number"]),
                "rank": record.get("rank"),
                "campaign_size": record.get("campaign_size"),
                "victims": record.get("victims"),
                "first_activity": record.get("first_activity"),
                "last_activity": record.get("last_activity"),
                "days": record.get("days"),
            }
            for name in LEAK_COUNTS:
                row[name] = counts.get(name)
            row["campaign_members"] = [str(m) for m in record.get("campaign_members") or ()]
            row["schema_version"] = EXPORT_SCHEMA_VERSION
            out.append(row)
    return out


def _ms(text: object) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return to_ms(datetime.fromisoformat(text))
    except ValueError:
        return None


def encode(table: Sequence[Mapping[str, Any]], fmt: str, columns: Sequence[str] = COLUMNS) -> bytes:
    """CSV (a header, lists joined with ``|``, LF line ends) or JSON Lines (sorted keys)."""
    if fmt == "jsonl":
        return b"".join(canonical(dict(row)) + b"\n" for row in table)
    if fmt != "csv":
        raise ValueError(f"unknown format {fmt!r}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in table:
        writer.writerow([_cell(row.get(name)) for name in columns])
    return buffer.getvalue().encode()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "|".join(str(v) for v in value)
    return str(value)


def manifest(
    data: bytes, *, name: str, fmt: str, since: str, until: str, records: int, source: str
) -> dict[str, Any]:
    """What the export holds and its checksum; no wall-clock time, so it is reproducible."""
    return {
        "manifest_version": 1,
        "file": name,
        "format": fmt,
        "since": since,
        "until": until,
        "rows": records,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "export_schema_version": EXPORT_SCHEMA_VERSION,
        "feed_schema_version": SCHEMA_VERSION,
        "source": source,
    }
