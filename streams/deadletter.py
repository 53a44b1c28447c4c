"""Dead letters: a rejected record's original bytes, why it was rejected and where it came
from, as one message on the dead-letter topic (README "Determinism and delivery")."""

from __future__ import annotations

from streams.cdr import Reject

# Faust's producer sends requests of at most 1,000,000 bytes; a dead letter must fit in one with
# its headers, or its send would fail for ever and stall the partition.
DEAD_LETTER_MAX_BYTES = 900_000


def dead_letter(value: bytes, reject: Reject, source: str) -> tuple[bytes, dict[str, bytes]]:
    """The dead-letter message of a rejected record: the original bytes and why, with
    ``source`` (topic/partition/offset) pointing at the original. Bytes beyond
    DEAD_LETTER_MAX_BYTES are cut, and ``truncated`` gives the original length."""
    headers = {
        "reason": reject.reason.encode(),
        "detail": reject.detail.encode(),
        "source": source.encode(),
    }
    if len(value) > DEAD_LETTER_MAX_BYTES:
        headers["truncated"] = str(len(value)).encode()
        value = value[:DEAD_LETTER_MAX_BYTES]
    return value, headers
