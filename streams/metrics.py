"""Prometheus metrics. Labels are closed sets (reasons, detectors, severities): never numbers."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from detectors.alerts import Alert
from streams.items import Outcome

STAGE_CALLERS = "callers"
STAGE_SUBJECTS = "subjects"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created doubles scrapes
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.cdrs = Counter("dialwatch_cdrs", "CDRs seen, by result", ["result"], registry=r)
        self.observations = Counter(
            "dialwatch_derived_observations",
            "Callee, block and trunk observations applied by stage 2, by result",
            ["result"],
            registry=r,
        )
        self.complaints = Counter(
            "dialwatch_complaints",
            "Complaint reports read, by result (accepted, or the reject reason)",
            ["result"],
            registry=r,
        )
        self.repartitioned = Counter(
            "dialwatch_repartitioned_cdrs",
            "CDRs admitted on a partition other than their caller's, re-keyed to it",
            registry=r,
        )
        self.rejects = Counter(
            "dialwatch_rejected_cdrs", "Rejected CDRs, by reason", ["reason"], registry=r
        )
        self.rejected_observations = Counter(
            "dialwatch_rejected_observations",
            "Stage-2 observations rejected, by reason (its CDR was admitted by stage 1)",
            ["reason"],
            registry=r,
        )
        self.alerts = Counter(
            "dialwatch_alerts", "Alerts published", ["detector", "severity", "state"], registry=r
        )
        self.batches = Counter(
            "dialwatch_batches", "Partition batches applied, by stage", ["stage"], registry=r
        )
        self.batch_seconds = Histogram(
            "dialwatch_batch_seconds",
            "Time to apply one partition batch (store read, detectors, store write), by stage",
            ["stage"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.store_errors = Counter(
            "dialwatch_store_errors", "Store calls that failed and were retried", registry=r
        )
        self.refused = Counter(
            "dialwatch_send_refused",
            "Messages the broker or client refused for good (too large, invalid topic), by topic"
            " and outcome: dead_lettered, or dropped when the dead letter was refused too",
            ["topic", "outcome"],
            registry=r,
        )
        self.restored = Counter(
            "dialwatch_restored_messages",
            "Messages read again from Kafka because the store was behind them (it lost writes)",
            ["stage"],
            registry=r,
        )
        # Issue 16 (README "Metrics and endpoints"): latency, Redis round trips, batch sizes.
        self.alert_latency = Histogram(
            "dialwatch_alert_latency_seconds",
            "From the Kafka timestamp of the oldest message of the partition batch that raised "
            "an alert to the alert confirmed published, by stage",
            ["stage"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.redis_seconds = Histogram(
            "dialwatch_redis_seconds",
            "Round trip of one Redis call: the state scripts (read, write) and the list gauges",
            ["op"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=r,
        )
        self.batch_records = Histogram(
            "dialwatch_batch_records",
            "Records (CDRs or stage-2 observations) in one partition batch, by stage",
            ["stage"],
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 20000),
            registry=r,
        )
        self.held = Gauge(
            "dialwatch_reorder_held_observations",
            "Stage-2 observations held back for the canonical order, by derived partition",
            ["partition"],
            registry=r,
        )
        self.forced = Counter(
            "dialwatch_reorder_forced_observations",
            "Stage-2 observations released early because DIALWATCH_REORDER_MAX_HELD was reached",
            registry=r,
        )
        self.watermark = Gauge(
            "dialwatch_watermark_seconds",
            "Newest partition watermark (event time, epoch seconds)",
            registry=r,
        )

    def record(
        self, outcome: Outcome, seconds: float, stage: str = STAGE_CALLERS, partition: int = -1
    ) -> None:
        """Count one applied batch; stage 1 counts CDRs, stage 2 derived observations."""
        if stage != STAGE_CALLERS and partition >= 0:
            self.held.labels(str(partition)).set(outcome.held)
        if outcome.forced:
            self.forced.inc(outcome.forced)
        self.batches.labels(stage).inc()
        self.batch_seconds.labels(stage).observe(seconds)
        counter = self.cdrs if stage == STAGE_CALLERS else self.observations
        results = (
            ("accepted", outcome.accepted),
            ("duplicate", outcome.duplicates),
            ("replayed", outcome.replayed),
            ("to_trunk", outcome.to_trunk),
            ("rejected", len(outcome.rejects)),
        )
        self.batch_records.labels(stage).observe(sum(n for _, n in results))
        for result, n in results:
            if n:
                counter.labels(result).inc(n)
        if outcome.moved:
            self.repartitioned.inc(len(outcome.moved))
        rejects = self.rejects if stage == STAGE_CALLERS else self.rejected_observations
        for reason, n in outcome.reject_counts().items():
            rejects.labels(reason).inc(n)
        if outcome.watermark_ms and stage == STAGE_CALLERS:
            self.watermark.set(outcome.watermark_ms / 1000)

    def published(self, alert: Alert) -> None:
        self.alerts.labels(alert.detector, alert.severity, alert.state).inc()

    def alerts_latency(self, stage: str, alerts: int, arrived_s: float | None) -> None:
        """``alerts`` alerts of a batch whose oldest message Kafka stamped ``arrived_s``
        (epoch seconds) were just confirmed published."""
        if arrived_s is None:
            return
        seconds = max(0.0, time.time() - arrived_s)
        for _ in range(alerts):
            self.alert_latency.labels(stage).observe(seconds)

    def redis_call(self, op: str, seconds: float) -> None:
        self.redis_seconds.labels(op).observe(seconds)
