"""The allowlist: numbers that are never given action ``intercept``, at most ``monitor``.

Three sources, all normalised: a file with one number per line (``#`` starts a comment), which
``reload_if_changed()`` re-reads when its modification time changes; entries shared by every
worker in a Redis set (``<key_prefix>:allowlist``, added with ``dialwatch allowlist add`` or
``POST /allowlist``), fetched by ``set_shared()``; and entries added in this process with
``add()``. Emergency and public-service numbers are always allowlisted.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from config.numbering import NumberingPlan, is_emergency, normalise


def shared_key(key_prefix: str) -> str:
    return f"{key_prefix}:allowlist"


class Allowlist:
    def __init__(self, path: Path | None, plan: NumberingPlan) -> None:
        self.path = path
        self.plan = plan
        self._from_file: frozenset[str] = frozenset()
        self._shared: frozenset[str] = frozenset()
        self._added: set[str] = set()
        self._mtime_ns: int | None = None
        self.reload()

    def reload(self) -> int:
        if self.path is None:
            return 0
        self._mtime_ns = self.path.stat().st_mtime_ns
        numbers: set[str] = set()
        for lineno, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            number = normalise(text, self.plan)
            if number is None:
                raise ValueError(f"{self.path}:{lineno}: not a phone number")
            numbers.add(number)
        self._from_file = frozenset(numbers)
        return len(numbers)

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed since the last read; a bad file keeps the old list."""
        if self.path is None or self.path.stat().st_mtime_ns == self._mtime_ns:
            return False
        self.reload()
        return True

    def set_shared(self, members: Iterable[bytes | str]) -> int:
        """Replace the shared entries with the Redis set's members (bad members are skipped)."""
        numbers = set()
        for raw in members:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            number = normalise(text, self.plan)
            if number is not None:
                numbers.add(number)
        self._shared = frozenset(numbers)
        return len(numbers)

    def add(self, raw: str) -> str:
        number = normalise(raw, self.plan)
        if number is None:
            raise ValueError("not a phone number")
        self._added.add(number)
        return number

    def discard(self, number: str) -> int:
        """Forget an entry added in this process; 1 if there was one."""
        if number in self._added:
            self._added.discard(number)
            return 1
        return 0

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, str):
            return False
        return (
            number in self._from_file
            or number in self._shared
            or number in self._added
            or is_emergency(number, self.plan)
        )

    def __len__(self) -> int:
        return len(self._from_file | self._shared | self._added)
