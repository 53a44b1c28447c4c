"""Pruning a subject's state: what no admissible record can read any more goes, and the state
stays bounded however many calls the subject makes."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from streams.state.base import NumberState

MAX_PEERS = 512  # counterparts remembered per subject, newest kept
# A subject's state stays bounded however many calls it makes. Duplicate ids are recognised
# among its newest MAX_SEEN calls within the lateness horizon (a number making more than that
# in the horizon, 15 minutes by default, is a flood flagged anyway); a counterpart's newest
# MAX_PEER_TIMES calls are kept (member thresholds are a few calls).
MAX_SEEN = 4096
MAX_PEER_TIMES = 64


@dataclass(frozen=True, slots=True)
class Retention:
    """How far back a subject's buckets are read: bucket widths and bucket counts kept."""

    short_ms: int
    short_keep: int
    long_ms: int
    long_keep: int
    longest_s: int


def prune(state: NumberState, watermark: int, keep: Retention) -> None:
    """Drop what no admissible record can read any more (in place)."""
    # Anything older than the watermark is rejected on arrival, so its ids can go. A record
    # still admissible (at or after the watermark) reads windows reaching one window length
    # back from its own time, so buckets are kept from there: relative to the watermark,
    # not only to the subject's newest call, which another source may have pushed ahead.
    state.seen = {h: t for h, t in state.seen.items() if t >= watermark}
    if len(state.seen) > MAX_SEEN:
        newest = sorted(state.seen.items(), key=lambda kv: kv[1])[-MAX_SEEN:]
        state.seen = dict(newest)
    ref = min(state.newest_ms, watermark)
    low = ref // keep.short_ms - keep.short_keep
    state.short = {b: c for b, c in state.short.items() if b > low}
    low = ref // keep.long_ms - keep.long_keep
    state.long = {b: c for b, c in state.long.items() if b > low}
    if state.peers:
        oldest = (ref - keep.longest_s * 1000) // 1000
        peers = {
            o: t[max(bisect_left(t, oldest), len(t) - MAX_PEER_TIMES) :]
            for o, t in state.peers.items()
        }
        peers = {o: t for o, t in peers.items() if t}
        if len(peers) > MAX_PEERS:
            newest_first = sorted(peers, key=lambda o: peers[o][-1], reverse=True)
            peers = {o: peers[o] for o in newest_first[:MAX_PEERS]}
        state.peers = peers
    if not state.short and not state.long:
        state.ring, state.last_other, state.peers = [], "", {}
