"""Smoke test of ``python -m benchmarks.throughput`` at a tiny size: every stage runs (its own
broker and Redis, real worker subprocesses) and every figure in its JSON is a positive number."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
FIGURES = ("records", "seconds", "cdrs_per_s", "cpu_s", "cpu_s_per_million", "peak_rss_mb")


def positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


CDRS = 4000  # enough that a scan's work stands clear of its start-up's variation


def test_throughput_benchmark_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    started = time.monotonic()
    argv = [sys.executable, "-m", "benchmarks.throughput", "--cdrs", str(CDRS), "--diallers", "3"]
    argv += ["--short-fetch-ms", "0"]
    done = subprocess.run([*argv, "--json", str(out)], cwd=ROOT, capture_output=True, timeout=240)
    elapsed = time.monotonic() - started
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, output[-4000:]
    assert elapsed < 240, f"took {elapsed:.0f} s"
    doc = orjson.loads(out.read_bytes())
    assert doc["records"] == CDRS and positive(doc["derived_observations"])

    stages = doc["stages"]
    # The bounded batched run only happens when the default one fails; the short-fetch latency
    # diagnostic is switched off to stay well inside the time limit.
    optional = ("worker_batched_bounded", "alert_latency_short_fetch")
    for name in optional:
        assert stages[name]["skipped"], (name, stages[name])
    for name, stage in stages.items():
        if name in optional:
            continue
        assert stage["ok"] and not stage["skipped"], (name, stage)
        for figure in FIGURES:
            assert positive(stage[figure]), (name, figure, stage[figure])
        for service, cpu in stage["services_cpu_s_per_million"].items():
            assert isinstance(cpu, int | float) and cpu >= 0, (name, service, cpu)
        if name != "alert_latency":
            assert stage["records"] == CDRS, (name, stage["records"])
    for name in ("worker_single", "worker_batched"):
        assert stages[name]["derived_observations"] == doc["derived_observations"]
        probe = stages[name]["redis_get_other_client"]
        assert positive(probe["count"]) and positive(probe["p99_ms"]), probe

    latency = stages["alert_latency"]
    assert latency["diallers"] == 3 and latency["missing"] == 0, latency
    for figure in ("p50_ms", "p99_ms", "max_ms", "rate_sent", "worker_cpu_share"):
        assert positive(latency[figure]), (figure, latency)
    assert positive(doc["redis_get_idle"]["p99_ms"])

    pairs = {(r["stage"], r["floor"]) for r in doc["ratios"]}
    assert pairs == {
        ("worker_single", "faust_floor_single"),
        ("worker_batched", "aiokafka_batched"),
        ("scan", "aiokafka_batched"),
        ("scan", "aiokafka_single"),
        ("scan", "scan_reference"),
        ("scan", "duckdb"),
        ("scan_csv", "scan"),
        ("scan_csv", "duckdb"),
    }
    assert stages["scan_csv"]["same_alert_ids_as_jsonl"] is True
    for ratio in doc["ratios"]:
        assert positive(ratio["rate_ratio"]) and positive(ratio["cpu_per_cdr_ratio"]), ratio
    assert "worker, 1 CDR/msg / Faust floor" in done.stdout.decode()
    assert "scan x" in done.stdout.decode() and stages["duckdb"]["records"] == CDRS
