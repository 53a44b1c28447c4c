"""What a batch of the engine holds and gives: its items (``Item``, ``Rekeyed``), its
``Outcome`` and the ``Prepared`` write, and how subjects are keyed in the store."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from detectors.alerts import Alert
from streams.cdr import CDR, Reject
from streams.observe import Obs
from streams.reorder import Progress
from streams.state.base import Changes


@dataclass(frozen=True, slots=True)
class Rekeyed:
    """A CDR that arrived on CDR partition ``source`` and was re-keyed to its caller's partition
    through the repartition topic (README "Batches and partitions"). Admitted at ``source``."""

    source: int
    cdr: CDR


# (message offset, record). A CDR is read as its caller's observation (streams.observe);
# None advances the offset with nothing for this stage (a spoofed call seen by stage 1);
# a Progress (stage 2) is a source's progress, after the observations of its message.
Item = tuple[int, CDR | Rekeyed | Obs | Progress | Reject | None]

CALLER_KINDS = frozenset({"number"})
DERIVED_KINDS = frozenset({"callee", "block", "trunk"})


@dataclass(slots=True)
class Outcome:
    alerts: list[Alert] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    replayed: int = 0
    to_trunk: int = 0  # CDRs with an unasserted identity: counted for their trunk, in stage 2
    rejects: list[tuple[int, Reject]] = field(default_factory=list)
    numbers: int = 0
    watermark_ms: int = 0
    # Stage 1: the CDRs that arrived here and were admitted (its own callers, unasserted
    # identities and moved CDRs alike), in order: only these are forwarded to stage 2, so a
    # CDR rejected here is rejected once, and each goes to stage 2 once, from where it arrived.
    admitted: list[CDR] = field(default_factory=list)
    # and, for each, the partition's front before it (``Obs.after_ms``: a late CDR's place).
    fronts: list[int] = field(default_factory=list)
    # Stage 1 with re-keying: admitted CDRs whose caller belongs to another partition, in
    # order, for the repartition topic (the target partition applies them to its state).
    moved: list[CDR] = field(default_factory=list)
    # Stage 1: the newest start_time that arrived on the partition (the front it tells stage
    # 2, streams.reorder.Progress).
    front_ms: int = 0
    # Stage 2: the observations this batch applied, in canonical order (streams.reorder),
    # and how many remain held back, and how many were released early (over the cap).
    released: list[Obs] = field(default_factory=list)
    held: int = 0
    forced: int = 0

    def reject_counts(self) -> Counter[str]:
        return Counter(r.reason for _, r in self.rejects)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch detected but not yet written (``Engine.prepare``): its outcome, and the fenced
    write that applies it, which ``Engine.commit`` makes. ``changes`` is None when the batch
    held nothing new (every offset already applied): there is nothing to write."""

    partition: int
    outcome: Outcome
    expected_offset: int  # the stored offset the batch was computed from (the write's fence)
    changes: Changes | None
    expected_rekeyed: int = -1  # and the stored repartition-input offset (fenced as well)
    # Stage 2: the (caller, callee, epoch s) of the batch's callee observations, noted in the
    # contact circles just before the batch's fenced write (streams.circles).
    contacts: list[tuple[str, str, int]] = field(default_factory=list)


def id_hash(cdr_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(cdr_id.encode(), digest_size=8).digest()) >> 1


def store_key(kind: str, subject: str) -> str:
    return subject if kind == "number" else f"{kind}:{subject}"


def split_key(key: str) -> tuple[str, str]:
    kind, sep, subject = key.partition(":")
    return (kind, subject) if sep else ("number", key)
