"""``dialwatch trace-leaks``: campaigns and their leak candidates over CDR files, as JSON Lines.

Reads files as ``scan`` does (streams.files), groups callers into campaigns
(detectors.campaigns) and ranks the business numbers their victims had contacted before the
first call (detectors.leak_sources). Subscriber numbers are replaced by keyed hashes as they are
read; the output names only campaign members, business numbers and aggregate counts.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TextIO

import orjson

from config.numbering import NumberClass, NumberingPlan, classify
from config.settings import Settings
from detectors.campaigns import (
    CampaignGroup,
    GroupingPolicy,
    SketchBuilder,
    group,
    keyed_hash,
    members_to_intercept,
)
from detectors.leak_sources import Candidate, ContactRecord, ExactContacts, LeakPolicy, rank
from streams.cdr import Reject
from streams.errors import InputError
from streams.files import RejectLog, read_located, read_text
from streams.formats import Format

SCHEMA_VERSION = 1
BUSINESS_CLASSES = frozenset(
    {NumberClass.SERVICE, NumberClass.CALL_CENTRE, NumberClass.HOTLINE, NumberClass.FIXED}
)
SUBSCRIBER_CLASSES = frozenset({NumberClass.MOBILE, NumberClass.MVNO})

# (start ms, caller, callee, answered): normalised numbers, held only while the command runs
Call = tuple[int, str, str, bool]


@dataclass(frozen=True, slots=True)
class TraceOptions:
    key: bytes
    leak: LeakPolicy = field(default_factory=LeakPolicy)
    grouping: GroupingPolicy = field(default_factory=GroupingPolicy)
    # A number of another class counts as a business once this many distinct subscribers
    # called it.
    business_min_contacts: int = 50
    flagged: frozenset[str] | None = None  # numbers with intercept alerts (--alerts)
    intercept_share: float = 0.5
    intercept_min_flagged: int = 2


def trace(
    calls: Sequence[Call], plan: NumberingPlan, options: TraceOptions, tz: tzinfo = UTC
) -> list[dict[str, object]]:
    """One dict per campaign, earliest first (the JSON Lines records)."""
    hashes: dict[str, int] = {}

    def h(number: str) -> int:
        value = hashes.get(number)
        if value is None:
            value = hashes[number] = keyed_hash(number, options.key)
        return value

    classes: dict[str, NumberClass] = {}

    def cls(number: str) -> NumberClass:
        value = classes.get(number)
        if value is None:
            value = classes[number] = classify(number, plan)
        return value

    builders: dict[str, SketchBuilder] = {}
    inbound: dict[str, set[int]] = defaultdict(set)  # bounded: stops at the threshold
    limit = options.business_min_contacts
    for at, caller, callee, answered in calls:
        builder = builders.get(caller)
        if builder is None:
            builder = builders[caller] = SketchBuilder(caller)
        builder.add(h(callee), at, answered)
        if cls(caller) in SUBSCRIBER_CLASSES:
            seen = inbound[callee]
            if len(seen) < limit:
                seen.add(h(caller))

    campaigns = group((b.freeze() for b in builders.values()), options.grouping)
    member_of = {m: c.campaign_id for c in campaigns for m in c.members}
    businesses = {
        n
        for n in set(classes) | set(inbound)
        if n not in member_of and (cls(n) in BUSINESS_CLASSES or len(inbound.get(n, ())) >= limit)
    }

    contacts: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    victims: dict[str, dict[int, int]] = defaultdict(dict)
    population: set[int] = set()
    for at, caller, callee, _ in calls:
        if caller in member_of:
            first = victims[member_of[caller]]
            v = h(callee)
            first[v] = min(at, first.get(v, at))
            continue
        if cls(caller) in SUBSCRIBER_CLASSES:
            population.add(h(caller))
            if callee in businesses:
                contacts[callee][h(caller)].append(at)
        if caller in businesses and cls(callee) in SUBSCRIBER_CLASSES:
            contacts[caller][h(callee)].append(at)
    records: dict[str, ContactRecord] = {
        number: ExactContacts({s: sorted(t) for s, t in by.items()})
        for number, by in contacts.items()
    }

    out: list[dict[str, object]] = []
    for campaign in campaigns:
        hit = victims[campaign.campaign_id]
        candidates = rank(hit, records, len(population), options.leak)
        out.append(campaign_record(campaign, len(hit), candidates, options.leak, tz))
        if options.flagged is not None:
            members = campaign.members
            out[-1]["flagged"] = sum(1 for m in members if m in options.flagged)
            out[-1]["intercept_rest"] = list(
                members_to_intercept(
                    members, options.flagged, options.intercept_share, options.intercept_min_flagged
                )
            )
    return out


def campaign_record(
    campaign: CampaignGroup,
    victims: int,
    candidates: Sequence[Candidate],
    leak: LeakPolicy,
    tz: tzinfo,
) -> dict[str, object]:
    """A campaign's record (docs/leak-candidates.schema.json), the offline command's and the
    worker's alike."""
    return {
        "schema_version": SCHEMA_VERSION,
        "campaign_id": campaign.campaign_id,
        "members": list(campaign.members),
        "size": len(campaign.members),
        "victims": victims,
        "calls": campaign.calls,
        "first_activity": _iso(campaign.first_ms, tz),
        "last_activity": _iso(campaign.last_ms, tz),
        "days": leak.days,
        "reportable": victims >= leak.min_victims,
        "candidates": [c.as_dict() for c in candidates],
    }


