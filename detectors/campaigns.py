"""Campaigns: numbers working one list, recognised by the overlap of the callees they dial.

A campaign rotates through numbers (often from one numbering block) to stay under per-number
thresholds, but the numbers keep dialling the same list, so their callee sets overlap far more
than two unrelated callers' do. Each caller keeps a bottom-k MinHash sketch of its distinct
callees: the ``K`` smallest keyed 64-bit hashes (``keyed_hash``) of the numbers it dialled, never
the numbers. Two sketches estimate the Jaccard overlap of the two callee sets::

    a:  3 9 14 20 31 ...          union's K smallest: 3 5 9 12 14 20 ...
    b:  5 9 12 14 20 ...          in both: 9 14 20 ...   J ~ |in both| / |union's K smallest|

Below ``K`` distinct callees the sketch holds every hash and the estimate is exact. A sketch is a
function of the set of callees, never of the order calls came in, so grouping is reproducible
whatever the interleaving. Memory per caller: ``K`` (128) 8-byte hashes plus five counters, about
1.1 KiB at most.

Two eligible callers (at least ``min_distinct`` callees, at most ``max_answer_share`` answered)
are linked when their estimated overlap reaches ``min_similarity`` with at least ``min_shared``
sketch entries in common, or, from one numbering block, a lower ``block_similarity``; and
when their active spans lie within ``max_gap_ms`` of each other (timing
affinity). Campaigns are the connected groups of at least ``min_members`` callers; a campaign's id
is derived from its earliest member (first call, then number), so it does not change as later
numbers join. A linked group then joins a larger campaign whose members' callees hold at least
``attach_containment`` of its own (union over overlapping groups), and a tail, a number with
fewer than ``min_distinct`` callees (the end of a rotation, whose few calls are too little
evidence for a pairwise link but plenty against a whole campaign's list), joins the campaign
holding most of its callees, with less needed when it is from a campaign number's block.
``campaign_alert`` and ``member_alert`` are the worker's alerts of a campaign (detector
``campaign``): its own, and the ``intercept`` of a member on the campaign's evidence.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from detectors.alerts import Alert, alert_id

K = 128
DETECTOR = "campaign"  # the detector name of a campaign's alerts
_SPACE = float(1 << 64)


def keyed_hash(number: str, key: bytes) -> int:
    """A 64-bit keyed BLAKE2b hash of ``number`` (the pseudonym key): useless without the key."""
    digest = hashlib.blake2b(number.encode(), digest_size=8, key=key[:64], person=b"dw-callee")
    return int.from_bytes(digest.digest(), "big")


@dataclass(frozen=True, slots=True)
class CallerSketch:
    number: str
    mins: tuple[int, ...]  # the K smallest keyed callee hashes, ascending
    calls: int
    answered: int
    first_ms: int
    last_ms: int

    @property
    def distinct(self) -> float:
        """Distinct callees: exact below K, else the bottom-k estimate (K - 1) / kth."""
        if len(self.mins) < K:
            return float(len(self.mins))
        return (K - 1) / (self.mins[-1] / _SPACE)

    @property
    def block(self) -> str:
        return self.number[:-2]


class SketchBuilder:
    """Accumulates one caller's sketch; ``freeze`` gives the immutable value."""

    __slots__ = ("_mins", "_set", "answered", "calls", "first_ms", "last_ms", "number")

    def __init__(self, number: str) -> None:
        self.number = number
        self._mins: list[int] = []
        self._set: set[int] = set()
        self.calls = 0
        self.answered = 0
        self.first_ms = 1 << 62
        self.last_ms = -(1 << 62)

    def add(self, callee_hash: int, at_ms: int, answered: bool) -> None:
        self.calls += 1
        self.answered += answered
        self.first_ms = min(self.first_ms, at_ms)
        self.last_ms = max(self.last_ms, at_ms)
        if callee_hash in self._set:
            return
        if len(self._mins) < K:
            bisect.insort(self._mins, callee_hash)
            self._set.add(callee_hash)
        elif callee_hash < self._mins[-1]:
            self._set.discard(self._mins.pop())
            bisect.insort(self._mins, callee_hash)
            self._set.add(callee_hash)

    def freeze(self) -> CallerSketch:
        return CallerSketch(
            self.number, tuple(self._mins), self.calls, self.answered, self.first_ms, self.last_ms
        )


