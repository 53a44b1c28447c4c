"""The fast path's gate computed as a stream (scan's first pass; streams.fastscan replays).

What streams.fastscan's gate decides, per stage, over the whole input: the subjects that go to
the engine (one hot record, a repeated id or a complaint report) and, at each hot record, the
detectors whose lowest threshold can be reached there. Both come out of one pass over the
records in event-time order, in memory bounded by the longest window, not by the file:

- A record's window counts reach back at most one window (detectors.windows: the buckets
  ending with the record's), so the rows are evaluated in slices of at least ``SLICE_ROWS``,
  each with the rows before it that fall in its longest window as context (numpy, as
  ``window_calls``).
- Repeated ids: the (subject, id) hashes, a sorted array up to ``EXACT_MAX`` of them, then a
  Bloom filter (``FILTER_BITS`` bits, four probes). Neither misses a repeat, so every subject
  with one goes to the engine; a false hit (a hash collision, the filter's false positive)
  only sends a subject to the engine too, which is the reference's own treatment (exact
  either way).
- The hot records are kept as (position, detector bits) of the rows with a bit set: the only
  part that grows with the input (16 bytes per hot row).
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Collection, Sequence

import numpy as np

from detectors.levels import scaled
from detectors.selection import KindPlan
from detectors.windows import WindowSpec
from streams.engine import Engine
from streams.items import split_key
from streams.observe import Obs

SLICE_ROWS = 1 << 18
EXACT_MAX = 1 << 22  # (subject, id) hashes kept exactly (32 MiB), then the filter
FILTER_BITS = 1 << 29  # 64 MiB
# Four probes per key: the hash times four odd constants, top bits (multiplicative hashing).
_MULTIPLIERS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)
_NONE = np.iinfo(np.int64).max
_MASK64 = (1 << 64) - 1
_KEY_SHIFT = 40  # (subject, bucket) key: subject index above, bucket index below
_BUCKETS = (1 << _KEY_SHIFT) - 1


def detector_limits(plan: KindPlan) -> dict[tuple[str, str], int]:
    """(detector, window) -> the lowest call threshold any of the detector's levels sets on
    that window."""
    low: dict[tuple[str, str], int] = {}
    for detector, dp in plan.detectors:
        for level in dp.levels:
            for window, limit in level.thresholds.items():
                key = (detector.name, window)
                low[key] = min(low.get(key, limit), limit)
    return low


def window_calls(
    context: np.ndarray, index: np.ndarray, starts: np.ndarray, spec: WindowSpec
) -> tuple[np.ndarray, np.ndarray]:
    """(calls, keys): at each new row (subject ``index``, ``starts``), the calls of its
    subject in the window of ``spec`` ending in the row's bucket, that bucket counted whole (an
    upper bound on what the engine counts there), over the earlier rows' sorted (subject,
    bucket) keys ``context`` and the new rows; and those keys with the new rows', sorted. The
    segmented count is two binary searches per row."""
    keys = (index << _KEY_SHIFT) + starts // (spec.bucket_s * 1000)
    known = np.sort(np.concatenate([context, keys]))
    upper = np.searchsorted(known, keys, side="right")
    lower = np.searchsorted(known, keys - (spec.n_buckets - 1), side="left")
    calls: np.ndarray = upper - lower
    return calls, known


class StageGate:
    """One stage's gate, fed its observations in the replay's order (``add`` per batch)."""

    def __init__(
        self, engine: Engine, kind_of: Callable[[str], str], reported: Collection[str]
    ) -> None:
        self.engine, self.kind_of, self.reported = engine, kind_of, reported
        self.bits: dict[str, int] = {}
        for plan in engine.plans.values():
            for detector, _ in plan.detectors:
                self.bits.setdefault(detector.name, 1 << len(self.bits))
        self.order: dict[str, int] = {}
        self.names: list[str] = []
        self.profile = array("q")  # subject -> its class: plan, factor, reported
        self._profiles: dict[tuple[str, float | None], int] = {}
        self.everything: list[int] = []  # class -> detector bits always evaluated
        self.limits: dict[tuple[str, str], list[int]] = {}  # class -> lowest limit
        self.specs: dict[str, WindowSpec] = {}
        self.gated: set[int] = set()
        self.seen: np.ndarray | None = None  # the filter, once the exact hashes are too many
        self._known = np.zeros(0, np.uint64)  # the (subject, id) hashes so far, sorted
        self.rows = 0
        self._index = array("q")
        self._start = array("q")
        self._hash = array("Q")
        self._context: dict[str, np.ndarray] = {}  # window -> sorted (subject, bucket) keys
        self._hot_pos: list[np.ndarray] = []
        self._hot_mask: list[np.ndarray] = []
        self.hot_pos = np.zeros(0, np.int64)
        self.hot_mask = np.zeros(0, np.int64)

    def _subject(self, key: str) -> int:
        i = self.order.get(key)
        if i is not None:
            return i
        i = self.order[key] = len(self.names)
        self.names.append(key)
        kind, subject = split_key(key)
        plan_kind = self.kind_of(key)
        plan = self.engine.plans[plan_kind]
        if plan.always or subject in self.reported:
            profile: tuple[str, float | None] = (plan_kind, None)
        else:
            profile = (
                plan_kind,
                self.engine.policy.factor(self.engine.number_class(kind, subject)),
            )
        number = self._profiles.get(profile)
        if number is None:
            number = self._profiles[profile] = len(self._profiles)
            self._add_profile(plan, profile[1])
        self.profile.append(number)
        return i

    def _add_profile(self, plan: KindPlan, factor: float | None) -> None:
        """A subject class's detector bits (all: every detector evaluated) or limits."""
        number = len(self.everything)
        for column in self.limits.values():
            column.append(_NONE)
        if factor is None:
            self.everything.append(sum(self.bits[d.name] for d, _ in plan.detectors))
            return
        self.everything.append(0)
        for (name, window), limit in detector_limits(plan).items():
            if (name, window) not in self.limits:
                self.limits[(name, window)] = [_NONE] * (number + 1)
                self.specs[window] = next(s for s in plan.specs if s.name == window)
                self._context[window] = np.zeros(0, np.int64)
            self.limits[(name, window)][number] = scaled(limit, factor)

    def add(self, keys: Sequence[str], observations: Sequence[Obs]) -> None:
        order = self.order
        index = [order.get(k, -1) for k in keys]
        for j, i in enumerate(index):
            if i < 0:
                index[j] = self._subject(keys[j])
        self._index.extend(index)
        self._start.extend([o.start_ms for o in observations])
        self._hash.extend(
            [hash((k, o.cdr_id)) & _MASK64 for k, o in zip(keys, observations, strict=True)]
        )
        context = max((len(c) for c in self._context.values()), default=0)
        if len(self._index) >= max(SLICE_ROWS, context // 2):
            self._evaluate()

    def finish(self) -> None:
        self._evaluate()
        self.hot_pos = np.concatenate([np.zeros(0, np.int64), *self._hot_pos])
        self.hot_mask = np.concatenate([np.zeros(0, np.int64), *self._hot_mask])
        self._hot_pos, self._hot_mask = [], []
        self._context = {w: np.zeros(0, np.int64) for w in self._context}
        self.seen, self._known = None, np.zeros(0, np.uint64)

    def subjects(self) -> set[str]:
        return {self.names[i] for i in self.gated}

    def _repeats(self, hashes: np.ndarray, index: np.ndarray) -> None:
        """Subjects whose (subject, id) was met before: earlier in the slice, or in the sorted
        hashes so far (exact) until there are ``EXACT_MAX``, then in the filter."""
        _, first = np.unique(hashes, return_index=True)
        hit = np.ones(len(hashes), dtype=bool)
        hit[first] = False
        if self.seen is None:
            known = self._known
            at = np.minimum(np.searchsorted(known, hashes), max(len(known) - 1, 0))
            if len(known):
                hit |= known[at] == hashes
            self._known = np.union1d(known, hashes)
            if len(self._known) > EXACT_MAX:
                self.seen = np.zeros(FILTER_BITS // 64, dtype=np.uint64)
                self._mark(self._known)
                self._known = np.zeros(0, np.uint64)
        else:
            hit |= self._in_filter(hashes)
            self._mark(hashes)
        self.gated.update(np.unique(index[hit]).tolist())

    def _probes(self, hashes: np.ndarray) -> list[np.ndarray]:
        shift = np.uint64(64 - FILTER_BITS.bit_length() + 1)
        return [(hashes * np.uint64(m)) >> shift for m in _MULTIPLIERS]

    def _in_filter(self, hashes: np.ndarray) -> np.ndarray:
        assert self.seen is not None
        found = np.ones(len(hashes), dtype=bool)
        for p in self._probes(hashes):
            found &= ((self.seen[p >> np.uint64(6)] >> (p & np.uint64(63))) & np.uint64(1)) == 1
        return found

    def _mark(self, hashes: np.ndarray) -> None:
        assert self.seen is not None
        for p in self._probes(hashes):
            np.bitwise_or.at(self.seen, p >> np.uint64(6), np.uint64(1) << (p & np.uint64(63)))

    def _evaluate(self) -> None:
        if not self._index:
            return
        index = np.frombuffer(self._index, np.int64).copy()
        start = np.frombuffer(self._start, np.int64).copy()
        self._repeats(np.frombuffer(self._hash, np.uint64).copy(), index)
        first_row = self.rows
        self.rows += len(index)
        self._index, self._start, self._hash = array("q"), array("q"), array("Q")
        profile = np.frombuffer(self.profile, np.int64)[index]
        mask = np.asarray(self.everything, np.int64)[profile]
        calls: dict[str, np.ndarray] = {}
        newest = int(start.max())
        for window, spec in self.specs.items():
            calls[window], known = window_calls(self._context[window], index, start, spec)
            # The rows a later record's window can still reach (records come in time order).
            oldest = newest // (spec.bucket_s * 1000) - spec.n_buckets + 1
            self._context[window] = known[(known & _BUCKETS) >= oldest]
        for (name, window), lows in self.limits.items():
            mask[calls[window] >= np.asarray(lows, np.int64)[profile]] |= self.bits[name]
        hot = mask != 0
        self.gated.update(np.unique(index[hot]).tolist())
        self._hot_pos.append(np.flatnonzero(hot) + first_row)
        self._hot_mask.append(mask[hot])

    def hot_map(self, lo: int, ids: Sequence[str]) -> dict[str, frozenset[str]]:
        """cdr id -> detectors to evaluate, for the rows lo.. of one batch (``ids`` theirs)."""
        a, b = np.searchsorted(self.hot_pos, [lo, lo + len(ids)])
        named = {b: d for d, b in self.bits.items()}
        sets: dict[int, frozenset[str]] = {}
        hot: dict[str, frozenset[str]] = {}
        for p, m in zip(self.hot_pos[a:b].tolist(), self.hot_mask[a:b].tolist(), strict=True):
            got = sets.get(m)
            if got is None:
                got = sets[m] = frozenset(d for bit, d in named.items() if m & bit)
            cdr_id = ids[p - lo]
            before = hot.get(cdr_id)
            hot[cdr_id] = got if before is None or before is got else before | got
        return hot


class HoldCheck:
    """streams.fastscan.reference_forces as a stream: whether the reference's stage 2 would
    hold more than ``cap`` observations after some batch but the last (``add`` per batch)."""

    def __init__(self, cap: int) -> None:
        self.cap, self.front, self.forced = cap, 0, False
        self._starts: list[int] = []  # heap: the observations so far starting at the front on
        self._over = False  # after the batch before: over the cap (forced unless it was last)

    def add(self, callers: Sequence[Obs | None], observed: Sequence[Obs]) -> None:
        if self._over:
            self.forced = True
        if self.forced:
            return
        for o in callers:
            if o is not None and o.start_ms > self.front:
                self.front = o.start_ms
        for o in observed:
            heapq.heappush(self._starts, o.start_ms)
        while self._starts and self._starts[0] < self.front:
            heapq.heappop(self._starts)
        self._over = len(self._starts) > self.cap
