"""The allowlist: numbers that are never given action ``intercept``.

A file with one number per line (``#`` starts a comment), plus numbers added at run time.
``reload()`` re-reads the file without a restart.
"""

from __future__ import annotations

from pathlib import Path

from detectors.numbering import normalise


class Allowlist:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._from_file: frozenset[str] = frozenset()
        self._added: set[str] = set()
        self.reload()

    def reload(self) -> int:
        if self.path is None:
            return 0
        numbers: set[str] = set()
        for lineno, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            number = normalise(text)
            if number is None:
                raise ValueError(f"{self.path}:{lineno}: not a phone number")
            numbers.add(number)
        self._from_file = frozenset(numbers)
        return len(numbers)

    def add(self, raw: str) -> str:
        number = normalise(raw)
        if number is None:
            raise ValueError("not a phone number")
        self._added.add(number)
        return number

    def __contains__(self, number: object) -> bool:
        return number in self._from_file or number in self._added

    def __len__(self) -> int:
        return len(self._from_file | self._added)
