"""Window stores: one interface (base), an in-process and a Redis implementation, and the
blob codec of a subject's state (blob)."""

from streams.state.base import (
    Changes,
    Episode,
    NumberState,
    PartitionMeta,
    ReadResult,
    StaleOffset,
    Store,
)

__all__ = [
    "Changes",
    "Episode",
    "NumberState",
    "PartitionMeta",
    "ReadResult",
    "StaleOffset",
    "Store",
]
