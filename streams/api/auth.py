"""API tokens and roles (docs/api.md): who is asking, and what they may do.

Tokens come from ``DIALWATCH_API_TOKENS_FILE``, one ``name role token`` per line (``#`` starts
a comment; the token may be written ``sha256:<hex>`` instead of in clear), and the older single
``DIALWATCH_API_TOKEN`` (or ``_FILE``), which is an admin token named ``api-token``. Tokens are
compared in constant time and never appear in a message, log line or repr.

The console signs its session cookie with a key derived from every configured token, so each
worker that reads the same tokens accepts the same sessions, and changing the tokens ends them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from config.settings import Settings
from streams.security import SecretError, api_token

NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_TOKEN_CHARS = 16
LEGACY_NAME = "api-token"


class Role(IntEnum):
    READ_ONLY = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, text: str) -> Role:
        for role in cls:
            if role.label == text:
                return role
        raise ValueError(f"unknown role {text!r} (read-only, operator or admin)")


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return self.role >= role


@dataclass(frozen=True, slots=True)
class _Token:
    name: str
    role: Role
    digest: bytes = field(repr=False)  # sha256 of the token


class Tokens:
    """The configured tokens; empty when none is (then every API call is refused)."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._by_name = {t.name: t for t in tokens}
        material = b"".join(t.name.encode() + b"\0" + t.digest for t in sorted(tokens, key=_n))
        self.session_key = hashlib.sha256(b"dialwatch-console-session\0" + material).digest()

    def __len__(self) -> int:
        return len(self._tokens)

    def check(self, presented: str) -> Principal | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found: _Token | None = None
        for token in self._tokens:  # every comparison made, in constant time each
            if hmac.compare_digest(token.digest, digest):
                found = token
        return None if found is None else Principal(found.name, found.role)

    def bearer(self, header: str | None) -> Principal | None:
        if header is None or not header.startswith("Bearer "):
            return None
        return self.check(header[7:].strip())

    def named(self, name: str) -> Principal | None:
        token = self._by_name.get(name)
        return None if token is None else Principal(token.name, token.role)

    # ---------------------------------------------------------------- console sessions

    def session(self, principal: Principal, lifetime_s: int, now: float | None = None) -> str:
        """A cookie value naming ``principal`` until ``lifetime_s`` from now, signed."""
        expires = int((now if now is not None else time.time()) + lifetime_s)
        body = f"{principal.name}|{principal.role.label}|{expires}"
        return f"{body}|{self._sign(body)}"

    def from_session(self, cookie: str | None, now: float | None = None) -> Principal | None:
        if not cookie or cookie.count("|") != 3:
            return None
        body, _, signature = cookie.rpartition("|")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        name, role, expires = body.split("|")
        if not expires.isdigit() or int(expires) < (now if now is not None else time.time()):
            return None
        current = self.named(name)  # a token removed or given another role ends its sessions
        return current if current is not None and current.role.label == role else None

    def csrf(self, cookie: str) -> str:
        """The form token that goes with a session (a cross-site form cannot know it)."""
        return self._sign("csrf|" + cookie)

    def _sign(self, text: str) -> str:
        return hmac.new(self.session_key, text.encode(), hashlib.sha256).hexdigest()


def _n(token: _Token) -> str:
    return token.name


def parse_tokens(text: str, source: str) -> list[_Token]:
    """The tokens of a tokens file; ValueError naming ``source`` and the line, never a token."""
    out: list[_Token] = []
    names: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{source}:{lineno}"
        if len(words) != 3:
            raise ValueError(f"{where}: expected 'name role token'")
        name, role_text, secret = words
        if not NAME.fullmatch(name):
            raise ValueError(f"{where}: a name is 1-64 of A-Z a-z 0-9 . _ @ -")
        if name in names:
            raise ValueError(f"{where}: the name {name} appears twice")
        try:
            role = Role.parse(role_text)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if secret.startswith("sha256:"):
            hexdigest = secret[7:]
            if not re.fullmatch(r"[0-9a-fA-F]{64}", hexdigest):
                raise ValueError(f"{where}: sha256: needs 64 hex digits")
            digest = bytes.fromhex(hexdigest)
        elif len(secret) < MIN_TOKEN_CHARS:
            raise ValueError(f"{where}: a token needs at least {MIN_TOKEN_CHARS} characters")
        else:
            digest = hashlib.sha256(secret.encode()).digest()
        if any(hmac.compare_digest(t.digest, digest) for t in out):
            raise ValueError(f"{where}: the same token is given to two names")
        names.add(name)
        out.append(_Token(name, role, digest))
    return out


def load_tokens(settings: Settings) -> Tokens:
    """The tokens file's tokens plus the single legacy token (an admin). ValueError (or
    SecretError) with the file and line named when the file is unusable."""
    tokens: list[_Token] = []
    path: Path | None = settings.api_tokens_file
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(
                f"api_tokens_file: cannot read {path}: {type(exc).__name__}"
            ) from None
        tokens = parse_tokens(text, str(path))
    legacy = api_token(settings)
    if legacy is not None:
        digest = hashlib.sha256(legacy.encode()).digest()
        if any(t.name == LEGACY_NAME for t in tokens):
            raise ValueError(f"api_tokens_file: the name {LEGACY_NAME} is kept for api_token")
        if any(hmac.compare_digest(t.digest, digest) for t in tokens):
            raise ValueError("api_token is also in api_tokens_file")
        tokens.append(_Token(LEGACY_NAME, Role.ADMIN, digest))
    return Tokens(tokens)
