"""The export's period: ``--since``/``--until`` as ISO-8601 dates or times with an offset.

A date is midnight of that day in ``DIALWATCH_TIMEZONE``; a time must carry its offset (``Z``
or ``+08:00``), since a bare local time is ambiguous once a year. Periods are half-open,
``[since, until)``, in event time.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_instant(text: str, tz: tzinfo) -> datetime:
    """An aware datetime; ValueError (with what to write instead) for anything else."""
    text = text.strip()
    if _DATE.fullmatch(text):
        return datetime.combine(date.fromisoformat(text), time(0), tz)
    if "T" not in text and " " not in text:
        raise ValueError("expected an ISO-8601 date (2026-12-01) or time with an offset")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "expected an ISO-8601 date (2026-12-01) or time with an offset"
            " (2026-12-01T08:00:00+08:00)"
        ) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a time needs an offset (Z or +08:00), or give a date")
    return value


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(value: datetime) -> int:
    """Exact milliseconds since the epoch (rounded down), no float in between."""
    return (value - EPOCH) // timedelta(milliseconds=1)


def parse_period(since: str, until: str, tz: tzinfo) -> tuple[int, int]:
    """(since_ms, until_ms); ValueError naming the option at fault."""
    bounds = []
    for option, text in (("--since", since), ("--until", until)):
        try:
            bounds.append(to_ms(parse_instant(text, tz)))
        except ValueError as exc:
            raise ValueError(f"{option} {text!r}: {exc}") from None
    if bounds[1] <= bounds[0]:
        raise ValueError(f"--until {until!r} is not after --since {since!r}")
    return bounds[0], bounds[1]
