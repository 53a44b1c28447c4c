"""Small builders for test records."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.cdr import CDR
from streams.observe import Obs
from streams.reorder import Progress

T0 = int(datetime(2026, 11, 2, 1, 0, tzinfo=UTC).timestamp())  # 09:00 in Shanghai


def cdr(
    caller: str,
    at_s: float,
    n: int,
    *,
    callee: str | None = None,
    answered: bool = False,
    cdr_id: str | None = None,
) -> CDR:
    return CDR(
        cdr_id=cdr_id or f"{caller}-{n}",
        caller=caller,
        callee=callee or f"139{n:08d}",
        start_ms=int(at_s * 1000),
        duration_s=12 if answered else 0,
        answered=answered,
    )


def dial(caller: str, calls: int, span_s: float, start_s: float = T0) -> list[CDR]:
    """``calls`` calls spread evenly over ``span_s`` seconds."""
    step = span_s / calls
    return [cdr(caller, start_s + i * step, i) for i in range(calls)]


def record_dict(c: CDR) -> dict[str, object]:
    return {
        "cdr_id": c.cdr_id,
        "caller": c.caller,
        "callee": c.callee,
        "start_time": datetime.fromtimestamp(c.start_ms / 1000, UTC).isoformat(),
        "duration_s": c.duration_s,
        "answered": c.answered,
    }


def derived_batch(observed: list[Obs], first: int, last: bool) -> list[tuple[int, Obs | Progress]]:
    """A derived message's items as stage 2 reads them: the observations, then their source's
    progress (idle after the last batch, so stage 2 releases everything it holds)."""
    items: list[tuple[int, Obs | Progress]] = [(2 * (first + j), o) for j, o in enumerate(observed)]
    front = max(o.start_ms for o in observed)
    items.append((2 * (first + len(observed)) + 1, Progress(observed[0].source, front, last)))
    return items
