"""The batch engine shared by the Faust worker and ``dialwatch scan``.

One call to :meth:`Engine.process` takes one partition's batch of observations (see
``streams.observe``), in partition order, and does: admission (replayed offsets, future and
too-late records) -> one store read -> per-subject feature updates and detectors -> one fenced
store write. It returns the alerts to publish. Everything it decides depends only on the order
of records within the partition, never on how they were cut into batches (README
"Determinism").

Two engines run: stage 1 watches callers (kind "number") on the input partitions; stage 2
watches callees, blocks and trunks on the derived stream's partitions. Stage 2 holds its
observations back and applies them in the canonical order of ``streams.reorder`` (start time,
then cdr id) as its sources' progress passes them, so its alerts do not depend on how the
stage-1 partitions interleave (docs/ordering.md): everything below ``prepare``'s release step,
``_apply`` and the detectors, sees each subject's observations in that order.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Container, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson

from config.numbering import plan_from_setting
from config.policy import DetectorPolicy, Policy
from config.settings import Settings
from detectors.catalogue import load_all
from detectors.features import call_features
from detectors.levels import scaled
from detectors.registry import Detector, check_policy
from detectors.selection import kind_plan
from detectors.snapshot import N_FEATURES, Tally, WindowSnapshot
from detectors.windows import WindowSpec, bucket_of, busiest_window_end, sum_in_window, window_specs
from streams.cdr import CDR, Reject
from streams.circles import Circles, DebtContext, debt_context, with_debt_context
from streams.complaints import ComplaintStore, Reports
from streams.complaints import active as complaint_reports
from streams.episodes import Episodes, Subject
from streams.items import (
    CALLER_KINDS,
    Item,
    Outcome,
    Prepared,
    Rekeyed,
    id_hash,
    store_key,
)
from streams.observe import UNASSERTED, Obs, caller_obs
from streams.reorder import FOREVER, Held, Progress, release, release_point
from streams.reorder import decode as decode_held
from streams.reorder import encode as encode_held
from streams.state.base import Changes, NumberState, PartitionMeta, Store
from streams.state.blob import episodes_blob, from_blobs, windows_blob
from streams.state.prune import Retention, prune
from streams.topics import partition_for

SOURCE_IDLE_MS = 60_000  # stage 1: a source silent this long (wall clock) stops holding back
# window name -> (end bucket, feature sums, spec) of a subject's newest window (Engine._window)
WindowCache = dict[str, tuple[int, list[int], WindowSpec]]
NO_REPORTS = Reports(0, None)
DEBT = "debt_collection"


class Engine:
    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        store: Store,
        allowlist: Container[str] = frozenset(),
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        kinds: Collection[str] = CALLER_KINDS,
        sources: int = 1,
        outbox: bool = False,
        rekey_partitions: int = 0,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.store = store
        self.clock_ms = clock_ms
        self.kinds = frozenset(kinds)
        # Stage 2: how many stage-1 partitions feed each derived partition. Until all have been
        # heard from, the watermark stays put (nothing pruned, no episode closed): a source
        # that starts late may still bring old records.
        self.sources = sources
        # Write each batch's alerts with its state, until confirmed published (the worker).
        self.outbox = outbox
        # Stage 1 in the worker: the CDR topic's partition count. A CDR whose normalised caller
        # hashes to another partition is admitted here and moved there (Outcome.moved); 0: off.
        self.rekey_partitions = rekey_partitions
        # Stage 1: partition -> source -> wall-clock ms this process last had its records. A
        # source not heard from for SOURCE_IDLE_MS no longer holds the watermark back (a CDR
        # partition that stopped sending re-keyed records must not freeze pruning and episode
        # closing); one that is merely behind, as in a catch-up, still does.
        self._heard: dict[int, dict[int, int]] = {}
        self.numbering = plan_from_setting(settings.numbering_plan)
        self.tz = ZoneInfo(settings.timezone)
        self.episodes = Episodes(settings, policy, self.numbering, allowlist)
        self.trunks = settings.international_trunks
        self.specs = {
            s.name: s
            for s in window_specs(
                policy.windows,
                settings.bucket_s,
                settings.long_bucket_s,
                settings.long_window_from_s,
            )
        }
        registry = load_all()
        check_policy(policy, registry)
        self.plans = {kind: kind_plan(kind, policy, registry, self.specs) for kind in self.kinds}
        used = [s for plan in self.plans.values() for s in plan.specs]
        self.short_ms = settings.bucket_s * 1000
        self.long_ms = settings.long_bucket_s * 1000
        self.short_keep = max((s.n_buckets for s in used if not s.long), default=0)
        self.long_keep = max((s.n_buckets for s in used if s.long), default=0)
        self.longest_s = max((s.length_s for s in used), default=settings.bucket_s)
        self.retention = Retention(
            self.short_ms, self.short_keep, self.long_ms, self.long_keep, self.longest_s
        )
        self.lateness_ms = settings.allowed_lateness_s * 1000
        self.quiet_ms = settings.episode_quiet_s * 1000
        self.skew_ms = settings.max_future_skew_s * 1000
        self._meta: dict[int, PartitionMeta] = {}
        self._loads: dict[int, int] = {}  # partition -> which load of its meta is cached
        self._load_count = 0
        self._hours: dict[int, int] = {}  # quarter hour (epoch s // 900) -> local hour
        # Stage 2 (set by streams.factory): the stage-1 complaint store, read for the callers a
        # debt-collection finding may name (reports are stored with the caller's stage-1
        # partition: partition_for over ``sources`` partitions); and the contact circles.
        self.reports: ComplaintStore | None = None
        self.circles: Circles | None = None
        debt = policy.detector(DEBT)
        self._debt_least = 0
        if debt is not None and "callee" in self.kinds:
            low = min([1.0, *policy.class_factors.values()]) * policy.complaints.factor
            if debt.params.get("contact_min", 0):
                low *= min(1.0, debt.params.get("contact_factor", 1))
            base = math.ceil(int(debt.params.get("member_min_calls", 1)) * low)
            self._debt_least = max(
                1, math.ceil(base / max(1.0, debt.params.get("night_weight", 1)))
            )

    def window_ttl_ms(self) -> int:
        return (
            self.longest_s + self.settings.allowed_lateness_s + self.settings.long_bucket_s
        ) * 1000

    def knows(self, partition: int) -> bool:
        """Whether this process has loaded the partition since it was (re)assigned."""
        return partition in self._meta

    def forget(self, partition: int) -> None:
        """Drop what is cached about a partition (on revocation or after a failed write)."""
        self._meta.pop(partition, None)
        self._loads.pop(partition, None)
        self._heard.pop(partition, None)

    def loaded(self, partition: int) -> int | None:
        """Names the cached load of the partition's meta (None: not loaded): a driver with
        two inputs checks each against the store once per load."""
        return self._loads.get(partition)

    def newest_by_partition(self) -> dict[int, int]:
        """Newest applied start_time (ms) of each partition this process holds (metrics)."""
        return {p: m.newest_ms for p, m in self._meta.items()}

    @property
    def allowlist(self) -> Container[str]:
        return self.episodes.allowlist

    @allowlist.setter
    def allowlist(self, allowlist: Container[str]) -> None:
        self.episodes.allowlist = allowlist

    def number_class(self, kind: str, subject: str) -> str:
        return self.episodes.number_class(kind, subject)

    async def meta(self, partition: int) -> PartitionMeta:
        meta = self._meta.get(partition)
        if meta is None:
            meta = self._meta[partition] = await self.store.load_meta(partition)
            self._load_count += 1
            self._loads[partition] = self._load_count
        return meta

    async def process(
        self,
        partition: int,
        items: Sequence[Item],
        rekeyed: bool = False,
        elsewhere_ms: int | None = None,
        hot: Mapping[str, Collection[str]] | None = None,
    ) -> Outcome:
        """Apply a partition's batch: one store read, one fenced store write (``prepare``
        then ``commit``, with nothing in between)."""
        return await self.commit(await self.prepare(partition, items, rekeyed, elsewhere_ms, hot))

    async def prepare(
        self,
        partition: int,
        items: Sequence[Item],
        rekeyed: bool = False,
        elsewhere_ms: int | None = None,
        hot: Mapping[str, Collection[str]] | None = None,
    ) -> Prepared:
        """Admit a partition's batch and run the detectors over it: one store read, no write.

        The driver may act on the outcome before ``commit`` writes it: the worker forwards
        stage 1's admitted CDRs to stage 2 there, and its moved CDRs to their partitions, so a
        crash in between replays them. ``rekeyed``: the items come from the repartition topic's
        partition (``Rekeyed``), fenced by their own stored offset. ``elsewhere_ms``: the
        newest start among this batch's records that the driver handled without passing them
        (scan's fast path, streams.fastscan, for subjects that cannot fire): they move the
        partition's own source and newest time as if they had been passed. ``hot``: when given,
        the detectors run only at the records whose ids it holds, and only those it names
        there (the driver has shown that no other threshold can be reached).
        """
        out = Outcome()
        meta = await self.meta(partition)
        now_ms = self.clock_ms()
        newest = meta.newest_ms
        # Each record is admitted against its own source's progress: stage 2's sources are
        # stage-1 partitions; stage 1's are the partition's own arrivals and, for re-keyed
        # records, the CDR partition each came from.
        sources = dict(meta.sources)
        stage2 = self.kinds != CALLER_KINDS
        held = decode_held(meta.held) if stage2 else Held()
        idle = set(held.idle)
        incoming: list[Obs] = []
        heard = self._heard.setdefault(partition, {})
        for src in sources:
            heard.setdefault(src, now_ms)  # unknown since this process loaded it: give it time
        by_key: dict[str, list[Obs]] = {}
        applied = meta.rekeyed if rekeyed else meta.offset
        last_offset = applied
        for offset, rec in items:
            if offset <= applied:
                out.replayed += not isinstance(rec, Progress)
                continue
            last_offset = max(last_offset, offset)
            if rec is None:
                continue
            if isinstance(rec, Progress):
                sources[rec.source] = max(sources.get(rec.source, rec.front_ms), rec.front_ms)
                (idle.add if rec.idle else idle.discard)(rec.source)
                continue
            if isinstance(rec, Reject):
                out.rejects.append((offset, rec))
                continue
            arrived = not isinstance(rec, Rekeyed)
            front = 0
            if isinstance(rec, Rekeyed):
                # Admitted, and forwarded to stage 2, where it arrived: here only its source's
                # progress is kept.
                src, rec = rec.source, rec.cdr
            else:
                if isinstance(rec, Obs):
                    src = rec.source
                    front = sources.get(src, 0)
                    idle.discard(src)
                else:
                    src = partition
                    # (a partition written before re-keying kept only its newest)
                    front = sources.get(src, 0 if sources else newest)
                if rec.start_ms > now_ms + self.skew_ms:
                    out.rejects.append((offset, Reject("future", "start_time is in the future")))
                    continue
                if rec.start_ms < front - self.lateness_ms:
                    out.rejects.append((offset, Reject("too_late", "older than allowed lateness")))
                    continue
            if isinstance(rec, CDR):
                obs = caller_obs(rec, self.trunks, self.numbering)
                if obs is None:
                    out.admitted.append(rec)
                    out.fronts.append(front)
                    out.to_trunk += 1
                    continue
                heard[src] = now_ms
                if rec.start_ms > sources.get(src, 0):
                    sources[src] = rec.start_ms
                if arrived:
                    out.admitted.append(rec)
                    out.fronts.append(front)
                    if (
                        self.rekey_partitions
                        and partition_for(obs.subject.encode(), self.rekey_partitions) != partition
                    ):
                        out.moved.append(rec)
                        continue
                rec = obs
            # (A derived observation does not move its source's front, only the source's
            # Progress does: a spoofed call's start can be past what stage 1 promises.)
            if stage2:
                incoming.append(rec)
            elif rec.kind in self.kinds:
                if rec.start_ms > newest:
                    newest = rec.start_ms
                by_key.setdefault(store_key(rec.kind, rec.subject), []).append(rec)
        if elsewhere_ms is not None:
            heard[partition] = now_ms
            sources[partition] = max(sources.get(partition, 0), elsewhere_ms)
            newest = max(newest, elsewhere_ms)
        if last_offset == applied:
            return Prepared(partition, out, meta.offset, None, meta.rekeyed)
        out.front_ms = sources.get(partition, newest)
        point: int | None = None
        held_blob = b""
        if stage2:
            # The canonical order: what every active source's progress has passed, sorted.
            point = release_point(sources, frozenset(idle), self.sources)
            ready, still, out.forced = release(
                [*held.observations, *incoming], point, self.settings.reorder_max_held
            )
            for obs in ready:
                if obs.kind in self.kinds:
                    newest = max(newest, obs.start_ms)
                    by_key.setdefault(store_key(obs.kind, obs.subject), []).append(obs)
            out.released, out.held = ready, len(still)
            held_blob = encode_held(Held(still, frozenset(idle)))
        # A partition has seen everything up to its slowest source's progress. Stage 1 leaves
        # out idle sources (``_heard``); stage 2 waits for every source.
        if not sources:
            front = newest
        elif len(sources) < self.sources:
            front = 0
        elif self.kinds == CALLER_KINDS:
            active = [
                v for s, v in sources.items() if now_ms - heard.get(s, now_ms) < SOURCE_IDLE_MS
            ]
            front = min(active) if active else max(sources.values())
        else:  # stage 2: up to what it released (every source's front when all are idle)
            front = max(sources.values()) if point == FOREVER else (point or 0)
        watermark = front - self.lateness_ms
        out.watermark_ms, out.numbers = watermark, len(by_key)
        read = await self.store.read(partition, list(by_key), watermark)
        offset, roff = (meta.offset, last_offset) if rekeyed else (last_offset, meta.rekeyed)
        changes = Changes(
            PartitionMeta(offset, newest, tuple(sorted(sources.items())), roff, held_blob),
            {},
            {},
            expected_rekeyed=meta.rekeyed,
        )
        states = {key: from_blobs(read.windows.get(key), read.episodes.get(key)) for key in by_key}
        debt = None
        if self._debt_least:
            debt = await debt_context(
                states,
                by_key,
                self._debt_least,
                self.reports,
                self.sources,
                self.circles,
                lambda key: self.episodes.subject_of(key).subject,
            )
        for key, records in by_key.items():
            state = states[key]
            had_episodes = bool(state.episodes)
            self._apply(key, state, records, now_ms, out, read.complaints.get(key), hot, debt)
            self.episodes.close_if_quiet(key, state, watermark, now_ms, out)
            prune(state, watermark, self.retention)
            changes.windows[key] = windows_blob(state)
            if had_episodes or state.episodes:
                close_at = state.newest_ms + self.quiet_ms if state.episodes else None
                changes.episodes[key] = (episodes_blob(state), close_at)
        for key, (blob, close_at) in read.due.items():
            state = from_blobs(None, blob)
            state.newest_ms = close_at - self.quiet_ms
            self.episodes.close_if_quiet(key, state, watermark, now_ms, out)
            changes.episodes[key] = (episodes_blob(state), close_at if state.episodes else None)
        if self.outbox:
            changes.outbox = {a.alert_id: orjson.dumps(a.to_dict(self.tz)) for a in out.alerts}
        contacts = []
        if self.circles is not None:
            contacts = [
                (o.other, o.subject, o.start_ms // 1000)
                for o in incoming
                if o.kind == "callee" and o.other and not o.other.startswith(UNASSERTED)
            ]
        return Prepared(partition, out, meta.offset, changes, meta.rekeyed, contacts)

    async def commit(self, prepared: Prepared) -> Outcome:
        """Make a prepared batch's fenced write; StaleOffset when the stored offset moved since
        ``prepare`` read it. Returns the batch's outcome."""
        if prepared.changes is not None:
            if self.circles is not None and prepared.contacts:
                # Before the fenced write, as a set union: a crash in between replays the batch,
                # which adds nothing new (streams.circles).
                for a, b, t_s in prepared.contacts:
                    self.circles.note(a, b, t_s)
                await self.circles.flush()
            await self.store.write(prepared.partition, prepared.expected_offset, prepared.changes)
            self._meta[prepared.partition] = prepared.changes.meta
        return prepared.outcome

    def _apply(
        self,
        key: str,
        state: NumberState,
        records: list[Obs],
        now_ms: int,
        out: Outcome,
        complaints: bytes | None = None,
        hot: Mapping[str, Collection[str]] | None = None,
        debt: DebtContext | None = None,
    ) -> None:
        subj = self.episodes.subject_of(key)
        near = debt.candidates.get(key) if debt is not None else None
        plan = self.plans[subj.kind]
        # The same subject with its thresholds tightened, for records with a report in horizon.
        reported = (
            replace(subj, factor=subj.factor * self.policy.complaints.factor)
            if complaints
            else subj
        )
        gate = reported.factor
        could_fire = plan.always or (
            sum(v[0] for v in state.short.values()) + len(records)
            >= scaled(int(min(plan.min_short, 1e9)), gate)
            or sum(v[0] for v in state.long.values()) + len(records)
            >= scaled(int(min(plan.min_long, 1e9)), gate)
        )
        seen, short, long, ring = state.seen, state.short, state.long, state.ring
        rules = self.policy.features
        cache: WindowCache = {}  # this subject's in-order window sums, kept up to date below
        keep_peers = plan.peer_spec is not None
        for obs in records:
            h = id_hash(obs.cdr_id)
            if h in seen:
                out.duplicates += 1
                continue
            start = obs.start_ms
            if state.episodes and start >= state.newest_ms + self.quiet_ms:
                self.episodes.close(subj, state, state.newest_ms + self.quiet_ms, now_ms, out)
            seen[h] = start
            other = obs.other
            inc = call_features(
                rules, obs.answered, obs.duration_s, obs.cause, other, state.last_other, ring
            )
            if other:
                state.last_other = other
            for buckets, width in ((short, self.short_ms), (long, self.long_ms)):
                vector = buckets.get(start // width)
                if vector is None:
                    buckets[start // width] = list(inc)
                else:
                    for i, v in enumerate(inc):
                        vector[i] += v
            for end, total, spec in cache.values():
                if end - spec.n_buckets < start // (spec.bucket_s * 1000) <= end:
                    for i, v in enumerate(inc):
                        total[i] += v
            if keep_peers and other:
                insort(state.peers.setdefault(other, []), start // 1000)
            if start > state.newest_ms:
                state.newest_ms = start
            out.accepted += 1
            if could_fire and (hot is None or obs.cdr_id in hot):
                active = plan.active(subj.number_class, state.episodes)
                if hot is not None:
                    allowed = hot[obs.cdr_id]
                    active = [a for a in active if a[0].name in allowed]
                if active:
                    reports = complaint_reports(
                        complaints, start, self.policy.complaints.horizon_s * 1000
                    )
                    target = reported if reports.count else subj
                    self._evaluate(
                        target, state, active, start, now_ms, out, reports, cache, debt, near
                    )

    def snapshot(
        self,
        subj: Subject,
        state: NumberState,
        needs: Collection[str] | None = None,
        at_ms: int | None = None,
        cache: WindowCache | None = None,
    ) -> WindowSnapshot:
        """The subject's windows that contain ``at_ms`` (default: its newest call), each the
        busiest such window (detectors.windows.busiest_window_end)."""
        plan = self.plans[subj.kind]
        at_ms = state.newest_ms if at_ms is None else at_ms
        windows = {}
        for spec in plan.specs:
            if needs is not None and spec.name not in needs:
                continue
            windows[spec.name] = Tally.of(self._window(state, spec, at_ms, cache))
        peers: dict[str, int] = {}
        if plan.peer_spec is not None:
            since_s, until_s = self._peer_span(state, plan.peer_spec, at_ms)
            for other, times in state.peers.items():
                n = bisect_left(times, until_s) - bisect_left(times, since_s)
                if n:
                    peers[other] = n
        pairs: dict[str, tuple[tuple[int, int], ...]] = {}
        if plan.pair_spec is not None and (needs is None or plan.pair_spec.name in needs):
            since_s, until_s = self._peer_span(state, plan.pair_spec, at_ms)
            for other, times in state.peers.items():
                lo, hi = bisect_left(times, since_s), bisect_left(times, until_s)
                if lo < hi:
                    pairs[other] = tuple((t, self._local_hour(t)) for t in times[lo:hi])
        return WindowSnapshot(
            subj.subject, subj.kind, subj.number_class, at_ms, windows, peers, subj.factor, pairs
        )

    def _peer_span(self, state: NumberState, spec: WindowSpec, at_ms: int) -> tuple[int, int]:
        """[since, until) in epoch seconds of the busiest ``spec`` window containing ``at_ms``."""
        end = busiest_window_end(
            state.long if spec.long else state.short,
            bucket_of(at_ms, spec.bucket_s),
            bucket_of(state.newest_ms, spec.bucket_s),
            spec.n_buckets,
        )
        return (end - spec.n_buckets + 1) * spec.bucket_s, (end + 1) * spec.bucket_s

    def _local_hour(self, t_s: int) -> int:
        """The hour of the day at epoch second ``t_s`` in the configured timezone (cached per
        quarter hour: every zone's offsets are whole quarter hours)."""
        slot = t_s // 900
        hour = self._hours.get(slot)
        if hour is None:
            if len(self._hours) > 4096:
                self._hours.clear()
            hour = self._hours[slot] = datetime.fromtimestamp(slot * 900, self.tz).hour
        return hour

    def _window(
        self, state: NumberState, spec: WindowSpec, at_ms: int, cache: WindowCache | None = None
    ) -> list[int]:
        buckets = state.long if spec.long else state.short
        at = bucket_of(at_ms, spec.bucket_s)
        newest = bucket_of(state.newest_ms, spec.bucket_s)
        if cache is not None and at >= newest:
            # In order (the record is in the subject's newest bucket): the window ends there,
            # and its sums are kept up to date by _apply as records are added.
            hit = cache.get(spec.name)
            if hit is not None and hit[0] == at:
                return hit[1]
            total = sum_in_window(buckets, at, spec.n_buckets, N_FEATURES)
            cache[spec.name] = (at, total, spec)
            return total
        end = busiest_window_end(buckets, at, newest, spec.n_buckets)
        return sum_in_window(buckets, end, spec.n_buckets, N_FEATURES)

    def _evaluate(
        self,
        subj: Subject,
        state: NumberState,
        active: list[tuple[Detector, DetectorPolicy]],
        event_ms: int,
        now_ms: int,
        out: Outcome,
        reports: Reports = NO_REPORTS,
        cache: WindowCache | None = None,
        debt: DebtContext | None = None,
        near: set[str] | None = None,
    ) -> None:
        plan = self.plans[subj.kind]
        needs = {w for d, _ in active for w in plan.needs[d.name]}
        snap = self.snapshot(subj, state, needs, event_ms, cache)
        if debt is not None and near:
            snap = with_debt_context(
                snap, debt, near, event_ms, self.policy.complaints, self.circles
            )
        for detector, dpolicy in active:
            finding = detector.fn(snap, dpolicy)
            if finding is None:
                continue
            more = {w for w in detector.reads if w in self.specs and w not in snap.windows}
            if more:  # the windows it reads to confirm a finding, computed only now
                full = self.snapshot(subj, state, needs | more, event_ms, cache)
                snap = replace(snap, windows=full.windows)
                finding = detector.fn(snap, dpolicy)
                if finding is None:
                    continue
            if reports.count and reports.category is not None:
                finding = replace(
                    finding,
                    category=reports.category,
                    evidence={**finding.evidence, "complaints": reports.count},
                    reasons=(
                        *finding.reasons,
                        f"{reports.count} complaint report(s), latest: {reports.category}",
                    ),
                )
            self.episodes.raise_(subj, detector.name, finding, state, event_ms, now_ms, out)
            for member in finding.members:
                if member.startswith(UNASSERTED):
                    continue  # a spoofed identity is never intercepted
                calls = finding.member_calls.get(member, snap.peers.get(member, 0))
                self.episodes.raise_member(
                    member, calls, detector.name, finding, state, event_ms, now_ms, out
                )
