"""The repartition topic's wire (README "Batches and partitions"): CDRs admitted on a CDR
partition other than their normalised caller's go there as ``[source partition, [cdr, ...]]``
messages, one per target partition per batch, each CDR as its parsed fields in order."""

from __future__ import annotations

from dataclasses import astuple

import orjson

from streams.cdr import CDR, Reject
from streams.items import Rekeyed
from streams.topics import partition_for

MAX_CDRS_PER_MESSAGE = 2000  # about 300 KB of JSON: well under Kafka's 1 MB default request
N_FIELDS = len(astuple(CDR("", "", "", 0, 0, False)))


def rekeyed_messages(
    moved: list[CDR], source: int, partitions: int, chunk: int = MAX_CDRS_PER_MESSAGE
) -> list[tuple[int, bytes]]:
    """``(target partition, [source, [cdr...]])``: per target, as few messages as the size cap
    allows, CDRs in their order of arrival."""
    by_target: dict[int, list[tuple[object, ...]]] = {}
    for cdr in moved:
        target = partition_for(cdr.caller.encode(), partitions)
        by_target.setdefault(target, []).append(astuple(cdr))
    return [
        (target, orjson.dumps([source, items[i : i + chunk]]))
        for target, items in by_target.items()
        for i in range(0, len(items), chunk)
    ]


def decode_rekeyed(value: bytes | None) -> list[Rekeyed | Reject]:
    """The worker wrote these; a message it cannot read is rejected whole, never guessed at."""
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return [Reject("malformed_json", "repartition message is not JSON")]
    if not (isinstance(doc, list) and len(doc) == 2 and type(doc[0]) is int and doc[0] >= 0):
        return [Reject("not_an_object", "repartition message is not [source, [cdrs]]")]
    source, items = doc
    if not isinstance(items, list):
        return [Reject("not_an_object", "repartition CDRs are not an array")]
    out: list[Rekeyed | Reject] = []
    for item in items:
        if not (isinstance(item, list) and len(item) == N_FIELDS):
            out.append(Reject("not_an_object", "repartition CDR is not its field list"))
            continue
        out.append(Rekeyed(source, CDR(*item)))
    return out
