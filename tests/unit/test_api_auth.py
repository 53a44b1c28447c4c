"""API tokens, roles and console sessions (streams.api.auth): pure logic, no server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from config.settings import Settings
from streams.api.auth import LEGACY_NAME, Principal, Role, Tokens, load_tokens, parse_tokens
from streams.api.openapi import document
from streams.api.routes import ROUTES, roles

T_READ, T_OP, T_ADMIN = "r" * 20, "o" * 20, "a" * 20
FILE = (
    f"# comment\nreader read-only {T_READ}\nolga operator {T_OP}  # trailing\n\n"
    f"boss admin {T_ADMIN}\n"
)


def tokens(tmp_path: Path, text: str = FILE, **over: object) -> Tokens:
    path = tmp_path / "tokens"
    path.write_text(text)
    return load_tokens(Settings(api_tokens_file=path).with_(**over))


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("alice operator", "expected 'name role token'"),
        ("alice superuser " + "x" * 20, "unknown role"),
        ("al ice operator " + "x" * 20, "expected 'name role token'"),
        ("al/ice operator " + "x" * 20, "a name is"),
        ("alice operator short", "at least 16"),
        ("alice operator sha256:abc", "64 hex digits"),
        (f"alice operator {'x' * 20}\nalice admin {'y' * 20}", "appears twice"),
        (f"alice operator {'x' * 20}\nbob admin {'x' * 20}", "two names"),
    ],
)
def test_a_bad_tokens_file_names_the_line_never_the_token(line: str, error: str) -> None:
    with pytest.raises(ValueError, match=error) as info:
        parse_tokens(line, "tokens.txt")
    assert "tokens.txt:" in str(info.value)
    assert "x" * 16 not in str(info.value) and "short" not in str(info.value)


def test_roles_are_ordered_and_tokens_are_checked(tmp_path: Path) -> None:
    t = tokens(tmp_path)
    assert t.check(T_READ) == Principal("reader", Role.READ_ONLY)
    assert t.bearer(f"Bearer {T_OP}") == Principal("olga", Role.OPERATOR)
    assert t.bearer(T_OP) is None and t.bearer(None) is None
    assert t.check("r" * 19) is None
    admin = t.check(T_ADMIN)
    assert admin is not None
    assert admin.may(Role.OPERATOR) and admin.may(Role.READ_ONLY)
    assert not Principal("x", Role.READ_ONLY).may(Role.OPERATOR)
    assert [r.label for r in Role] == ["read-only", "operator", "admin"]


def test_hashed_tokens_and_the_legacy_token(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"s" * 20).hexdigest()
    t = tokens(tmp_path, f"hashed operator sha256:{digest}\n", api_token="legacy-token-value")
    assert t.check("s" * 20) == Principal("hashed", Role.OPERATOR)
    assert t.check("legacy-token-value") == Principal(LEGACY_NAME, Role.ADMIN)
    with pytest.raises(ValueError, match="also in api_tokens_file"):
        tokens(tmp_path, f"x admin {'q' * 20}\n", api_token="q" * 20)
    assert len(load_tokens(Settings())) == 0


def test_sessions_are_signed_expire_and_end_with_the_token(tmp_path: Path) -> None:
    t = tokens(tmp_path)
    olga = Principal("olga", Role.OPERATOR)
    cookie = t.session(olga, 60, now=1000.0)
    assert T_OP not in cookie
    assert t.from_session(cookie, now=1030.0) == olga
    assert t.from_session(cookie, now=1061.0) is None
    forged = cookie.replace("operator", "admin")
    assert t.from_session(forged, now=1030.0) is None
    assert t.from_session("", now=1030.0) is None
    assert t.csrf(cookie) != t.csrf(forged)
    # Another role for the name, or other tokens altogether: the session is gone.
    other = tokens(tmp_path, FILE.replace("olga operator", "olga read-only"))
    assert other.from_session(cookie, now=1030.0) is None


def test_the_document_describes_every_route_with_its_role() -> None:
    doc = document(roles())
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        assert op["x-role"] == route.role.label
        assert {"200", "401", "403"} <= set(op["responses"])
    assert {"/healthz", "/readyz"} <= set(doc["paths"])


def test_the_worker_refuses_a_bad_tokens_file_in_one_line(tmp_path: Path) -> None:
    import argparse

    from streams.cli.checks import check_files
    from streams.errors import UsageError

    path = tmp_path / "tokens"
    path.write_text(f"olga superuser {'z' * 20}\n")
    args = argparse.Namespace(command="worker")
    with pytest.raises(UsageError, match=r"tokens:1: unknown role") as info:
        check_files(Settings(api_tokens_file=path), args)
    assert "z" * 20 not in str(info.value) and "\n" not in str(info.value)
