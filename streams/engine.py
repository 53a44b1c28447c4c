"""The batch engine shared by the Faust worker and ``dialwatch scan``.

One call to :meth:`Engine.process` takes the records of one partition's batch, in partition
order, and does: admission (replayed offsets, future and too-late records) -> one store read
-> per-number window updates and detectors -> one fenced store write. It returns the alerts
to publish. Everything it decides depends only on the order of records within the partition,
never on how they were cut into batches (README "Determinism").
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from config.policy import SEVERITIES, DetectorPolicy, Policy
from config.settings import Settings
from detectors.alerts import Alert, clear_alert, episode_id, raise_alert
from detectors.numbering import classify
from detectors.registry import Detector, load_all
from detectors.snapshot import WindowSnapshot
from detectors.windows import WindowSpec, bucket_of, count_in_window, window_specs
from streams.cdr import CDR, Reject
from streams.state.base import Changes, Episode, NumberState, PartitionMeta, Store

Item = tuple[int, CDR | Reject]  # (message offset, record)


@dataclass(slots=True)
class Outcome:
    alerts: list[Alert] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    replayed: int = 0
    rejects: list[tuple[int, Reject]] = field(default_factory=list)
    numbers: int = 0
    watermark_ms: int = 0

    def reject_counts(self) -> Counter[str]:
        return Counter(r.reason for _, r in self.rejects)


def id_hash(cdr_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(cdr_id.encode(), digest_size=8).digest()) >> 1


class Engine:
    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        store: Store,
        allowlist: Container[str] = frozenset(),
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.store = store
        self.allowlist = allowlist
        self.clock_ms = clock_ms
        self.tz = ZoneInfo(settings.timezone)
        self.specs = window_specs(
            policy.windows, settings.bucket_s, settings.long_bucket_s, settings.long_window_from_s
        )
        registry = load_all()
        unknown = set(policy.detectors) - set(registry)
        if unknown:
            raise ValueError(f"policy names unknown detectors: {sorted(unknown)}")
        self.detectors: list[tuple[Detector, DetectorPolicy]] = [
            (registry[name], dp) for name, dp in policy.detectors.items()
        ]
        self.short_ms = settings.bucket_s * 1000
        self.long_ms = settings.long_bucket_s * 1000
        self.short_keep = max((s.n_buckets for s in self.specs if not s.long), default=1)
        self.long_keep = max((s.n_buckets for s in self.specs if s.long), default=1)
        self.lateness_ms = settings.allowed_lateness_s * 1000
        self.quiet_ms = settings.episode_quiet_s * 1000
        self.skew_ms = settings.max_future_skew_s * 1000
        self._min_short, self._min_long = self._lowest_thresholds()
        self._always = any(not d.monotone for d, _ in self.detectors)
        self._meta: dict[int, PartitionMeta] = {}

    def _lowest_thresholds(self) -> tuple[float, float]:
        by_name = {s.name: s for s in self.specs}
        low = {False: float("inf"), True: float("inf")}
        for _, dp in self.detectors:
            for level in dp.levels:
                for window, limit in level.thresholds.items():
                    is_long = by_name[window].long
                    low[is_long] = min(low[is_long], limit)
        return low[False], low[True]

    def window_ttl_ms(self) -> int:
        longest = max(s.length_s for s in self.specs)
        return (longest + self.settings.allowed_lateness_s + self.settings.long_bucket_s) * 1000

    def forget(self, partition: int) -> None:
        """Drop what is cached about a partition (on revocation or after a failed write)."""
        self._meta.pop(partition, None)

    async def meta(self, partition: int) -> PartitionMeta:
        meta = self._meta.get(partition)
        if meta is None:
            meta = self._meta[partition] = await self.store.load_meta(partition)
        return meta

    async def process(self, partition: int, items: Sequence[Item]) -> Outcome:
        out = Outcome()
        meta = await self.meta(partition)
        now_ms = self.clock_ms()
        newest = meta.newest_ms
        by_number: dict[str, list[CDR]] = {}
        last_offset = meta.offset
        for offset, rec in items:
            if offset <= meta.offset:
                out.replayed += 1
                continue
            last_offset = max(last_offset, offset)
            if isinstance(rec, Reject):
                out.rejects.append((offset, rec))
            elif rec.start_ms > now_ms + self.skew_ms:
                out.rejects.append((offset, Reject("future", "start_time is in the future")))
            elif rec.start_ms < newest - self.lateness_ms:
                out.rejects.append((offset, Reject("too_late", "older than allowed lateness")))
            else:
                if rec.start_ms > newest:
                    newest = rec.start_ms
                by_number.setdefault(rec.caller, []).append(rec)
        if last_offset == meta.offset:
            return out
        watermark = newest - self.lateness_ms
        out.watermark_ms, out.numbers = watermark, len(by_number)
        read = await self.store.read(partition, list(by_number), watermark)
        changes = Changes(PartitionMeta(last_offset, newest), {}, {})
        for number, records in by_number.items():
            state = NumberState.from_blobs(read.windows.get(number), read.episodes.get(number))
            had_episodes = bool(state.episodes)
            self._apply(number, state, records, now_ms, out)
            self._close_if_quiet(number, state, watermark, now_ms, out)
            self._prune(state, watermark)
            changes.windows[number] = state.windows_blob()
            if had_episodes or state.episodes:
                close_at = state.newest_ms + self.quiet_ms if state.episodes else None
                changes.episodes[number] = (state.episodes_blob(), close_at)
        for number, (blob, close_at) in read.due.items():
            state = NumberState.from_blobs(None, blob)
            state.newest_ms = close_at - self.quiet_ms
            self._close_if_quiet(number, state, watermark, now_ms, out)
            changes.episodes[number] = (state.episodes_blob(), close_at if state.episodes else None)
        await self.store.write(partition, meta.offset, changes)
        self._meta[partition] = changes.meta
        return out

    def _apply(
        self, number: str, state: NumberState, records: list[CDR], now_ms: int, out: Outcome
    ) -> None:
        could_fire = self._always or (
            sum(state.short.values()) + len(records) >= self._min_short
            or sum(state.long.values()) + len(records) >= self._min_long
        )
        number_class = classify(number)
        seen, short, long = state.seen, state.short, state.long
        for cdr in records:
            h = id_hash(cdr.cdr_id)
            if h in seen:
                out.duplicates += 1
                continue
            start = cdr.start_ms
            if state.episodes and start >= state.newest_ms + self.quiet_ms:
                self._close(
                    number, number_class, state, state.newest_ms + self.quiet_ms, now_ms, out
                )
            seen[h] = start
            b = start // self.short_ms
            short[b] = short.get(b, 0) + 1
            b = start // self.long_ms
            long[b] = long.get(b, 0) + 1
            if start > state.newest_ms:
                state.newest_ms = start
            out.accepted += 1
            if could_fire:
                self._evaluate(number, number_class, state, start, now_ms, out)

    def snapshot(self, number: str, number_class: str, state: NumberState) -> WindowSnapshot:
        counts = {spec.name: self._count(state, spec) for spec in self.specs}
        return WindowSnapshot(number, number_class, state.newest_ms, counts)

    def _count(self, state: NumberState, spec: WindowSpec) -> int:
        buckets = state.long if spec.long else state.short
        return count_in_window(buckets, bucket_of(state.newest_ms, spec.bucket_s), spec.n_buckets)

    def _evaluate(
        self,
        number: str,
        number_class: str,
        state: NumberState,
        event_ms: int,
        now_ms: int,
        out: Outcome,
    ) -> None:
        snap = self.snapshot(number, number_class, state)
        for detector, dpolicy in self.detectors:
            finding = detector.fn(snap, dpolicy)
            if finding is None:
                continue
            episode = state.episodes.get(detector.name)
            if episode is None:
                episode = state.episodes[detector.name] = Episode(finding.severity, event_ms)
                escalated = False
            elif SEVERITIES.index(finding.severity) > SEVERITIES.index(episode.severity):
                episode.severity = finding.severity
                escalated = True
            else:
                continue
            out.alerts.append(
                raise_alert(
                    finding,
                    number=number,
                    number_class=number_class,
                    episode=episode_id(number, detector.name, episode.opened_ms),
                    escalated=escalated,
                    event_ms=event_ms,
                    detected_at_ms=now_ms,
                    policy_version=self.policy.version,
                    allowlisted=number in self.allowlist,
                )
            )

    def _close_if_quiet(
        self, number: str, state: NumberState, watermark: int, now_ms: int, out: Outcome
    ) -> None:
        close_at = state.newest_ms + self.quiet_ms
        if state.episodes and close_at <= watermark:
            self._close(number, classify(number), state, close_at, now_ms, out)

    def _close(
        self,
        number: str,
        number_class: str,
        state: NumberState,
        close_at: int,
        now_ms: int,
        out: Outcome,
    ) -> None:
        for name, episode in sorted(state.episodes.items()):
            dpolicy = self.policy.detectors.get(name)
            out.alerts.append(
                clear_alert(
                    number=number,
                    number_class=number_class,
                    detector=name,
                    category=dpolicy.category if dpolicy else name,
                    episode=episode_id(number, name, episode.opened_ms),
                    quiet_s=self.settings.episode_quiet_s,
                    event_ms=close_at,
                    detected_at_ms=now_ms,
                    policy_version=self.policy.version,
                )
            )
        state.episodes.clear()

    def _prune(self, state: NumberState, watermark: int) -> None:
        # Anything older than the watermark is rejected on arrival, so its ids can go.
        state.seen = {h: t for h, t in state.seen.items() if t >= watermark}
        low = state.newest_ms // self.short_ms - self.short_keep
        state.short = {b: c for b, c in state.short.items() if b > low}
        low = state.newest_ms // self.long_ms - self.long_keep
        state.long = {b: c for b, c in state.long.items() if b > low}