def similarity(a: CallerSketch, b: CallerSketch) -> tuple[float, int]:
    """(estimated Jaccard overlap of the two callee sets, sketch entries in common)."""
    union = sorted(set(a.mins) | set(b.mins))[:K]
    if not union:
        return 0.0, 0
    # The union's K smallest lie within both sketches' horizons, so absence is known.
    in_a, in_b = set(a.mins), set(b.mins)
    shared = sum(1 for h in union if h in in_a and h in in_b)
    return shared / len(union), shared


@dataclass(frozen=True, slots=True)
class GroupingPolicy:
    min_distinct: int = 6  # a caller needs this many distinct callees to be considered
    max_answer_share: float = 0.6  # and to be a dialler rather than a business calling back
    min_similarity: float = 0.08
    min_shared: int = 4
    # A caller linked to nobody joins the campaign holding this share of its sketch (at least
    # attach_shared entries): the short tail of a rotation, too small for a pairwise link.
    attach_containment: float = 0.5
    attach_shared: int = 3
    block_similarity: float = 0.02  # from one numbering block (the number less 2 digits)
    block_shared: int = 2
    max_gap_ms: int = 3 * 86_400_000  # timing affinity: active spans at most this far apart
    min_members: int = 2
    max_posting: int = 400  # a callee in more eligible sketches than this links nobody
    # Tails: numbers with fewer than min_distinct callees (the last few calls of a rotation)
    # only ever join a campaign, never link to each other.
    max_tail_calls: int = 40
    tail_calls: int = 10  # their answered share counts from this many calls on
    tail_block_shared: int = 1  # a tail from a campaign number's block: callees in common
    tail_block_containment: float = 0.3  # and the share of its callees that is


@dataclass(frozen=True, slots=True)
class CampaignGroup:
    campaign_id: str
    members: tuple[str, ...]  # ascending
    first_ms: int
    last_ms: int
    calls: int


def eligible(sketch: CallerSketch, policy: GroupingPolicy) -> bool:
    return (
        sketch.distinct >= policy.min_distinct
        and sketch.answered <= policy.max_answer_share * sketch.calls
    )


def linked(a: CallerSketch, b: CallerSketch, policy: GroupingPolicy) -> bool:
    gap = max(a.first_ms, b.first_ms) - min(a.last_ms, b.last_ms)
    if gap > policy.max_gap_ms:
        return False
    overlap, shared = similarity(a, b)
    if overlap >= policy.min_similarity and shared >= policy.min_shared:
        return True
    return (
        a.block == b.block and overlap >= policy.block_similarity and shared >= policy.block_shared
    )


def campaign_id(earliest: CallerSketch) -> str:
    digest = hashlib.blake2b(earliest.number.encode(), digest_size=6, person=b"dw-campaign")
    return "cmp-" + digest.hexdigest()


