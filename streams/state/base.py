"""The window-store interface and the per-number state it holds.

A partition's state is written atomically together with the offset of the last Kafka message
it reflects (see README "Delivery"). ``write`` is fenced on that offset: it applies only if the
stored offset still equals the one the batch was computed from.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import msgpack
import orjson

from detectors.snapshot import N_FEATURES


@dataclass(slots=True)
class Episode:
    severity: str  # highest severity alerted so far in this episode
    opened_ms: int  # start_time of the call that opened it


@dataclass(slots=True)
class NumberState:
    """One subject's state: bucketed feature vectors (detectors.snapshot.FEATURES), the ids
    seen within the lateness horizon, its recent counterparts and its open episodes."""

    newest_ms: int = 0
    short: dict[int, list[int]] = field(default_factory=dict)  # short bucket -> features
    long: dict[int, list[int]] = field(default_factory=dict)  # long bucket -> features
    seen: dict[int, int] = field(default_factory=dict)  # cdr_id hash -> start_ms, for dedup
    ring: list[int] = field(default_factory=list)  # crc32 of the last few counterparts
    last_other: str = ""  # the previous counterpart, for sequential steps
    peers: dict[str, list[int]] = field(default_factory=dict)  # counterpart -> sorted start s
    # detector -> open episode; "detector>member" for a member's episode (callee, block)
    episodes: dict[str, Episode] = field(default_factory=dict)

    def windows_blob(self) -> bytes:
        """The window part, stored per subject; empty means nothing left to keep.

        MessagePack of ``[newest_ms, short, long, seen, ring, last_other, peers]``; bucket
        indices relative to the newest bucket, seen times relative to ``newest_ms`` and the
        16-bit ring packed as bytes, so small numbers take one or two bytes (README "Redis
        keys"). Blobs written as JSON by earlier versions are still read.
        """
        if not self.short and not self.long and not self.seen:
            return b""
        newest = self.newest_ms
        doc: list[object] = [
            newest,
            _relative_vectors(self.short),
            _relative_vectors(self.long),
            [x for h, t in self.seen.items() for x in (h, newest - t)],
        ]
        if self.ring or self.peers:
            doc += [struct.pack(f"<{len(self.ring)}H", *self.ring), self.last_other]
        if self.peers:
            doc.append(self.peers)
        return bytes(msgpack.packb(doc))

    def episodes_blob(self) -> bytes:
        if not self.episodes:
            return b""
        return orjson.dumps({d: [e.severity, e.opened_ms] for d, e in self.episodes.items()})

    @classmethod
    def from_blobs(cls, windows: bytes | None, episodes: bytes | None) -> NumberState:
        state = cls()
        if windows and windows[0] != JSON_ARRAY:
            doc = msgpack.unpackb(windows)
            newest = state.newest_ms = doc[0]
            state.short = _absolute_vectors(doc[1])
            state.long = _absolute_vectors(doc[2])
            it = iter(doc[3])
            state.seen = {h: newest - d for h, d in zip(it, it, strict=True)}
            if len(doc) > 4:
                ring: bytes = doc[4]
                state.ring = list(struct.unpack(f"<{len(ring) // 2}H", ring))
                state.last_other = doc[5]
            if len(doc) > 6:
                state.peers = doc[6]
        elif windows:  # the JSON format of earlier versions
            doc = orjson.loads(windows)
            state.newest_ms = doc[0]
            state.short = _unflat_vectors(doc[1])
            state.long = _unflat_vectors(doc[2])
            state.seen = _unflat(doc[3])
            if len(doc) > 4:
                state.ring, state.last_other = doc[4], doc[5]
            if len(doc) > 6:
                state.peers = doc[6]
        if episodes:
            state.episodes = {
                d: Episode(sev, opened) for d, (sev, opened) in orjson.loads(episodes).items()
            }
        return state


JSON_ARRAY = ord("[")  # the first byte of a window blob in the earlier JSON format


def _trimmed(v: list[int]) -> int | list[int]:
    """A feature vector without its trailing zeros; a bare count when only calls remain."""
    end = len(v)
    while end > 1 and v[end - 1] == 0:
        end -= 1
    return v[0] if end == 1 else v[:end]


def _relative_vectors(d: dict[int, list[int]]) -> list[object]:
    """``[newest bucket, newest - bucket, vector, ...]``; [] when there are no buckets."""
    if not d:
        return []
    ref = max(d)
    out: list[object] = [ref]
    for k, v in d.items():
        out.append(ref - k)
        out.append(_trimmed(v))
    return out


def _absolute_vectors(items: list[Any]) -> dict[int, list[int]]:
    """Inverse of _relative_vectors."""
    if not items:
        return {}
    ref = items[0]
    it = iter(items[1:])
    return _unflat_vectors([x for delta, v in zip(it, it, strict=True) for x in (ref - delta, v)])


def _unflat_vectors(items: list[object]) -> dict[int, list[int]]:
    """``[bucket, vector or count, ...]`` to buckets; a bare count (also the blob format before
    features) is a
    bucket of calls only."""
    out: dict[int, list[int]] = {}
    it = iter(items)
    for k, v in zip(it, it, strict=True):
        vector = [v] if isinstance(v, int) else list(v)  # type: ignore[call-overload]
        vector += [0] * (N_FEATURES - len(vector))
        out[k] = vector  # type: ignore[index]
    return out


def _unflat(items: list[int]) -> dict[int, int]:
    it = iter(items)
    return dict(zip(it, it, strict=True))


class PartitionMeta(NamedTuple):
    offset: int  # last applied message offset, -1 when nothing was applied
    newest_ms: int  # newest accepted start_time in the partition, 0 when none
    # Stage 2 only: source (stage-1) partition -> newest start_time seen from it. Derived
    # partitions merge several sources, each with its own event-time progress.
    sources: tuple[tuple[int, int], ...] = ()


@dataclass(slots=True)
class ReadResult:
    windows: dict[str, bytes | None]  # requested number -> its windows blob, None if unknown
    episodes: dict[str, bytes | None]  # requested number -> its open episodes blob
    due: dict[str, tuple[bytes, int]]  # other numbers due to close -> (episodes blob, close ms)
    complaints: dict[str, bytes | None] = field(default_factory=dict)  # number -> reports blob


@dataclass(slots=True)
class Changes:
    """Everything one batch writes to one partition, atomically. Empty blobs delete."""

    meta: PartitionMeta
    windows: dict[str, bytes]
    episodes: dict[str, tuple[bytes, int | None]]  # number -> (episodes blob, close time ms)
    # The batch's alerts (alert_id -> alert JSON), kept until they are confirmed published, so
    # a crash between the state write and the send cannot lose them (README "Delivery").
    outbox: dict[str, bytes] = field(default_factory=dict)


class StaleOffset(Exception):
    """The stored offset moved since the batch was read: another writer or a replay."""


class Store(Protocol):
    async def load_meta(self, partition: int) -> PartitionMeta: ...

    async def read(self, partition: int, numbers: list[str], due_before_ms: int) -> ReadResult: ...

    async def write(self, partition: int, expected_offset: int, changes: Changes) -> None:
        """Apply all changes, or raise StaleOffset when the stored offset != expected_offset."""
        ...

    async def complaint_blobs(self, partition: int, numbers: list[str]) -> dict[str, bytes | None]:
        """The stored complaint reports of ``numbers`` (streams.complaints)."""
        ...

    async def pending_alerts(self, partition: int) -> dict[str, bytes]:
        """Alerts written with the state but not yet confirmed published: alert_id -> JSON."""
        ...

    async def confirm_alerts(self, partition: int, alert_ids: list[str]) -> None:
        """Forget outbox entries whose alerts the broker confirmed."""
        ...

    async def swap_complaints(
        self, partition: int, expected: dict[str, bytes | None], new: dict[str, bytes]
    ) -> bool:
        """Replace complaint blobs if each still equals ``expected``; False (nothing written)
        when another writer got there first."""
        ...

    async def close(self) -> None: ...
