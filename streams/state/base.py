"""The window-store interface and the per-number state it holds.

A partition's state is written atomically together with the offset of the last Kafka message
it reflects (see README "Delivery"). ``write`` is fenced on that offset: it applies only if the
stored offset still equals the one the batch was computed from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import orjson


@dataclass(slots=True)
class Episode:
    severity: str  # highest severity alerted so far in this episode
    opened_ms: int  # start_time of the call that opened it


@dataclass(slots=True)
class NumberState:
    newest_ms: int = 0
    short: dict[int, int] = field(default_factory=dict)  # short bucket index -> calls
    long: dict[int, int] = field(default_factory=dict)  # long bucket index -> calls
    seen: dict[int, int] = field(default_factory=dict)  # cdr_id hash -> start_ms, for dedup
    episodes: dict[str, Episode] = field(default_factory=dict)  # detector -> open episode

    def windows_blob(self) -> bytes:
        """The window part, stored per number; empty means nothing left to keep."""
        if not self.short and not self.long and not self.seen:
            return b""
        return orjson.dumps([self.newest_ms, _flat(self.short), _flat(self.long), _flat(self.seen)])

    def episodes_blob(self) -> bytes:
        if not self.episodes:
            return b""
        return orjson.dumps({d: [e.severity, e.opened_ms] for d, e in self.episodes.items()})

    @classmethod
    def from_blobs(cls, windows: bytes | None, episodes: bytes | None) -> NumberState:
        state = cls()
        if windows:
            newest, short, long, seen = orjson.loads(windows)
            state.newest_ms = newest
            state.short = _unflat(short)
            state.long = _unflat(long)
            state.seen = _unflat(seen)
        if episodes:
            state.episodes = {
                d: Episode(sev, opened) for d, (sev, opened) in orjson.loads(episodes).items()
            }
        return state


def _flat(d: dict[int, int]) -> list[int]:
    out: list[int] = []
    for k, v in d.items():
        out.append(k)
        out.append(v)
    return out


def _unflat(items: list[int]) -> dict[int, int]:
    it = iter(items)
    return dict(zip(it, it, strict=True))


class PartitionMeta(NamedTuple):
    offset: int  # last applied message offset, -1 when nothing was applied
    newest_ms: int  # newest accepted start_time in the partition, 0 when none


@dataclass(slots=True)
class ReadResult:
    windows: dict[str, bytes | None]  # requested number -> its windows blob, None if unknown
    episodes: dict[str, bytes | None]  # requested number -> its open episodes blob
    due: dict[str, tuple[bytes, int]]  # other numbers due to close -> (episodes blob, close ms)


@dataclass(slots=True)
class Changes:
    """Everything one batch writes to one partition, atomically. Empty blobs delete."""

    meta: PartitionMeta
    windows: dict[str, bytes]
    episodes: dict[str, tuple[bytes, int | None]]  # number -> (episodes blob, close time ms)


class StaleOffset(Exception):
    """The stored offset moved since the batch was read: another writer or a replay."""


class Store(Protocol):
    async def load_meta(self, partition: int) -> PartitionMeta: ...

    async def read(self, partition: int, numbers: list[str], due_before_ms: int) -> ReadResult: ...

    async def write(self, partition: int, expected_offset: int, changes: Changes) -> None:
        """Apply all changes, or raise StaleOffset when the stored offset != expected_offset."""
        ...

    async def close(self) -> None: ...
