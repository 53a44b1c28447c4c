"""The mistakes a user can make, and the exit status each gives (README: Exit codes).

Raised where the problem is detected, with a message that names the file, option or service
and says what to do; ``streams.cli.main`` prints it as one line on standard error.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2


class DialwatchError(Exception):
    """An expected failure: one line for the user, no traceback."""

    exit_code = EXIT_USAGE


class UsageError(DialwatchError):
    """A bad option, a missing path, an unreachable service or a bad configuration."""

    exit_code = EXIT_USAGE


class InputError(DialwatchError):
    """The input was unusable: not CDRs, or not one record accepted."""

    exit_code = EXIT_INPUT


def path_error(path: object, exc: OSError, what: str = "") -> UsageError:
    """``FILE: no such file`` and friends, from the OSError that opening it raised."""
    if isinstance(exc, FileNotFoundError):
        reason = "no such file"
    elif isinstance(exc, IsADirectoryError):
        reason = "is a directory, not a file"
    elif isinstance(exc, PermissionError):
        reason = "permission denied"
    else:
        reason = (exc.strerror or str(exc)).lower()
    label = f"{what} {path}" if what else str(path)
    return UsageError(f"{label}: {reason}")
