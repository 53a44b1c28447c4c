"""The ``dialwatch`` command line.

Every expected failure is a ``streams.errors.DialwatchError`` raised where it is detected;
``main`` prints it as one line on standard error and returns its exit status (README: Exit
codes). ``--debug`` adds the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback

from config.settings import Settings
from streams.cli.checks import check_files, check_redis
from streams.cli.commands import (
    allowlist_entries,
    run_allowlist,
    run_evaluate,
    run_scan,
    run_simulate,
    run_trace_leaks,
)
from streams.cli.parser import DESCRIPTION, build_parser
from streams.errors import EXIT_OK, DialwatchError, UsageError, path_error

__all__ = ["DESCRIPTION", "allowlist_entries", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    command = ["dialwatch"]
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv, command)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit's flush does not fail again
        return EXIT_OK
    except Exception as exc:
        error = _expected(exc)
        if error is None:
            raise
        if debug:
            traceback.print_exc()
        message = str(error)
        prefix = " ".join(command)
        print(message if message.startswith(prefix) else f"{prefix}: {message}", file=sys.stderr)
        return error.exit_code


def _expected(exc: BaseException) -> DialwatchError | None:
    """The user-facing form of an expected failure; None for a bug (its traceback shows)."""
    if isinstance(exc, DialwatchError):
        return exc
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return UsageError(f"Redis unreachable: {exc} (check --redis or DIALWATCH_REDIS)")
    if type(exc).__module__ == "kafka.errors":  # kafka-python's, from simulate --topic
        return UsageError(f"Kafka: {exc} (check DIALWATCH_KAFKA; is the broker running?)")
    if isinstance(exc, OSError) and exc.filename is not None:
        return path_error(exc.filename, exc)
    return None


def _run(argv: list[str] | None, command: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command.append(args.command)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        raise UsageError(f"bad DIALWATCH_* setting: {exc}") from exc
    if args.command in ("scan", "worker", "demo", "evaluate"):
        check_files(settings, args)
    if args.command == "scan":
        return run_scan(args, settings)
    if args.command == "ingest":
        from streams.ingest import run_ingest

        return run_ingest(args, settings)
    if args.command == "allowlist":
        return run_allowlist(args, settings)
    if args.command in ("intercept", "audit"):
        from streams.interception import cli as interception_cli

        return interception_cli.run(args, settings)
    if args.command == "feed":
        from streams.feed import cli as feed_cli

        return feed_cli.run(args, settings)
    if args.command == "worker":
        from streams.worker import run_worker

        return run_worker(settings)
    if args.command == "simulate":
        return run_simulate(args, settings)
    if args.command == "trace-leaks":
        return run_trace_leaks(args, settings)
    if args.command == "demo":
        from streams.tools.demo import run_demo

        return run_demo(
            settings,
            subscribers=args.subscribers,
            hours=args.hours,
            seed=args.seed,
            keep=args.keep,
        )
    if args.command == "evaluate":
        return run_evaluate(parser, args, settings)
    if args.command == "verify":
        from streams.tools.verify import run as run_verify

        if bool(args.topic) == bool(args.files):  # usage before any service is asked
            raise UsageError("give either --topic or FILES")
        if args.redis or settings.redis:
            check_redis(settings, args.redis, "--redis" if args.redis else "DIALWATCH_REDIS")
        return run_verify(args, settings)
    parser.error(f"unknown command {args.command}")
    return 2
