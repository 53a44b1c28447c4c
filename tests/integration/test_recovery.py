"""Recovery after a SIGKILL, measured from outside with the shipped consumer-group settings
(issue 17 item 2): ``python -m benchmarks.recovery`` with no override (its own Tansu broker and
redis-server, two workers, a steady stream of fresh CDRs). From the kill until every CDR
partition's stored offset (Redis) and the group's committed offset (the broker) move again:
at most 10 s with a peer alive, 15 s for a lone worker restarted at once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
FIGURE = re.compile(r"^\s*(SIGKILL [^:]+): stored (\S+) s, committed (\S+) s$", re.MULTILINE)
TARGETS = {"SIGKILL with a peer alive": 10.0, "SIGKILL of the lone worker, restarted at once": 15.0}


@pytest.mark.timeout(400)
def test_detection_resumes_within_the_targets_after_a_sigkill_with_shipped_settings() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALWATCH_")}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.recovery", "--runs", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=360,
    )
    output = done.stdout.decode() + done.stderr.decode()
    assert "overrides: none (shipped)" in output, output[-3000:]
    assert "session_timeout_s=4.0, heartbeat_interval_s=0.5" in output, output[-3000:]
    figures = {name: (float(s), float(c)) for name, s, c in FIGURE.findall(output)}
    assert set(figures) == set(TARGETS), output[-3000:]  # a figure past 40 s reads "> 40"
    for name, target in TARGETS.items():
        assert max(figures[name]) <= target, (name, figures[name], output[-3000:])
    assert done.returncode == 0, output[-3000:]