def group(sketches: Iterable[CallerSketch], policy: GroupingPolicy) -> list[CampaignGroup]:
    """The campaigns among ``sketches``, earliest first; a function of the sketches as a set."""
    everyone = list(sketches)
    pool = sorted((s for s in everyone if eligible(s, policy)), key=lambda s: s.number)
    postings: dict[int, list[int]] = defaultdict(list)
    for i, sketch in enumerate(pool):
        for h in sketch.mins:
            postings[h].append(i)
    pairs: set[tuple[int, int]] = set()
    for posting in postings.values():
        if 1 < len(posting) <= policy.max_posting:
            for x in range(len(posting)):
                for y in range(x + 1, len(posting)):
                    pairs.add((posting[x], posting[y]))
    parent = list(range(len(pool)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in sorted(pairs):
        if linked(pool[i], pool[j], policy):
            ri, rj = root(i), root(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    components: dict[int, list[CallerSketch]] = defaultdict(list)
    for i, sketch in enumerate(pool):
        components[root(i)].append(sketch)
    merged = _merge(list(components.values()), policy)
    tails = sorted((s for s in everyone if tail(s, policy)), key=lambda s: s.number)
    _attach_tails(merged, tails, policy)
    groups = []
    for members in merged:
        if len(members) < policy.min_members:
            continue
        earliest = min(members, key=lambda s: (s.first_ms, s.number))
        groups.append(
            CampaignGroup(
                campaign_id(earliest),
                tuple(sorted(s.number for s in members)),
                min(s.first_ms for s in members),
                max(s.last_ms for s in members),
                sum(s.calls for s in members),
            )
        )
    groups.sort(key=lambda g: (g.first_ms, g.campaign_id))
    return groups


def tail(sketch: CallerSketch, policy: GroupingPolicy) -> bool:
    """A number too small to be considered (fewer than ``min_distinct`` callees) that may still
    be a rotation's short tail: its answered share is only judged from ``tail_calls`` calls on
    (five calls say nothing about a dialler profile)."""
    return (
        sketch.calls <= policy.max_tail_calls
        and 0 < sketch.distinct < policy.min_distinct
        and (
            sketch.calls < policy.tail_calls
            or sketch.answered <= policy.max_answer_share * sketch.calls
        )
    )


@dataclass(slots=True)
class _Known:
    """A group's callees as far as they are known exactly: every sketch entry below the
    horizon, the smallest last entry of its full sketches (none: all of them)."""

    hashes: set[int]
    horizon: int
    first_ms: int
    last_ms: int
    blocks: frozenset[str]

    @classmethod
    def of(cls, members: list[CallerSketch]) -> _Known:
        full = [m.mins[-1] for m in members if len(m.mins) == K]
        return cls(
            {h for m in members for h in m.mins},
            min(full) if full else 1 << 64,
            min(m.first_ms for m in members),
            max(m.last_ms for m in members),
            frozenset(m.block for m in members),
        )

    def contained(self, other: _Known) -> tuple[int, int]:
        """(entries of ``other`` below both horizons, how many of them are among ours)."""
        horizon = min(self.horizon, other.horizon)
        below = [h for h in other.hashes if h <= horizon]
        return len(below), sum(1 for h in below if h in self.hashes)

    def gap(self, other: _Known) -> int:
        return max(self.first_ms, other.first_ms) - min(self.last_ms, other.last_ms)


def _merge(
    components: list[list[CallerSketch]], policy: GroupingPolicy
) -> list[list[CallerSketch]]:
    """A group joins the larger campaign (>= min_members, more members, ties by lowest number)
    that holds at least ``attach_containment`` of its known callees (``attach_shared`` at
    least), within ``max_gap_ms``: a rotation's short tail, or a stretch of it whose numbers
    overlapped each other but not enough with the rest (union over overlapping groups).
    Decided against the groups as linked, then applied along the chains, so the result does
    not depend on the order of the groups."""
    order = sorted(components, key=lambda ms: (-len(ms), min(m.number for m in ms)))
    known = [_Known.of(ms) for ms in order]
    target = list(range(len(order)))
    for i in range(len(order)):
        best: tuple[float, int] | None = None
        for c in range(i):
            if len(order[c]) < policy.min_members or len(order[c]) <= len(order[i]):
                continue
            below, shared = known[c].contained(known[i])
            if (
                below
                and shared >= policy.attach_shared
                and shared >= policy.attach_containment * below
                and known[c].gap(known[i]) <= policy.max_gap_ms
                and (best is None or shared / below > best[0])
            ):
                best = (shared / below, c)
        if best is not None:
            target[i] = best[1]
    out: dict[int, list[CallerSketch]] = defaultdict(list)
    for i, members in enumerate(order):
        t = i
        while target[t] != t:
            t = target[t]
        out[t].extend(members)
    return [out[t] for t in sorted(out)]


def _attach_tails(
    groups: list[list[CallerSketch]], tails: list[CallerSketch], policy: GroupingPolicy
) -> None:
    """Each tail joins the campaign holding most of its callees: at least
    ``attach_containment`` of them and ``attach_shared``, or, for a tail from the numbering
    block of one of the campaign's numbers, ``tail_block_containment`` and
    ``tail_block_shared``; within ``max_gap_ms``."""
    cores = [(g, _Known.of(g)) for g in groups if len(g) >= policy.min_members]
    joins: list[tuple[CallerSketch, list[CallerSketch]]] = []
    for single in tails:
        mine = _Known.of([single])
        best: tuple[float, int] | None = None
        for c, (_, core) in enumerate(cores):
            below, shared = core.contained(mine)
            if single.block in core.blocks:
                need, share = policy.tail_block_shared, policy.tail_block_containment
            else:
                need, share = policy.attach_shared, policy.attach_containment
            if (
                below
                and shared >= need
                and shared >= share * below
                and core.gap(mine) <= policy.max_gap_ms
                and (best is None or shared / below > best[0])
            ):
                best = (shared / below, c)
        if best is not None:
            joins.append((single, cores[best[1]][0]))
    for single, into in joins:
        into.append(single)


def members_to_intercept(
    members: Iterable[str], flagged: Iterable[str], share: float, min_flagged: int
) -> tuple[str, ...]:
    """The members not yet flagged, once at least ``share`` of the campaign's numbers (and at
    least ``min_flagged``) were flagged for interception on their own evidence; else none."""
    everyone = set(members)
    hit = everyone & set(flagged)
    if len(hit) < max(min_flagged, math.ceil(share * len(everyone))):
        return ()
    return tuple(sorted(everyone - hit))


def campaign_alert(
    campaign: CampaignGroup,
    record: dict[str, object],
    grown: bool,
    now_ms: int,
    policy_version: str,
) -> Alert:
    """The campaign's own alert: raised when it appears, escalated as it changes. Named by the
    campaign id; the evidence is counts only (its members are on the leak-candidates topic)."""
    candidates = record["candidates"]
    size = len(campaign.members)
    victims = int(str(record["victims"]))
    label = f"size:{size}:victims:{victims}"
    return Alert(
        alert_id=alert_id(campaign.campaign_id, DETECTOR, campaign.campaign_id, label),
        episode_id=campaign.campaign_id,
        number=campaign.campaign_id,
        number_class="campaign",
        subject="campaign",
        detector=DETECTOR,
        state="escalated" if grown else "raised",
        severity="warning",
        action="monitor",
        category="harassment",
        event_ms=campaign.last_ms,
        detected_at_ms=now_ms,
        evidence={
            "members": size,
            "victims": victims,
            "calls": campaign.calls,
            "candidates": len(candidates) if isinstance(candidates, list) else 0,
            "first_ms": campaign.first_ms,
        },
        reasons=(f"{size} numbers dialling one list of {victims} subscribers",),
        policy_version=policy_version,
    )


def member_alert(
    campaign: CampaignGroup,
    record: dict[str, object],
    member: str,
    flagged: int,
    calls: int,
    last_ms: int,
    now_ms: int,
    number_class: str,
    policy_version: str,
) -> Alert:
    """``intercept`` for a campaign member not flagged on its own, on the campaign's evidence."""
    size = len(campaign.members)
    return Alert(
        alert_id=alert_id(member, DETECTOR, campaign.campaign_id, "intercept"),
        episode_id=campaign.campaign_id,
        number=member,
        number_class=number_class,
        subject="number",
        detector=DETECTOR,
        state="raised",
        severity="critical",
        action="intercept",
        category="harassment",
        event_ms=last_ms,
        detected_at_ms=now_ms,
        evidence={
            "campaign_members": size,
            "campaign_flagged": flagged,
            "campaign_victims": int(str(record["victims"])),
            "calls": calls,
        },
        reasons=(
            f"member of campaign {campaign.campaign_id}: {flagged} of its {size} numbers"
            " intercepted on their own evidence",
        ),
        policy_version=policy_version,
    )
