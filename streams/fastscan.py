"""Scan's fast path: the subjects that cannot fire skip the per-record engine.

Every detector is a threshold on calls per window (detectors.levels; a non-monotone one makes
its kind's plan ``always``, and then every subject of the kind goes to the engine). So a
subject whose busiest window never reaches the lowest threshold set on that window, after its
number-class factor, can raise nothing: its records are only counted. The busiest window of
every subject is found column-wise, in a first pass over the records in bounded memory
(streams.fastgate, ``gate_pass``; the records kept in a temporary file, ``Spill``), and the
replay is the second pass (``replay_fast``). Only the records of subjects that could fire go
through the reference engine (streams.engine), in the same batches and offsets as
:func:`streams.scan.replay_reference` would give them; the others move stage 1's watermark
(``elsewhere_ms``), and stage 2 gets the reference's ``Progress`` after each batch (its
watermark and canonical release come from it), so pruning and episode closing happen in the
same batch as there, and the alerts come out identical and in the same order. The differential
tests (tests/unit/test_fastscan.py) hold the two paths equal.

A subject also goes to the engine when something other than its calls could matter: a
repeated CDR id (duplicates are counted there), a complaint report (it tightens thresholds).
The path as a whole applies only to a fresh in-memory store (a scan into Redis adds to state
the gate cannot see: ``fresh``) and to records not near the future-skew limit (``usable``).
"""

from __future__ import annotations

import marshal
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass

from streams.cdr import CDR
from streams.engine import Engine
from streams.fastgate import HoldCheck, StageGate
from streams.items import Item, Outcome, split_key, store_key
from streams.observe import Obs, caller_obs, derived_obs
from streams.reorder import Progress
from streams.state.memory import MemoryStore

FUTURE_MARGIN_MS = 3_600_000  # records this close to the future-skew limit: reference path


async def fresh(engine: Engine, derived: Engine | None, partition: int) -> bool:
    """Whether the stores are fresh and in memory, with no re-keying or outbox: the fast path's
    first condition (a scan into Redis adds to state the gate cannot see)."""
    for e in [engine] if derived is None else [engine, derived]:
        if not isinstance(e.store, MemoryStore) or e.rekey_partitions or e.outbox:
            return False
        if (await e.meta(partition)).offset != -1:
            return False
    return True


def usable(engine: Engine, gates: Gates) -> bool:
    """Whether the fast path gives the reference's results for what the gate pass saw: some
    record, none near the future-skew limit, no stage-2 hold over its cap."""
    if not gates.records or gates.forced:
        return False
    return gates.newest_ms <= engine.clock_ms() + engine.skew_ms - FUTURE_MARGIN_MS


def batches(records: Iterable[CDR], size: int) -> Iterator[tuple[list[CDR], bool]]:
    """(batch, whether it is the last) of ``size`` records, as the reference cuts them."""
    chunk: list[CDR] = []
    for rec in records:
        if len(chunk) == size:
            yield chunk, False
            chunk = []
        chunk.append(rec)
    if chunk:
        yield chunk, True


@dataclass
class Gates:
    """What the gate pass (``gate_pass``) found."""

    first: StageGate
    second: StageGate | None
    records: int = 0
    newest_ms: int = 0
    forced: bool = False


