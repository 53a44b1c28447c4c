"""The README's demo command, exactly as written, in a terminal of 80 and of 160 columns.

``bash deploy/bootstrap.sh && .venv/bin/dialwatch demo``: run from the repository root with the
demo's defaults and no ``DIALWATCH_*`` setting, so it starts its own broker and Redis as it does
for a new user. It must end with PASS and exit status 0 within two minutes.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMAND = [".venv/bin/dialwatch", "demo"]  # the README's, relative to the repository root
LIMIT_S = 120.0
ESCAPES = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]"  # CSI: cursor moves, colours
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, links
    r"|\x1b[=>()][0-9A-Za-z]?"
)


def _env(tmp: Path | None = None) -> dict[str, str]:
    """A new user's environment: no DIALWATCH_* setting; temporary files under ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALWATCH_")}
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    return env


def _run_in_terminal(columns: int, tmp: Path | None = None) -> tuple[int, float, str]:
    """Run the command on a pseudo-terminal of ``columns`` x 40; (status, seconds, screen text)."""
    env = _env(tmp)
    env.update(COLUMNS=str(columns), LINES="40", TERM="xterm-256color")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    started = time.monotonic()
    proc = subprocess.Popen(
        COMMAND, cwd=REPO, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    chunks: list[bytes] = []
    try:
        # Read until the terminal closes; past the limit, stop the demo the way Ctrl-C would.
        while True:
            if time.monotonic() - started > LIMIT_S + 60 and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    seconds = time.monotonic() - started
    return status, seconds, ESCAPES.sub("", b"".join(chunks).decode(errors="replace"))


def _keep_run(tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "--keep", "--subscribers", "1000", "--hours", "4"],
        cwd=REPO,
        env=_env(tmp),
        capture_output=True,
        text=True,
        timeout=LIMIT_S + 60,
    )


@pytest.fixture(scope="module")
def demos(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Path, Future[Any]]]]:
    """The three demo runs side by side (each starts its own broker, Redis and worker): in a
    terminal of 80 and of 160 columns, and with --keep; a test takes its run's result (or its
    error) and temporary directory."""
    assert (REPO / COMMAND[0]).is_file(), "run `bash deploy/bootstrap.sh` first (README)"
    tmp = {name: tmp_path_factory.mktemp(f"demo-{name}") for name in ("80", "160", "keep")}
    with ThreadPoolExecutor(len(tmp)) as pool:
        yield {
            "80": (tmp["80"], pool.submit(_run_in_terminal, 80, tmp["80"])),
            "160": (tmp["160"], pool.submit(_run_in_terminal, 160, tmp["160"])),
            "keep": (tmp["keep"], pool.submit(_keep_run, tmp["keep"])),
        }


@pytest.mark.parametrize("columns", [80, 160])
def test_the_readme_demo_command_passes_within_two_minutes(
    columns: int, demos: dict[str, tuple[Path, Future[Any]]]
) -> None:
    tmp_path, run = demos[str(columns)]
    status, seconds, screen = run.result(timeout=LIMIT_S + 120)
    tail = screen[-4000:]
    assert status == 0, tail
    assert re.search(r"^\s*PASS\s*$", screen, re.MULTILINE), tail
    assert "FAIL" not in screen, tail
    assert "false intercepts  none" in screen, tail
    assert seconds < LIMIT_S, f"took {seconds:.1f} s\n{tail}"
    assert not list(tmp_path.glob("dialwatch-demo-*")), "the demo left its files behind"


def test_keep_keeps_the_files_and_the_worker_log_is_plain_text(
    demos: dict[str, tuple[Path, Future[Any]]],
) -> None:
    tmp_path, run = demos["keep"]
    done = run.result(timeout=LIMIT_S + 120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "false intercepts  none" in done.stdout and "PASS" in done.stdout
    for role in ("bulk_dialler", "sequential_dialler", "one_ring", "bomber", "block_member"):
        assert re.search(rf"^{role} +(\d+)/\1 intercept", done.stdout, re.MULTILINE), role
    kept = re.search(
        r"^kept the demo's files \(worker log, allowlist\) in (\S+)$", done.stdout, re.M
    )
    assert kept, done.stdout[-3000:]
    workdir = Path(kept[1])
    assert workdir.parent == tmp_path
    log = (workdir / "worker.log").read_text()
    assert "INFO dialwatch.worker starting" in log
    assert "\x1b" not in log and "\r" not in log  # no spinner, no cursor codes
