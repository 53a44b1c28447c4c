"""In-process window store: the default for ``dialwatch scan`` and the demo without Redis.

It keeps the same encoded blobs as the Redis store and applies a batch all or nothing.
"""

from __future__ import annotations

from streams.state.base import Changes, PartitionMeta, ReadResult, StaleOffset


class MemoryStore:
    def __init__(self) -> None:
        self._meta: dict[int, PartitionMeta] = {}
        self._windows: dict[tuple[int, str], bytes] = {}
        self._episodes: dict[tuple[int, str], bytes] = {}
        self._due: dict[int, dict[str, int]] = {}
        self._complaints: dict[tuple[int, str], bytes] = {}
        self._outbox: dict[int, dict[str, bytes]] = {}

    async def load_meta(self, partition: int) -> PartitionMeta:
        return self._meta.get(partition, PartitionMeta(-1, 0))

    async def read(self, partition: int, numbers: list[str], due_before_ms: int) -> ReadResult:
        wanted = set(numbers)
        return ReadResult(
            windows={n: self._windows.get((partition, n)) for n in numbers},
            episodes={n: self._episodes.get((partition, n)) for n in numbers},
            due={
                n: (self._episodes[(partition, n)], at)
                for n, at in self._due.get(partition, {}).items()
                if at <= due_before_ms and n not in wanted
            },
            complaints={n: self._complaints.get((partition, n)) for n in numbers},
        )

    async def complaint_blobs(self, partition: int, numbers: list[str]) -> dict[str, bytes | None]:
        return {n: self._complaints.get((partition, n)) for n in numbers}

    async def swap_complaints(
        self, partition: int, expected: dict[str, bytes | None], new: dict[str, bytes]
    ) -> bool:
        if any(self._complaints.get((partition, n)) != blob for n, blob in expected.items()):
            return False
        for number, blob in new.items():
            self._complaints[(partition, number)] = blob
        return True

    async def write(self, partition: int, expected_offset: int, changes: Changes) -> None:
        stored = self._meta.get(partition, PartitionMeta(-1, 0))
        if (stored.offset, stored.rekeyed) != (expected_offset, changes.expected_rekeyed):
            raise StaleOffset(f"partition {partition}")
        self._meta[partition] = changes.meta
        for number, blob in changes.windows.items():
            if blob:
                self._windows[(partition, number)] = blob
            else:
                self._windows.pop((partition, number), None)
        self._outbox.setdefault(partition, {}).update(changes.outbox)
        due = self._due.setdefault(partition, {})
        for number, (blob, close_at) in changes.episodes.items():
            if blob and close_at is not None:
                self._episodes[(partition, number)] = blob
                due[number] = close_at
            else:
                self._episodes.pop((partition, number), None)
                due.pop(number, None)

    async def pending_alerts(self, partition: int) -> dict[str, bytes]:
        return dict(self._outbox.get(partition, {}))

    async def confirm_alerts(self, partition: int, alert_ids: list[str]) -> None:
        box = self._outbox.get(partition, {})
        for alert_id in alert_ids:
            box.pop(alert_id, None)

    async def close(self) -> None:
        return None

    def number_count(self) -> int:
        return len(self._windows)