class Spill:
    """The first pass's records in replay order, kept in a temporary file (marshalled tuples,
    a batch at a time) for the second: it reads them back instead of reading, parsing and
    reordering the files again (about a fifth of the cost), and standard input can be read
    twice. On disk, about 100 bytes a record; deleted on close."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())

    def write(self, chunk: Sequence[CDR]) -> None:
        data = marshal.dumps([_fields(r) for r in chunk])
        self.file.write(len(data).to_bytes(8, "little") + data)

    def read(self) -> Iterator[CDR]:
        self.file.seek(0)
        while size := int.from_bytes(self.file.read(8), "little"):
            yield from (CDR(*t) for t in marshal.loads(self.file.read(size)))

    def close(self) -> None:
        self.file.close()


def _fields(r: CDR) -> tuple[object, ...]:
    return (
        r.cdr_id,
        r.caller,
        r.callee,
        r.start_ms,
        r.duration_s,
        r.answered,
        r.release_cause,
        r.direction,
        r.ingress_trunk,
        r.attestation,
        r.intercepted,
    )


def gate_pass(
    engine: Engine,
    derived: Engine | None,
    records: Iterable[CDR],
    partition: int,
    reported: Collection[str],
    keep: Callable[[Sequence[CDR]], None] | None = None,
) -> Gates:
    """The first pass over the records in replay order: both stages' gates; ``keep`` gets
    each batch (``Spill.write``)."""
    trunks, plan = engine.trunks, engine.numbering
    gates = Gates(
        StageGate(engine, lambda k: "number", reported),
        None if derived is None else StageGate(derived, lambda k: split_key(k)[0], reported),
    )
    hold = HoldCheck((derived or engine).settings.reorder_max_held)
    for chunk, _ in batches(records, engine.settings.chunk_records):
        if keep is not None:
            keep(chunk)
        callers = [caller_obs(r, trunks, plan) for r in chunk]
        mine = [o for o in callers if o is not None]
        gates.first.add([o.subject for o in mine], mine)
        if gates.second is not None:
            observed = derived_obs(chunk, trunks, partition, plan)
            gates.second.add([_key(o) for o in observed], observed)
            hold.add(callers, observed)
        gates.records += len(chunk)
        gates.newest_ms = chunk[-1].start_ms
    gates.first.finish()
    if gates.second is not None:
        gates.second.finish()
    gates.forced = hold.forced
    return gates


def reference_forces(
    callers: Sequence[Obs | None], observed: Sequence[Sequence[Obs]], batch: int, cap: int
) -> bool:
    """Whether the reference replay's stage 2 would hold more than ``cap`` observations after
    some chunk but the last (streams.fastgate.HoldCheck over in-memory chunks)."""
    hold = HoldCheck(cap)
    for n, chunk in enumerate(observed):
        hold.add(callers[n * batch : (n + 1) * batch], chunk)
    return hold.forced


def _key(o: Obs) -> str:
    return store_key(o.kind, o.subject)


class _Held:
    """Stage 2's hot map across batches: an observation may be held and released in a later
    batch than the one it came in, so its entry stays until stage 1's front has passed it."""

    def __init__(self) -> None:
        self.hot: dict[str, frozenset[str]] = {}
        self._newest: dict[str, int] = {}
        self._order: deque[tuple[int, str]] = deque()

    def add(self, hot: dict[str, frozenset[str]], starts: dict[str, int]) -> None:
        for cdr_id, names in hot.items():
            before = self.hot.get(cdr_id)
            self.hot[cdr_id] = names if before is None else before | names
            start = starts[cdr_id]
            self._newest[cdr_id] = max(self._newest.get(cdr_id, start), start)
            self._order.append((start, cdr_id))

    def released(self, front_ms: int) -> None:
        while self._order and self._order[0][0] < front_ms:
            _, cdr_id = self._order.popleft()
            if self._newest.get(cdr_id, front_ms) < front_ms:
                del self.hot[cdr_id], self._newest[cdr_id]


async def replay_fast(
    engine: Engine,
    derived: Engine | None,
    records: Iterable[CDR],
    partition: int,
    gates: Gates,
    emit: Callable[[Outcome, int], None],
    totals: Counter[str],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Replay the records (in the order ``gate_pass`` saw them) as
    streams.scan.replay_reference does; ``emit(outcome, stage)`` gets each engine's outcome,
    ``totals`` the stage-1 counts the engine did not see."""
    trunks, plan = engine.trunks, engine.numbering
    first = (await engine.meta(partition)).offset + 1
    second = (await derived.meta(partition)).offset + 1 if derived else 0
    gate1 = gates.first.subjects()
    gate2 = gates.second.subjects() if gates.second is not None else set()
    row1 = row2 = done = 0
    held = _Held()
    for chunk, last in batches(records, engine.settings.chunk_records):
        callers = [caller_obs(r, trunks, plan) for r in chunk]
        mine = [o.cdr_id for o in callers if o is not None]
        hot1 = gates.first.hot_map(row1, mine)
        row1 += len(mine)
        items: list[Item] = []
        elsewhere: int | None = None
        skipped = spoofed = 0
        for j, (rec, obs) in enumerate(zip(chunk, callers, strict=True)):
            if obs is None:
                spoofed += 1
            elif obs.subject in gate1:
                items.append((first + done + j, rec))
            else:
                skipped += 1
                elsewhere = rec.start_ms if elsewhere is None else max(elsewhere, rec.start_ms)
        items.append((first + done + len(chunk) - 1, None))
        outcome = await engine.process(partition, items, elsewhere_ms=elsewhere, hot=hot1)
        totals["accepted"] += skipped
        totals["to_trunk"] += spoofed
        emit(outcome, 1)
        if derived is not None and gates.second is not None:
            # The reference's offsets and progress (its chunk's observations, then a Progress,
            # the last one idle); stage 2's release point and watermark come from the progress
            # alone, so the observations left out change neither. A held observation is
            # evaluated when released, perhaps batches later: its hot entry waits (_Held).
            observed = derived_obs(chunk, trunks, partition, plan)
            held.add(
                gates.second.hot_map(row2, [o.cdr_id for o in observed]),
                {o.cdr_id: o.start_ms for o in observed},
            )
            row2 += len(observed)
            items = [(second + j, o) for j, o in enumerate(observed) if _key(o) in gate2]
            items.append((second + len(observed), Progress(partition, outcome.front_ms, last)))
            emit(await derived.process(partition, items, hot=held.hot), 2)
            held.released(outcome.front_ms)
            second += len(observed) + 1
        done += len(chunk)
        if progress is not None:
            progress(done)
