"""A time a user gives on the command line or in an API query: epoch seconds (decimals
allowed) or ISO-8601, a time without an offset read in ``DIALWATCH_TIMEZONE``."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def instant_ms(text: str, timezone: str) -> int:
    """Milliseconds since the epoch; ValueError for text that is neither form."""
    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return int(moment.timestamp() * 1000)
