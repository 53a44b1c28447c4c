"""Writes deploy/grafana/dashboards/dialwatch.json, the provisioned dashboard (README
"Operations"). Run ``python deploy/grafana/dashboard.py`` after changing a panel;
tests/integration/test_deploy.py checks the JSON equals this output, and
tests/integration/test_operations.py evaluates every panel's query against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).parent / "dashboards" / "dialwatch.json"
DATASOURCE = {"type": "prometheus", "uid": "dialwatch-prometheus"}
RATE = "$__rate_interval"

# (title, unit, kind, [(legend, PromQL)], description)
PANELS: list[tuple[str, str, str, list[tuple[str, str]], str]] = [
    (
        "Throughput (CDRs/s by result)",
        "reqps",
        "timeseries",
        [("{{result}}", f"sum by (result) (rate(dialwatch_cdrs_total[{RATE}]))")],
        "CDRs applied by stage 1 per second: accepted, duplicate, replayed, rejected, to_trunk.",
    ),
    (
        "Workers up",
        "none",
        "stat",
        [("up", 'sum(up{job="dialwatch"})')],
        "Workers answering /metrics.",
    ),
    (
        "Interception list",
        "none",
        "stat",
        [("{{state}}", "max by (state) (dialwatch_interception_numbers)")],
        "Numbers intercepted (active), pending approval and victims protected. Every worker "
        "reports the same list, hence max.",
    ),
    (
        "Interception breaker",
        "none",
        "stat",
        [("open", "max(dialwatch_interception_breaker_open)")],
        "1 while the breaker is open: new auto-listings wait for approval.",
    ),
    (
        "Consumer lag (messages)",
        "short",
        "timeseries",
        [
            ("kafka {{topic}}", "sum by (topic) (dialwatch_consumer_lag_messages)"),
            ("state {{topic}}", "sum by (topic) (dialwatch_state_lag_messages)"),
        ],
        "Per input topic: log end minus the group's committed offset (Kafka's view) and minus "
        "the offset stored with the Redis state (the truth).",
    ),
    (
        "Event-time lag",
        "s",
        "timeseries",
        [("{{stage}}", "max by (stage) (dialwatch_event_time_lag_seconds)")],
        "Wall clock minus the newest start_time applied, worst partition per stage.",
    ),
    (
        "Alerts by detector (per minute)",
        "short",
        "timeseries",
        [
            (
                "{{detector}} {{state}}",
                f"sum by (detector, state) (rate(dialwatch_alerts_total[{RATE}])) * 60",
            )
        ],
        "Alerts published per minute, by detector and state (raised, escalated, cleared).",
    ),
    (
        "Rejected CDRs by reason (per second)",
        "reqps",
        "timeseries",
        [("{{reason}}", f"sum by (reason) (rate(dialwatch_rejected_cdrs_total[{RATE}]))")],
        "Rejected CDRs by reason (README Contracts: the closed set); each went to the "
        "dead-letter topic.",
    ),
    (
        "Batch latency p50 / p99",
        "s",
        "timeseries",
        [
            (
                "p50 {{stage}}",
                "histogram_quantile(0.5, sum by (le, stage) "
                f"(rate(dialwatch_batch_seconds_bucket[{RATE}])))",
            ),
            (
                "p99 {{stage}}",
                "histogram_quantile(0.99, sum by (le, stage) "
                f"(rate(dialwatch_batch_seconds_bucket[{RATE}])))",
            ),
        ],
        "One partition batch: store read, detectors, fenced store write.",
    ),
    (
        "Batch size p50 (records)",
        "short",
        "timeseries",
        [
            (
                "{{stage}}",
                "histogram_quantile(0.5, sum by (le, stage) "
                f"(rate(dialwatch_batch_records_bucket[{RATE}])))",
            )
        ],
        "Records per partition batch (CDRs for stage 1, observations for stage 2).",
    ),
    (
        "Alert latency p99",
        "s",
        "timeseries",
        [
            (
                "{{stage}}",
                "histogram_quantile(0.99, sum by (le, stage) "
                f"(rate(dialwatch_alert_latency_seconds_bucket[{RATE}])))",
            )
        ],
        "From the Kafka timestamp of the batch's oldest message to the alert confirmed "
        "published (stage 2: from its derived message).",
    ),
    (
        "Redis latency p99",
        "s",
        "timeseries",
        [
            (
                "{{op}}",
                "histogram_quantile(0.99, sum by (le, op) "
                f"(rate(dialwatch_redis_seconds_bucket[{RATE}])))",
            )
        ],
        "Round trip of the state scripts (read, write) and of the list gauges' pipeline.",
    ),
]


def panel(
    index: int, spec: tuple[str, str, str, list[tuple[str, str]], str], x: int, y: int
) -> dict[str, object]:
    title, unit, kind, targets, description = spec
    return {
        "id": index + 1,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width(kind), "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (legend, expr) in enumerate(targets)
        ],
    }


def width(kind: str) -> int:
    return 6 if kind == "stat" else 12


def layout() -> list[dict[str, object]]:
    """Panels left to right, 24 grid units a row, 8 high."""
    out, x, y = [], 0, 0
    for i, spec in enumerate(PANELS):
        w = width(spec[2])
        if x + w > 24:
            x, y = 0, y + 8
        out.append(panel(i, spec, x, y))
        x += w
    return out


def dashboard() -> dict[str, object]:
    return {
        "uid": "dialwatch",
        "title": "dialwatch",
        "description": "dialwatch workers: throughput, lag, alerts, interception list, latency",
        "tags": ["dialwatch"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": layout(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    sys.stdout.write(f"wrote {OUT}\n")
