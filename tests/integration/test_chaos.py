"""The chaos loop in CI (issue 17 item 4): ``python -m benchmarks.chaos`` for 3 minutes (the
issue's CI run) with a fixed seed, whose plan holds 13 faults of all six kinds (SIGKILL,
SIGTERM, Redis frozen, broker frozen, Redis restarted from its AOF, a worker added), all
applied. Every record accounted for by ``dialwatch verify``, the alert ids exactly the
fault-free worker run's, none published twice. A failure names the seed:
``python -m benchmarks.chaos --minutes 3 --seed <seed>`` replays it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.chaos import KINDS, plan

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SEED, MINUTES = 22, 3  # seed 22: 13 faults, every kind (one of each already in 1.5 minutes)


def test_the_plan_is_meaningful() -> None:
    kinds = Counter(fault.kind for fault in plan(SEED, MINUTES))
    assert sum(kinds.values()) >= 13 and set(kinds) == set(KINDS), kinds


def test_chaos_loop_gives_the_fault_free_alert_ids() -> None:
    argv = [sys.executable, "-m", "benchmarks.chaos", "--minutes", str(MINUTES)]
    argv += ["--seed", str(SEED)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=900, text=True)
    output = done.stdout + done.stderr
    replay = f"seed {SEED}: replay with {' '.join(argv[1:])}\n{output[-5000:]}"
    assert "ALL-RECORDS-ACCOUNTED: True" in done.stdout, replay
    assert "alert ids equal the fault-free run's: True" in done.stdout, replay
    assert "ids published twice: 0" in done.stdout, replay
    faults = re.search(r"^faults: (.*)$", done.stdout, re.MULTILINE)
    assert faults is not None, replay
    applied = {k: int(n) for k, n in (part.rsplit(" ", 1) for part in faults[1].split(", "))}
    assert sum(applied.values()) >= 6 and applied["sigkill"] >= 1, replay
    assert all(applied[kind] >= 1 for kind in KINDS), replay
    assert done.returncode == 0, replay
