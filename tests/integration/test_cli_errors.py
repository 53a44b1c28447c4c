"""The mistakes that need a Redis, real or unreachable: one line naming it, exit status 2; and
the same commands against the suite's real Redis, exit status 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.tools import simulate as sim
from streams.tools.services import free_port
from tests.unit.test_cli_errors import START


@pytest.fixture(scope="module")
def cdrs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    records, _ = sim.generate(
        sim.SimSpec(start=START, seed=3, hours=1, subscribers=30, bulk_diallers=1)
    )
    path = tmp_path_factory.mktemp("cli-redis") / "cdrs.csv"
    sim.write_csv(path, records)
    return path


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "DIALWATCH_REDIS"}
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True,
        text=True,
        env={**environ, **env},
        timeout=120,
    )


def _one_line(done: subprocess.CompletedProcess[str], status: int, *culprits: str) -> None:
    err = done.stderr
    assert done.returncode == status, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    for culprit in culprits:
        assert culprit in err, err


def test_scan_with_an_unreachable_redis(cdrs: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    _one_line(_run(["scan", str(cdrs), "--redis", url]), 2, f"--redis {url}", "cannot reach")


def test_scan_with_an_unreachable_redis_from_the_environment(cdrs: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    _one_line(_run(["scan", str(cdrs)], DIALWATCH_REDIS=url), 2, f"DIALWATCH_REDIS {url}")


def test_allowlist_with_an_unreachable_redis() -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    _one_line(_run(["allowlist", "count"], DIALWATCH_REDIS=url), 2, url, "cannot reach")


def test_verify_with_an_unreachable_redis(cdrs: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    _one_line(_run(["verify", str(cdrs), "--redis", url]), 2, f"--redis {url}")


def test_scan_with_a_wrong_password_names_the_url_not_the_password(
    cdrs: Path, redis_url: str
) -> None:
    host = redis_url.split("://", 1)[1].rsplit("@", 1)[-1]
    url = f"redis://nobody:s3cret-guess@{host}"
    done = _run(["scan", str(cdrs), "--redis", url])
    _one_line(done, 2, "--redis redis://nobody:", "refused the login")
    assert "s3cret-guess" not in done.stderr


def test_scan_and_allowlist_with_the_real_redis(cdrs: Path, redis_url: str, unique: str) -> None:
    env = {"DIALWATCH_KEY_PREFIX": f"cli{unique}"}
    done = _run(["scan", str(cdrs), "--redis", redis_url], **env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("scanned ")
    again = _run(["scan", str(cdrs), "--redis", redis_url], **env)
    assert again.returncode == 0, again.stderr  # all duplicates: the command still ran
    assert " 0 accepted" in again.stderr
    listed = _run(["allowlist", "add", "13800138000"], DIALWATCH_REDIS=redis_url, **env)
    assert listed.returncode == 0 and listed.stdout == "1 shared allowlist entries\n"
