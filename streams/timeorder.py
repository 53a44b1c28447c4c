"""Scan's reading order: CDR files streamed into event-time order through a reorder buffer
bounded by the allowed lateness (settings.allowed_lateness_s), not by the file.

Each file keeps a heap of its records by (start, file order). A record is released once the
file's newest start is more than the lateness past it: no record the worker would still admit
(at most that late behind the newest) can then come before it. So whenever every record is at
most that late, the records come out exactly as the stable global sort of all the files gives
them (ties in file order, files in argument order: the files are merged). A record later than
that is what the worker rejects as ``too_late`` (streams.engine: older than its partition's
newest by more than the lateness): scan does the same, through ``reject``, so it is counted and
written to the reject log, never silently dropped. Memory: the records within the lateness of
each file's newest, plus what is out of order by less than that.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator

from streams.cdr import CDR, Reject

TOO_LATE = Reject("too_late", "older than allowed lateness behind the file's newest record")
# (start, file index, position in the file, line, record): unique before the record.
Entry = tuple[int, int, int, int, CDR]
OnReject = Callable[[int, int, Reject], None]  # (file index, line, why)


def in_time_order(
    files: Iterable[Iterable[tuple[int, CDR | Reject]]],
    lateness_ms: int,
    reject: OnReject,
) -> Iterator[CDR]:
    """The CDRs of all ``files`` (each an iterable of (line, record) in file order) in event
    time order; rejects, the files' own and the too-late, go to ``reject`` as they are met."""
    streams = [_one(n, located, lateness_ms, reject) for n, located in enumerate(files)]
    for entry in heapq.merge(*streams):
        yield entry[4]


def _one(
    n: int, located: Iterable[tuple[int, CDR | Reject]], lateness_ms: int, reject: OnReject
) -> Iterator[Entry]:
    heap: list[Entry] = []
    newest: int | None = None
    for position, (line, rec) in enumerate(located):
        if isinstance(rec, Reject):
            reject(n, line, rec)
            continue
        start = rec.start_ms
        if newest is None or start > newest:
            newest = start
        elif start < newest - lateness_ms:
            reject(n, line, TOO_LATE)
            continue
        heapq.heappush(heap, (start, n, position, line, rec))
        bound = newest - lateness_ms
        while heap[0][0] < bound:
            yield heapq.heappop(heap)
    while heap:
        yield heapq.heappop(heap)
