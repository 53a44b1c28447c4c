"""Window stores: one interface, an in-process and a Redis implementation."""

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
