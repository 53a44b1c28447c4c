"""Complaint reports: an input signal from the complaint centre (topic ``complaints``).

A report names a number, a category and when it was reported. It does not flag anybody by
itself: it tightens the number's thresholds (policy ``[complaints] factor``) for the policy's
horizon and gives the number's alerts the reported category. Reports are stored with the
number's partition (the partition its CDRs arrive on: the input is keyed by caller with Kafka's
default partitioner), kept per number in a small bounded list, and counted once per
``complaint_id``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import orjson

from config.numbering import NumberingPlan, normalise
from streams.cdr import MAX_ID_LEN, MAX_MESSAGE_BYTES, Reject, parse_start_ms

CATEGORIES = (
    "loan_finance",
    "debt_collection",
    "call_bombing",
    "fraud",
    "telemarketing",
    "other",
)
MAX_PER_NUMBER = 8  # newest reports kept per number


@dataclass(frozen=True, slots=True)
class Complaint:
    complaint_id: str
    number: str  # normalised
    category: str  # one of CATEGORIES
    reported_ms: int

    def id_hash(self) -> int:
        return int.from_bytes(hashlib.blake2b(self.complaint_id.encode(), digest_size=6).digest())


def parse_complaint(obj: object, plan: NumberingPlan) -> Complaint | Reject:
    if not isinstance(obj, Mapping):
        return Reject("not_an_object", "a complaint is a JSON object")
    cid = obj.get("complaint_id")
    if not isinstance(cid, str) or not 0 < len(cid) <= MAX_ID_LEN:
        return Reject("bad_id", "complaint_id must be a non-empty string of at most 128 chars")
    raw = obj.get("number")
    number = normalise(raw, plan) if isinstance(raw, str) and len(raw) <= 40 else None
    if number is None:
        return Reject("bad_number", "number is not a phone number")
    category = obj.get("category")
    if category not in CATEGORIES:
        return Reject("bad_type", f"category must be one of {', '.join(CATEGORIES)}")
    reported = parse_start_ms(obj.get("reported_at"))
    if isinstance(reported, Reject):
        return Reject("bad_time", "reported_at must be ISO-8601 with an offset or epoch seconds")
    return Complaint(cid, number, str(category), reported)


def decode_complaints(value: bytes | None, plan: NumberingPlan) -> list[Complaint | Reject]:
    """One Kafka message: a complaint object or an array of them."""
    if not value:
        return [Reject("malformed_json", "empty message")]
    if len(value) > MAX_MESSAGE_BYTES:
        return [Reject("too_large", f"message of {len(value)} bytes")]
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return [Reject("malformed_json", "complaint message is not JSON")]
    items = doc if isinstance(doc, list) else [doc]
    return [parse_complaint(item, plan) for item in items]


# A number's stored reports: [[id hash, reported ms, category index], ...], oldest first.
Stored = list[list[int]]


def merge(blob: bytes | None, new: list[Complaint], horizon_ms: int) -> bytes:
    """Add ``new`` to a stored list: once per id, within the horizon of the newest, bounded."""
    stored: Stored = orjson.loads(blob) if blob else []
    ids = {entry[0] for entry in stored}
    for c in new:
        if c.id_hash() not in ids:
            ids.add(c.id_hash())
            stored.append([c.id_hash(), c.reported_ms, CATEGORIES.index(c.category)])
    stored.sort(key=lambda e: e[1])
    newest = stored[-1][1] if stored else 0
    kept = [e for e in stored if e[1] >= newest - horizon_ms][-MAX_PER_NUMBER:]
    return orjson.dumps(kept)


@dataclass(frozen=True, slots=True)
class Reports:
    """A number's reports as the engine reads them at one event time."""

    count: int
    category: str | None  # the latest report's category


def active(blob: bytes | None, at_ms: int, horizon_ms: int) -> Reports:
    """The reports made at or before ``at_ms`` and no older than the horizon."""
    if not blob:
        return Reports(0, None)
    live = [e for e in orjson.loads(blob) if at_ms - horizon_ms <= e[1] <= at_ms]
    if not live:
        return Reports(0, None)
    return Reports(len(live), CATEGORIES[live[-1][2]])


async def record(
    store: ComplaintStore, partition: int, complaints: list[Complaint], horizon_ms: int
) -> None:
    """Merge reports into the store: read, merge, compare-and-swap, retried on a race."""
    by_number: dict[str, list[Complaint]] = {}
    for c in complaints:
        by_number.setdefault(c.number, []).append(c)
    for _ in range(50):
        current = await store.complaint_blobs(partition, list(by_number))
        new = {n: merge(current.get(n), cs, horizon_ms) for n, cs in by_number.items()}
        if await store.swap_complaints(partition, current, new):
            return
    raise RuntimeError(f"partition {partition}: complaint reports kept changing; retry later")


class ComplaintStore(Protocol):
    async def complaint_blobs(
        self, partition: int, numbers: list[str]
    ) -> dict[str, bytes | None]: ...

    async def swap_complaints(
        self, partition: int, expected: dict[str, bytes | None], new: dict[str, bytes]
    ) -> bool: ...