def flagged_numbers(path: str) -> frozenset[str]:
    """Numbers with a raised or escalated ``intercept`` alert in a file of alerts (JSON Lines,
    as ``dialwatch scan`` writes them); InputError on a line that is not an alert."""
    numbers: set[str] = set()
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            alert = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{path}:{n}: not JSON ({exc})") from exc
        if not isinstance(alert, dict) or "action" not in alert or "number" not in alert:
            raise InputError(f"{path}:{n}: not an alert (no action or number)")
        if (
            alert["action"] == "intercept"
            and alert.get("subject", "number") == "number"
            and alert.get("state") != "cleared"
        ):
            numbers.add(str(alert["number"]))
    return frozenset(numbers)


def _iso(ms: int, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="seconds")


def read_calls(
    paths: Iterable[str],
    plan: NumberingPlan,
    tz: tzinfo | None,
    fmt: Format | None,
    totals: Counter[str],
    rejects: RejectLog | None = None,
) -> list[Call]:
    """Every valid record's call, sorted by start time; rejects and unasserted identities
    (attestation C: the presented number is not the caller) are counted, not used."""
    calls: list[Call] = []
    for path in paths:
        for line, rec in read_located(path, plan, tz, fmt):
            if isinstance(rec, Reject):
                totals[f"rejected:{rec.reason}"] += 1
                if rejects is not None:
                    rejects.write(path, line, rec)
            elif rec.attestation == "C":
                totals["unasserted"] += 1
            else:
                calls.append((rec.start_ms, rec.caller, rec.callee, rec.answered))
    totals["accepted"] = len(calls)
    calls.sort(key=lambda c: c[0])
    return calls


def write_jsonl(records: Iterable[dict[str, object]], out: TextIO) -> int:
    n = 0
    for record in records:
        out.write(orjson.dumps(record).decode() + "\n")
        n += 1
    out.flush()
    return n


def run(
    paths: Sequence[str],
    plan: NumberingPlan,
    options: TraceOptions,
    tz: tzinfo,
    fmt: Format | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    rejects: RejectLog | None = None,
) -> list[dict[str, object]]:
    """The command: JSON Lines on ``out``, a one-line summary on ``err``; returns the records.
    InputError when no record was usable."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    totals: Counter[str] = Counter()
    calls = read_calls(paths, plan, tz, fmt, totals, rejects)
    if not calls:
        names = ", ".join("standard input" if p == "-" else p for p in paths)
        raise InputError(f"no usable CDRs in {names}")
    result = trace(calls, plan, options, tz)
    n = write_jsonl(result, out)
    rejected = sum(v for k, v in totals.items() if k.startswith("rejected:"))
    with_candidates = sum(1 for r in result if r["candidates"])
    err.write(
        f"trace-leaks: {totals['accepted']:,} records, {rejected:,} rejected,"
        f" {totals['unasserted']:,} unasserted; {n} campaigns, {with_candidates} with leak"
        " candidates\n"
    )
    return result


def publish(records: Sequence[dict[str, object]], settings: Settings) -> int:
    """Produce each campaign to ``settings.leak_candidates_topic``, keyed by campaign_id (the
    topic is created when missing); raises when the broker did not take every message."""
    from kafka import KafkaProducer  # type: ignore[import-untyped, unused-ignore]

    from streams.security import kafka_python_kwargs
    from streams.topics import create_topics

    options = kafka_python_kwargs(settings)
    topic = settings.leak_candidates_topic
    create_topics(settings.kafka, {topic: settings.topic_partitions}, kafka_options=options)
    producer = KafkaProducer(bootstrap_servers=settings.kafka, acks="all", **options)
    errors: list[BaseException] = []
    try:
        for record in records:
            key = str(record["campaign_id"]).encode()
            producer.send(topic, value=orjson.dumps(record), key=key).add_errback(errors.append)
        producer.flush()
    finally:
        producer.close()
    if errors:
        raise RuntimeError(f"{len(errors)} leak-candidate messages failed") from errors[0]
    return len(records)
