"""The allowlist: file, reload on change, shared Redis entries, run-time additions, emergency
numbers; and the bearer-token check of the worker's state-changing endpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config.numbering import CHINA
from streams.allowlist import Allowlist, shared_key
from streams.security import bearer_ok


def write(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_file_entries_are_normalised_and_comments_ignored(tmp_path: Path) -> None:
    path = tmp_path / "allow.txt"
    write(path, "# banks\n95588\n+86 400-123-4567  # hotline\n\n", 1_000_000_000)
    allow = Allowlist(path, CHINA)
    assert "95588" in allow and "4001234567" in allow
    assert "13800138000" not in allow
    assert len(allow) == 2


def test_reload_if_changed_reads_only_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "allow.txt"
    write(path, "95588\n", 1_000_000_000)
    allow = Allowlist(path, CHINA)
    assert allow.reload_if_changed() is False
    write(path, "95566\n", 2_000_000_000)
    assert allow.reload_if_changed() is True
    assert "95566" in allow and "95588" not in allow


def test_a_bad_file_is_refused_and_the_old_list_kept(tmp_path: Path) -> None:
    path = tmp_path / "allow.txt"
    write(path, "95588\n", 1_000_000_000)
    allow = Allowlist(path, CHINA)
    write(path, "95588\nnot-a-number\n", 2_000_000_000)
    with pytest.raises(ValueError, match=":2: not a phone number"):
        allow.reload_if_changed()
    assert "95588" in allow


@pytest.mark.parametrize(
    ("members", "inside", "outside"),
    [
        ([b"95588", b"+8613800138000"], ["95588", "13800138000"], ["95566"]),
        (["95566", b"\xff\xfe", "letters"], ["95566"], ["95588"]),  # bad members skipped
        ([], [], ["95588"]),
    ],
)
def test_shared_entries_replace_the_previous_ones(
    members: list[bytes | str], inside: list[str], outside: list[str]
) -> None:
    allow = Allowlist(None, CHINA)
    allow.set_shared([b"95588"])
    allow.set_shared(members)
    assert all(n in allow for n in inside)
    assert not any(n in allow for n in outside)


def test_run_time_additions_and_emergency_numbers() -> None:
    allow = Allowlist(None, CHINA)
    assert allow.add("010-1234 5678") == "1012345678"
    assert "1012345678" in allow
    assert "110" in allow and "120" in allow  # emergency numbers are never intercepted
    assert 13800138000 not in allow  # only normalised strings match
    with pytest.raises(ValueError):
        allow.add("call me")


def test_shared_key_uses_the_prefix() -> None:
    assert shared_key("dw") == "dw:allowlist"


@pytest.mark.parametrize(
    ("header", "token", "ok"),
    [
        ("Bearer s3cret", "s3cret", True),
        ("Bearer s3cret ", "s3cret", False),
        ("bearer s3cret", "s3cret", False),
        ("Bearer wrong", "s3cret", False),
        (None, "s3cret", False),
        ("Bearer ", None, False),  # no token configured: the endpoints are off
        ("Bearer anything", None, False),
    ],
)
def test_bearer_token(header: str | None, token: str | None, ok: bool) -> None:
    assert bearer_ok(header, token) is ok
