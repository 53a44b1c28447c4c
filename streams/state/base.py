"""The window-store interface and the per-number state it holds (its blob codec:
``streams.state.blob``).

A partition's state is written atomically together with the offset of the last Kafka message
it reflects (see README "Delivery"). ``write`` is fenced on that offset: it applies only if the
stored offset still equals the one the batch was computed from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol


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


class PartitionMeta(NamedTuple):
    offset: int  # last applied message offset, -1 when nothing was applied
    newest_ms: int  # newest accepted start_time in the partition, 0 when none
    # Stage 2 only: source (stage-1) partition -> newest start_time seen from it. Derived
    # partitions merge several sources, each with its own event-time progress.
    sources: tuple[tuple[int, int], ...] = ()
    # Stage 1 only: last applied offset of the repartition topic's partition of the same number
    # (README "Batches and partitions"), -1 when none. Both inputs fence on both offsets.
    rekeyed: int = -1
    # Stage 2 only: the observations held back for the canonical order and the idle sources
    # (streams.reorder.encode), b"" when none.
    held: bytes = b""


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
    # The stored repartition-input offset the batch was read at: ``write`` fences on it too.
    expected_rekeyed: int = -1


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
