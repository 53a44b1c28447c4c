"""Smoke test of ``python -m benchmarks.soak`` at a tiny size: its own broker and Redis, the real
worker as a subprocess, half a minute of paced traffic sampled every 3 s. The verdict itself is
not asserted: at this size the filled phase lasts a quarter of a minute and Redis keys grow by
design (benchmarks README, "Soak")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_soak_samples_and_catches_up(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    argv = [sys.executable, "-m", "benchmarks.soak", "--minutes", "0.5", "--subscribers", "500"]
    argv += ["--days", "2", "--sample-s", "3", "--json", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=280)
    stdout = done.stdout.decode()
    assert done.returncode == 0, (stdout + done.stderr.decode())[-4000:]
    assert "wall s" in stdout and "produced" in stdout and "kept up:" in stdout

    doc = orjson.loads(out.read_bytes())
    samples = doc["samples"]
    assert len(samples) >= 5, samples
    produced = [s["produced"] for s in samples]
    assert produced == sorted(produced) and produced[0] < produced[-1], produced
    assert any(s["filled"] for s in samples) and not samples[0]["filled"]
    assert doc["verdict"].startswith(("FLAT", "GROWING", "UNDECIDED")), doc["verdict"]
    assert doc["produced"] == doc["records"] > 0
    assert doc["applied"] == doc["produced"] and doc["caught_up"] is True
    assert samples[-1]["lag"] == 0
    assert all(s["worker_rss_kb"] > 0 and s["redis_keys"] >= 0 for s in samples)
