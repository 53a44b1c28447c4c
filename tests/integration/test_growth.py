"""Smoke test of ``python -m benchmarks.growth`` at tiny sizes, without the worker: both parts
run (scan subprocesses; scans into fresh redis-servers) and their figures are positive."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_growth_benchmark_writes_both_parts(tmp_path: Path) -> None:
    out = tmp_path / "growth.json"
    started = time.monotonic()
    argv = [sys.executable, "-m", "benchmarks.growth", "--cdrs", "2000,4000"]
    argv += ["--numbers", "500,1000", "--skip-worker", "--json", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=60)
    elapsed = time.monotonic() - started
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, output[-4000:]
    assert elapsed < 60, f"took {elapsed:.0f} s"
    doc = orjson.loads(out.read_bytes())

    cdr_runs = doc["cdr_growth"]["runs"]
    assert [run["cdrs"] for run in cdr_runs] == [2000, 4000]
    for run in cdr_runs:
        scan = run["scan"]
        assert scan["ok"] and scan["records"] == run["cdrs"], scan
        for figure in ("seconds", "cdrs_per_s", "cpu_s_per_million", "peak_rss_mb"):
            assert positive(scan[figure]), (figure, scan)
        assert run["worker"]["skipped"] == "--skip-worker"
    assert positive(doc["cdr_growth"]["summary"]["scan"]["cdrs_per_s_ratio"])
    assert doc["cdr_growth"]["summary"]["worker"] is None

    number_runs = doc["number_growth"]["runs"]
    assert [run["subscribers"] for run in number_runs] == [500, 1000]
    for run in number_runs:
        assert run["ok"] and run["read"] == run["cdrs"] == run["accepted"], run
        assert run["callers"] <= run["subscribers"]
        for figure in (
            "cdrs_per_s",
            "scan_cpu_s_per_million",
            "used_memory_growth",
            "bytes_per_number",
            "dbsize",
            "keys_per_number",
        ):
            assert positive(run[figure]), (figure, run)
        # Stage 1 keeps the callers' windows, stage 2 the callees' and blocks'.
        assert run["keys"]["number"] == run["callers"] and positive(run["keys"]["callee"])
    summary = doc["number_growth"]["summary"]
    for figure in ("bytes_per_number", "scan_cpu_s_per_million"):
        assert positive(summary[figure]["ratio"]), summary
        assert summary[figure]["verdict"] == "linear" or summary[figure]["verdict"].startswith(
            ("grows x", "falls x")
        )
    assert "A. CDR growth" in done.stdout.decode() and "B. Distinct-number" in done.stdout.decode()
