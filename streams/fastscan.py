"""Scan's fast path: the subjects that cannot fire skip the per-record engine.

Every detector is a threshold on calls per window (detectors.levels; a non-monotone one makes
its kind's plan ``always``, and then every subject of the kind goes to the engine). So a
subject whose busiest window never reaches the lowest threshold set on that window, after its
number-class factor, can raise nothing: its records are only counted. The busiest window of
every subject is found column-wise (numpy): sort by subject and time once, bucket indices as
integer arrays, and the calls in the window ending at each record's bucket are two binary
searches. Only the records of subjects that could fire go through the reference engine
(streams.engine), in the same batches and offsets as :func:`streams.scan.replay_reference`
would give them; the others move stage 1's watermark (``elsewhere_ms``), and stage 2 gets
the reference's ``Progress`` after each batch (its watermark and canonical release come from
it), so pruning and episode closing happen in the same batch as there, and the alerts come
out identical and in the same order. The differential tests (tests/unit/test_fastscan.py)
hold the two paths equal.

A subject also goes to the engine when something other than its calls could matter: a
repeated CDR id (duplicates are counted there), a complaint report (it tightens thresholds).
The path as a whole applies only to a fresh in-memory store (a scan into Redis adds to state
the gate cannot see) and to records not near the future-skew limit (``usable``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence

import numpy as np

from detectors.levels import scaled
from detectors.selection import KindPlan
from detectors.windows import WindowSpec
from streams.cdr import CDR
from streams.engine import Engine
from streams.items import Item, Outcome, split_key, store_key
from streams.observe import UNASSERTED, Obs, caller_obs, derived_obs
from streams.reorder import Progress
from streams.state.memory import MemoryStore

_KEY_SHIFT = 40  # composite sort key: subject index above, bucket index below
FUTURE_MARGIN_MS = 3_600_000  # records this close to the future-skew limit: reference path


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


def window_calls(index: np.ndarray, starts: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """At each record, the calls of its subject in the window of ``spec`` ending in the
    record's bucket, that bucket counted whole (an upper bound on what the engine counts
    there). ``index`` (subject) and ``starts`` are sorted by (subject, start)."""
    buckets = starts // (spec.bucket_s * 1000)
    composite = (index << _KEY_SHIFT) + buckets
    upper = np.searchsorted(composite, composite, side="right")
    lower = np.searchsorted(composite, composite - (spec.n_buckets - 1), side="left")
    calls: np.ndarray = upper - lower
    return calls


def could_fire(
    engine: Engine,
    kind_of: Callable[[str], str],
    keys: Sequence[str],
    starts: Sequence[int],
    ids: Sequence[str],
    reported: Collection[str] = frozenset(),
) -> tuple[set[str], dict[str, frozenset[str]]]:
    """(subjects, hot): the store keys among ``keys`` (one per observation) whose subject
    could raise an alert, has a repeated id or a complaint report (``reported``: subjects);
    and, per id of a record at which some detector's threshold can be reached, the detectors
    that can (all of them for a reported subject or an ``always`` plan)."""
    order: dict[str, int] = {}
    index_list = [order.setdefault(k, len(order)) for k in keys]
    names = list(order)
    subjects: set[str] = set()
    if len(set(zip(index_list, ids, strict=True))) < len(index_list):  # a repeated id
        pairs: set[tuple[int, str]] = set()
        for i, cdr_id in zip(index_list, ids, strict=True):
            if (i, cdr_id) in pairs:
                subjects.add(names[i])
            pairs.add((i, cdr_id))
    if not names:
        return subjects, {}
    index = np.asarray(index_list, dtype=np.int64)
    start = np.asarray(starts, dtype=np.int64)
    sort = np.lexsort((start, index))
    index, start = index[sort], start[sort]
    # One bit per detector; per subject, the lowest limit of each (detector, window).
    bits: dict[str, int] = {}
    for plan in engine.plans.values():
        for detector, _ in plan.detectors:
            bits.setdefault(detector.name, 1 << len(bits))
    n = len(names)
    everything = np.zeros(n, dtype=np.int64)
    limits: dict[tuple[str, str], np.ndarray] = {}
    specs: dict[str, WindowSpec] = {}
    for i, key in enumerate(names):
        kind, subject = split_key(key)
        plan = engine.plans[kind_of(key)]
        if plan.always or subject in reported:
            everything[i] = sum(bits[d.name] for d, _ in plan.detectors)
            continue
        factor = engine.policy.factor(engine.number_class(kind, subject))
        for (name, window), limit in detector_limits(plan).items():
            if (name, window) not in limits:
                limits[(name, window)] = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
                specs[window] = next(s for s in plan.specs if s.name == window)
            limits[(name, window)][i] = scaled(limit, factor)
    mask = everything[index]
    calls = {w: window_calls(index, start, spec) for w, spec in specs.items()}
    for (name, window), lows in limits.items():
        mask[calls[window] >= lows[index]] |= bits[name]
    hot_rows = mask != 0
    subjects.update(names[i] for i in np.unique(index[hot_rows]).tolist())
    named = {b: d for d, b in bits.items()}
    sets: dict[int, frozenset[str]] = {}
    hot: dict[str, frozenset[str]] = {}
    for k, m in zip(sort[hot_rows].tolist(), mask[hot_rows].tolist(), strict=True):
        got = sets.get(m)
        if got is None:
            got = sets[m] = frozenset(d for b, d in named.items() if m & b)
        cdr_id = ids[k]
        before = hot.get(cdr_id)
        hot[cdr_id] = got if before is None or before is got else before | got
    return subjects, hot


async def usable(
    engine: Engine, derived: Engine | None, records: Sequence[CDR], partition: int
) -> bool:
    """Whether the fast path gives the reference's results for these sorted records: a fresh
    in-memory store, no re-keying or outbox, nothing near the future-skew limit."""
    if not records:
        return False
    for e in [engine] if derived is None else [engine, derived]:
        if not isinstance(e.store, MemoryStore) or e.rekey_partitions or e.outbox:
            return False
        if (await e.meta(partition)).offset != -1:
            return False
    return records[-1].start_ms <= engine.clock_ms() + engine.skew_ms - FUTURE_MARGIN_MS


def reference_forces(
    callers: Sequence[Obs | None], observed: Sequence[Sequence[Obs]], batch: int, cap: int
) -> bool:
    """Whether the reference replay's stage 2 would hold more than ``cap`` observations after
    some chunk (streams.reorder.release then lets the oldest go early). After chunk n it holds
    the observations so far that start at or after stage 1's front (the newest caller start so
    far; 0 before any); the records are sorted, so every later chunk's observations start at
    or after it too, and the count is (all starting there) - (those of later chunks). The last
    chunk is idle and releases everything."""
    starts = np.sort(np.asarray([o.start_ms for chunk in observed for o in chunk], np.int64))
    later = len(starts)
    front = 0
    for n in range(len(observed) - 1):
        later -= len(observed[n])
        for o in callers[n * batch : (n + 1) * batch]:
            if o is not None and o.start_ms > front:
                front = o.start_ms
        held = len(starts) - int(np.searchsorted(starts, front, side="left")) - later
        if held > cap:
            return True
    return False


def _key(o: Obs) -> str:
    return store_key(o.kind, o.subject)


async def replay_fast(
    engine: Engine,
    derived: Engine | None,
    records: Sequence[CDR],
    partition: int,
    reported: Collection[str],
    emit: Callable[[Outcome, int], None],
    totals: Counter[str],
    progress: Callable[[int], None] | None = None,
) -> bool:
    """Replay sorted records as streams.scan.replay_reference does; ``emit(outcome, stage)``
    gets each engine's outcome, ``totals`` the stage-1 counts the engine did not see. False,
    before anything is emitted, when the reference's stage 2 would hold more than
    ``reorder_max_held`` observations (it then releases some early, which the fast path,
    holding only the subjects that can fire, cannot reproduce): the caller replays with the
    reference instead."""
    trunks, plan = engine.trunks, engine.numbering
    first = (await engine.meta(partition)).offset + 1
    second = (await derived.meta(partition)).offset + 1 if derived else 0
    batch = engine.settings.chunk_records
    callers = [caller_obs(r, trunks, plan) for r in records]
    mine = [(i, o) for i, o in enumerate(callers) if o is not None]
    gate1, hot1 = could_fire(
        engine,
        lambda k: "number",
        [o.subject for _, o in mine],
        [o.start_ms for _, o in mine],
        [o.cdr_id for _, o in mine],
        reported,
    )
    del mine
    observed: list[list[Obs]] = []
    gate2: set[str] = set()
    hot2: dict[str, frozenset[str]] = {}
    read_circles: set[str] = set()
    if derived is not None:
        observed = [
            derived_obs(records[i : i + batch], trunks, partition, plan)
            for i in range(0, len(records), batch)
        ]
        flat = [o for chunk in observed for o in chunk]
        gate2, hot2 = could_fire(
            derived,
            lambda k: split_key(k)[0],
            [_key(o) for o in flat],
            [o.start_ms for o in flat],
            [o.cdr_id for o in flat],
            reported,
        )
        del flat
        if derived.circles is not None:
            # The numbers whose circles stage 2 may read: the callees that can fire and their
            # callers (streams.circles.debt_context reads no other). Only calls with one end
            # among them need noting outside the engine: the circles read are the reference's.
            read_circles = {split_key(k)[1] for k in gate2 if split_key(k)[0] == "callee"}
            persons = frozenset(read_circles)
            for part in observed:
                read_circles.update(
                    o.other for o in part if o.subject in persons and o.kind == "callee"
                )
        if reference_forces(callers, observed, batch, derived.settings.reorder_max_held):
            return False
    for n, i in enumerate(range(0, len(records), batch)):
        chunk = records[i : i + batch]
        items: list[Item] = []
        elsewhere: int | None = None
        skipped = spoofed = 0
        for j, rec in enumerate(chunk):
            obs = callers[i + j]
            if obs is None:
                spoofed += 1
            elif obs.subject in gate1:
                items.append((first + i + j, rec))
            else:
                skipped += 1
                elsewhere = rec.start_ms if elsewhere is None else max(elsewhere, rec.start_ms)
        items.append((first + i + len(chunk) - 1, None))
        outcome = await engine.process(partition, items, elsewhere_ms=elsewhere, hot=hot1)
        totals["accepted"] += skipped
        totals["to_trunk"] += spoofed
        emit(outcome, 1)
        if derived is not None:
            # The reference's offsets and progress (its chunk's observations, then a Progress,
            # the last one idle); stage 2's release point and watermark come from the progress
            # alone, so the observations left out change neither.
            obs_chunk = observed[n]
            observed[n] = []
            items = [(second + j, o) for j, o in enumerate(obs_chunk) if _key(o) in gate2]
            last = i + batch >= len(records)
            items.append((second + len(obs_chunk), Progress(partition, outcome.front_ms, last)))
            emit(await derived.process(partition, items, hot=hot2), 2)
            second += len(obs_chunk) + 1
            if derived.circles is not None:
                # The contacts of the observations left out, as the reference notes them after
                # its batch (streams.circles): a call joins its two ends' circles; only those
                # of numbers whose circles can be read are kept here.
                for o in obs_chunk:
                    if (
                        o.kind == "callee"
                        and (o.subject in read_circles or o.other in read_circles)
                        and o.other
                        and not o.other.startswith(UNASSERTED)
                        and _key(o) not in gate2
                    ):
                        derived.circles.note(o.other, o.subject, o.start_ms // 1000)
                await derived.circles.flush()
        if progress is not None:
            progress(i + len(chunk))
    return True
