"""The static checks, so that the test command runs them: ruff (lint and format), mypy strict
and the import-linter contracts, each over the whole repository as configured in pyproject.toml.

Each runs from the repository root with this interpreter's tools, and with the root first on
PYTHONPATH, so lint-imports checks this tree and not another checkout installed in the venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

CHECKS = {
    "ruff-check": [sys.executable, "-m", "ruff", "check", "."],
    "ruff-format": [sys.executable, "-m", "ruff", "format", "--check", "."],
    "mypy": [sys.executable, "-m", "mypy"],
    "lint-imports": [str(BIN / "lint-imports")],
}


@pytest.mark.parametrize("name", CHECKS)
def test_static_check_passes(name: str) -> None:
    argv = CHECKS[name]
    if not Path(argv[0]).exists():
        pytest.fail(f"{argv[0]} not found: run bash deploy/bootstrap.sh --test")
    path = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    if done.returncode != 0:
        output = f"{done.stdout}{done.stderr}"
        pytest.fail(f"{name} failed (exit {done.returncode}):\n{output}", pytrace=False)
