"""The ``dialwatch`` command line.

Every expected failure is a ``streams.errors.DialwatchError`` raised where it is detected;
``main`` prints it as one line on standard error and returns its exit status (README: Exit
codes). ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tomllib
import traceback
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from config.settings import Settings
from streams.errors import EXIT_OK, DialwatchError, InputError, UsageError, path_error

if TYPE_CHECKING:
    from streams.formats import Format

DESCRIPTION = (
    "dialwatch analyses a carrier's call-detail records (CDRs) as they stream, and flags bulk"
    " diallers, robocalls, sequential dialling, one-ring calls, call bombing, coordinated"
    " number blocks and spoofed identities for interception. The worker reads Kafka and keeps"
    " its windows in Redis; scan runs the same detection over CDR files."
)
EPILOG = (
    "exit status: 0 the command ran; 1 the input was unusable (or, for evaluate, verify and"
    " demo, a check failed); 2 a usage or environment error (bad option, missing file,"
    " unreachable service, bad configuration)."
)
SWITCH_FORMATS = ("asterisk", "freeswitch-csv", "freeswitch-json")  # what simulate can write
HELP_WIDTH = 78  # fixed, so that --help and the README's synopsis are the same text


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only when there is one worth showing (not None, not a flag's False)."""

    def __init__(self, prog: str) -> None:
        width = min(HELP_WIDTH, shutil.get_terminal_size().columns - 2)
        super().__init__(prog, width=max(width, 40), max_help_position=28)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse's errors as one line (its usage block goes to --help only)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _positive_int(text: str) -> int:
    value = _int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
    return value


def _fraction(text: str) -> float:
    value = _float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def _iso_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO-8601 time: {text!r} (e.g. 2026-11-30T09:00+08:00)"
        ) from None


def _existing_file(text: str) -> Path:
    path = Path(text)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(str(path_error(path, exc))) from None
    return path


def _input_file(text: str) -> str:
    """A file to read, or - for standard input."""
    return text if text == "-" else str(_existing_file(text))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dialwatch", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary, epilog=EPILOG)

    p = command("scan", "replay CDR files through the engines; alerts to stdout as JSON Lines")
    p.add_argument(
        "files",
        nargs="+",
        type=_input_file,
        metavar="FILE",
        help="CSV (header row) or JSON Lines, gzipped when named .gz; - is stdin",
    )
    p.add_argument(
        "--allowlist",
        type=_existing_file,
        metavar="FILE",
        help="numbers never to intercept, one a line (default: DIALWATCH_ALLOWLIST_FILE)",
    )
    p.add_argument(
        "--config",
        type=_existing_file,
        metavar="FILE",
        help="detection policy, TOML (default: DIALWATCH_POLICY_FILE, else the bundled one)",
    )
    p.add_argument(
        "--redis",
        metavar="URL",
        help="keep the windows in this Redis, adding to its state"
        " (default: DIALWATCH_REDIS, else in-process)",
    )
    p.add_argument(
        "--complaints",
        type=_existing_file,
        metavar="FILE",
        help="complaint reports to load first, JSON Lines (README: Complaints)",
    )
    _format_options(p)

    p = command("ingest", "publish CDR files of any format to the CDR topic (README: Ingest)")
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="CDR files, gzipped when named .gz; - is stdin",
    )
    p.add_argument(
        "--follow", action="store_true", help="tail one file as a switch writes it, for ever"
    )
    p.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="where the position is kept (default with --follow: FILE.dialwatch-pos)",
    )
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=5000,
        metavar="N",
        help="lines per batch; the position is saved after each batch is confirmed",
    )
    _format_options(p)

    command("worker", "run the Faust worker; settings from DIALWATCH_* variables")

    p = command("allowlist", "edit the run-time allowlist entries shared in DIALWATCH_REDIS")
    p.add_argument("action", choices=["add", "remove", "count"], help="what to do")
    p.add_argument("numbers", nargs="*", metavar="NUMBER", help="numbers to add or remove")

    p = command("simulate", "write synthetic CDR traffic to a file or a Kafka topic")
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--out",
        metavar="FILE",
        help="output file, format from its name (.csv, .jsonl, .json; .gz to compress)"
        " (default: - for stdout)",
    )
    target.add_argument(
        "--topic", help="produce to this Kafka topic instead (broker: DIALWATCH_KAFKA)"
    )
    p.add_argument(
        "--format",
        choices=["csv", "jsonl", *SWITCH_FORMATS],
        metavar="FORMAT",
        help="output format whatever the file name: the contract as csv or jsonl, or a"
        " switch's: asterisk, freeswitch-csv, freeswitch-json (README: Formats)"
        " (default: from --out; stdout: jsonl)",
    )
    p.add_argument(
        "--labels", type=Path, metavar="FILE", help="write each subject's label here (CSV)"
    )
    p.add_argument(
        "--scenario", action="store_true", help="the labelled benchmark day (docs/scenario.md)"
    )
    p.add_argument(
        "--scale",
        type=_positive_float,
        default=1.0,
        metavar="F",
        help="scenario: multiplies every non-normal class",
    )
    p.add_argument(
        "--allowlist", type=Path, metavar="FILE", help="scenario: write its allowlist here"
    )
    p.add_argument("--seed", type=int, metavar="N", help="random seed (default: 7; scenario: 1)")
    p.add_argument(
        "--subscribers",
        type=_positive_int,
        metavar="N",
        help="subscribers (default: 2000; scenario: 20000)",
    )
    p.add_argument(
        "--hours",
        type=_positive_float,
        metavar="H",
        help="length of the day (default: 8; scenario: 12, at least 4)",
    )
    p.add_argument(
        "--bulk-diallers",
        type=_non_negative_int,
        default=2,
        metavar="N",
        help="bulk diallers among the subscribers (not with --scenario)",
    )
    p.add_argument(
        "--late-fraction",
        type=_fraction,
        metavar="F",
        help="share of records delivered late (default: 0; scenario: 0.05)",
    )
    p.add_argument(
        "--start",
        type=_iso_time,
        metavar="ISO",
        help="ISO-8601 start; no offset means DIALWATCH_TIMEZONE (default: 09:00 yesterday there)",
    )
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=500,
        metavar="N",
        help="--topic: CDRs per Kafka message (1: one object each)",
    )
    p.add_argument(
        "--partitions",
        type=_positive_int,
        metavar="N",
        help="--topic: partitions if it is created (default: DIALWATCH_TOPIC_PARTITIONS)",
    )

    p = command("demo", "embedded demo: broker, worker, simulator and live alerts")
    p.add_argument("--subscribers", type=int, default=3000, metavar="N", help="subscribers")
    p.add_argument(
        "--hours", type=float, default=6.0, metavar="H", help="simulated day, at least 4 h"
    )
    p.add_argument("--seed", type=int, default=7, metavar="N", help="random seed of the traffic")
    p.add_argument(
        "--keep", action="store_true", help="keep the run's files (worker log) and print where"
    )

    p = command("evaluate", "detection-quality benchmark on the labelled scenario")
    p.add_argument(
        "--seed",
        type=int,
        action="append",
        metavar="N",
        help="scenario seed, repeatable (default: 1)",
    )
    p.add_argument(
        "--subscribers", type=_positive_int, default=20_000, metavar="N", help="subscribers"
    )
    p.add_argument(
        "--hours", type=_positive_float, default=12.0, metavar="H", help="day, at least 4 h"
    )
    p.add_argument(
        "--scale",
        type=_positive_float,
        default=1.0,
        metavar="F",
        help="multiplies every non-normal class",
    )
    p.add_argument(
        "--order",
        choices=["sorted", "delivery"],
        default="sorted",
        help="replay by start time (as scan) or as delivered, late records included (as the demo)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the reports here, JSON")
    p.add_argument(
        "--config",
        type=_existing_file,
        metavar="FILE",
        help="detection policy, TOML (default: DIALWATCH_POLICY_FILE, else the bundled one)",
    )
    p.add_argument(
        "--cdrs",
        type=_input_file,
        metavar="FILE",
        help="score an existing run instead: its CDR file (with --labels and --alerts)",
    )
    p.add_argument(
        "--labels", type=_existing_file, metavar="FILE", help="with --cdrs: the scenario labels"
    )
    p.add_argument(
        "--alerts",
        type=_input_file,
        metavar="FILE",
        help="with --cdrs: the alerts, as written by dialwatch scan",
    )
    p.add_argument(
        "--allowlist", type=_existing_file, metavar="FILE", help="with --cdrs: the allowlist"
    )
    p.add_argument(
        "--format",
        choices=["contract", *SWITCH_FORMATS],
        default="contract",
        metavar="NAME",
        help="write the scenario in this format (contract, asterisk, freeswitch-csv,"
        " freeswitch-json) and scan it from there (README: Formats)",
    )

    p = command("verify", "recount the input and compare it with a run's Redis state")
    p.add_argument(
        "files",
        nargs="*",
        type=_input_file,
        metavar="FILE",
        help="CDR files as given to dialwatch scan",
    )
    p.add_argument("--topic", help="recount this CDR topic instead (broker: DIALWATCH_KAFKA)")
    p.add_argument(
        "--alerts", metavar="TOPIC", help="also check this alert topic for duplicate alert_ids"
    )
    p.add_argument("--redis", metavar="URL", help="Redis of the run (default: DIALWATCH_REDIS)")
    p.add_argument("--prefix", help="key prefix of the run (default: DIALWATCH_KEY_PREFIX)")
    p.add_argument(
        "--wait",
        type=_non_negative_float,
        default=0.0,
        metavar="S",
        help="seconds to re-read until it matches",
    )
    from streams.interception import cli as interception_cli

    interception_cli.add_parsers(command)  # intercept ..., audit (README "Interception")
    return parser


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
        _check_files(settings, args)
    if args.command == "scan":
        return _scan(args, settings)
    if args.command == "ingest":
        from streams.ingest import run_ingest

        return run_ingest(args, settings)
    if args.command == "allowlist":
        return _allowlist(args, settings)
    if args.command in ("intercept", "audit"):
        from streams.interception import cli as interception_cli

        return interception_cli.run(args, settings)
    if args.command == "worker":
        from streams.worker import run_worker

        return run_worker(settings)
    if args.command == "simulate":
        return _simulate(args, settings)
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
        return _evaluate(parser, args, settings)
    if args.command == "verify":
        from streams.tools.verify import run as run_verify

        if args.redis or settings.redis:
            _check_redis(settings, args.redis, "--redis" if args.redis else "DIALWATCH_REDIS")
        return run_verify(args, settings)
    parser.error(f"unknown command {args.command}")
    return 2


def _check_files(settings: Settings, args: argparse.Namespace) -> None:
    """Load the policy, numbering plan and allowlist once up front, so that a bad one is one
    line naming it (and the option or variable that chose it) before any work starts."""
    from config.numbering import plan_from_setting
    from config.policy import load_policy
    from detectors.catalogue import load_all
    from detectors.registry import check_policy
    from streams.allowlist import Allowlist

    config = getattr(args, "config", None)
    policy = config or settings.policy_file
    what = "--config" if config else "policy file"
    try:
        check_policy(load_policy(policy), load_all())
    except OSError as exc:
        raise path_error(policy, exc, what) from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{what} {policy}: not valid TOML: {exc}") from exc
    except (ValueError, TypeError, AttributeError) as exc:
        reason = str(exc).removeprefix(f"{policy}: ")  # the policy's checks name the file
        raise UsageError(f"{what} {policy}: not a valid policy: {reason}") from exc
    try:
        plan = plan_from_setting(settings.numbering_plan)
    except (OSError, ValueError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"DIALWATCH_NUMBERING_PLAN {settings.numbering_plan}: {exc}") from exc
    listed = getattr(args, "allowlist", None) if args.command == "scan" else None
    allowlist = listed or settings.allowlist_file
    if allowlist is not None:
        what = "--allowlist" if listed else "DIALWATCH_ALLOWLIST_FILE"
        try:
            Allowlist(allowlist, plan)
        except OSError as exc:
            raise path_error(allowlist, exc, what) from exc
        except ValueError as exc:  # UnicodeDecodeError too
            raise UsageError(f"{what} {exc}") from exc


def _check_redis(settings: Settings, url: str | None, what: str) -> None:
    """Connect once, so that a wrong URL or a Redis that is down is one line up front."""
    from redis.exceptions import AuthenticationError, RedisError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from config.settings import redact_url
    from streams.security import redis_client

    shown = redact_url(url or settings.redis or "")

    async def ping() -> None:
        client = redis_client(settings, url)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except ValueError as exc:
        raise UsageError(f"{what} {shown}: not a Redis URL ({exc})") from exc
    except AuthenticationError as exc:
        raise UsageError(
            f"{what} {shown}: Redis refused the login ({exc}); check the user and password"
        ) from exc
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise UsageError(
            f"{what} {shown}: cannot reach Redis ({exc}); is redis-server running there?"
        ) from exc
    except RedisError as exc:
        raise UsageError(f"{what} {shown}: Redis answered with an error: {exc}") from exc


def _format_options(p: argparse.ArgumentParser) -> None:
    from streams.formats import NAMES

    p.add_argument(
        "--format",
        choices=NAMES,
        default="contract",
        metavar="NAME",
        help="input format: contract, asterisk, freeswitch-csv, freeswitch-json or csv-map"
        " (README: Formats)",
    )
    p.add_argument(
        "--map",
        metavar="F=COL,...",
        help="csv-map: contract field = column of the header, e.g. caller=src,callee=dst",
    )
    p.add_argument(
        "--rejects",
        metavar="FILE",
        help="write each rejected record here as file:line reason: detail",
    )


def _input_format(args: argparse.Namespace) -> Format:
    from streams.formats import from_cli

    try:
        return from_cli(args.format, args.map)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _scan(args: argparse.Namespace, settings: Settings) -> int:
    from streams.factory import build_engines
    from streams.files import RejectLog, open_rejects
    from streams.scan import scan

    fmt = _input_format(args)

    settings = settings.with_(
        allowlist_file=args.allowlist or settings.allowlist_file,
        policy_file=args.config or settings.policy_file,
    )
    if args.redis or settings.redis:
        _check_redis(settings, args.redis, "--redis" if args.redis else "DIALWATCH_REDIS")
    engine, derived = build_engines(settings, args.redis)

    async def run() -> int:
        with contextlib.ExitStack() as stack:
            rejects = stack.enter_context(open_rejects(args.rejects)) if args.rejects else None
            try:
                totals = await scan(
                    engine,
                    args.files,
                    sys.stdout,
                    derived=derived,
                    complaints=args.complaints,
                    fmt=fmt,
                    rejects=RejectLog(rejects) if rejects else None,
                )
            finally:
                await engine.store.close()
                await derived.store.close()
        return totals["accepted"] + totals["duplicates"]

    if asyncio.run(run()) == 0:
        raise InputError(f"no record accepted from {', '.join(args.files)} (see the summary)")
    return EXIT_OK


def _evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools import evaluate as ev

    settings = settings.with_(policy_file=args.config or settings.policy_file)
    existing = (args.cdrs, args.labels, args.alerts)
    if any(existing):
        if not all(existing):
            parser.error("evaluate: --cdrs, --labels and --alerts go together")
        try:
            return ev.score_files(
                settings,
                args.cdrs,
                args.labels,
                args.alerts,
                allowlist=args.allowlist,
                json_path=args.json,
            )
        except ValueError as exc:  # labels say which file and line; a JSON error does not
            if type(exc).__module__ == "orjson":
                raise InputError(
                    f"--alerts {args.alerts}: not alerts in JSON Lines: {exc}"
                ) from exc
            raise InputError(str(exc)) from exc
    from streams.tools.scenario import ScenarioSpec
    from streams.tools.simulate import default_start

    start = default_start(settings)
    try:  # the scenario's own checks on these options, before the first seed is generated
        ScenarioSpec(start=start, subscribers=args.subscribers, hours=args.hours, scale=args.scale)
    except ValueError as exc:
        raise _spec_error(exc) from exc
    if args.order == "delivery" and args.format != "contract":
        raise UsageError(
            "dialwatch evaluate: --order delivery replays the demo's contract messages; "
            "drop --format or use --order sorted"
        )
    spec = ev.BenchmarkSpec(
        seeds=tuple(args.seed or (1,)),
        subscribers=args.subscribers,
        hours=args.hours,
        scale=args.scale,
        order=args.order,
        format=args.format,
    )
    return ev.run_benchmark(settings, spec, start, json_path=args.json)


def allowlist_entries(numbers: list[str], settings: Settings) -> list[str] | None:
    """The numbers as the worker normalises callers (the configured plan), so an entry
    matches; None when one of them is not a phone number."""
    from config.numbering import normalise, plan_from_setting

    plan = plan_from_setting(settings.numbering_plan)
    normalised = [normalise(n, plan) for n in numbers]
    entries = [n for n in normalised if n is not None]
    return entries if len(entries) == len(normalised) else None


def _allowlist(args: argparse.Namespace, settings: Settings) -> int:
    """Edit the Redis set every worker merges into its allowlist within allowlist_refresh_s."""
    from streams.allowlist import shared_key
    from streams.security import redis_client

    if not settings.redis:
        raise UsageError("set DIALWATCH_REDIS to the workers' Redis URL")
    numbers = allowlist_entries(args.numbers, settings)
    if numbers is None:
        bad = next(n for n in args.numbers if allowlist_entries([n], settings) is None)
        raise UsageError(f"not a phone number: {bad}")
    _check_redis(settings, None, "DIALWATCH_REDIS")
    key = shared_key(settings.key_prefix)

    async def run() -> int:
        client = redis_client(settings)
        try:
            if args.action == "add" and numbers:
                await client.sadd(key, *numbers)
                from streams.interception.cli import release_allowlisted

                await release_allowlisted(settings, numbers)  # off the interception list
            elif args.action == "remove" and numbers:
                await client.srem(key, *numbers)
            return int(await client.scard(key))
        finally:
            await client.aclose()

    print(f"{asyncio.run(run())} shared allowlist entries")
    return 0


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools import simulate as sim
    from streams.tools.scenario import write_scenario_csv as scenario_csv
    from streams.tools.simulate import default_start

    out = args.out or "-"
    fmt = None if args.topic else sim.output_format(out, args.format)
    start = args.start or default_start(settings)
    if start.tzinfo is None:
        start = start.replace(tzinfo=ZoneInfo(settings.timezone))
    if args.allowlist and not args.scenario:
        raise UsageError("--allowlist needs --scenario (see dialwatch simulate --help)")
    try:
        if args.scenario:
            records = _scenario(args, start)
        else:
            _fill_defaults(
                args, {"seed": 7, "subscribers": 2000, "hours": 8.0, "late_fraction": 0.0}
            )
            spec = sim.SimSpec(
                start=start,
                seed=args.seed,
                hours=args.hours,
                subscribers=args.subscribers,
                bulk_diallers=args.bulk_diallers,
                late_fraction=args.late_fraction,
            )
            records, labels = sim.generate(spec)
            if args.labels:
                sim.write_labels(args.labels, labels)
    except ValueError as exc:  # the spec's own checks, on option values argparse let through
        raise _spec_error(exc) from exc
    if args.topic and args.format in SWITCH_FORMATS:
        raise UsageError(f"--format {args.format} writes files; a topic gets the contract")
    if args.topic:
        partitions = args.partitions or settings.topic_partitions
        from streams.security import kafka_python_kwargs

        n = sim.produce(
            records,
            settings.kafka,
            args.topic,
            partitions,
            batch_size=args.batch,
            kafka_options=kafka_python_kwargs(settings),
        )
        print(f"produced {n:,} CDRs to {args.topic}", file=sys.stderr)
        return EXIT_OK
    if fmt in SWITCH_FORMATS:
        n = sim.write_format(out, records, fmt, ZoneInfo(settings.timezone))
        print(f"wrote {n:,} CDRs as {fmt}", file=sys.stderr)
        return EXIT_OK
    csv_writer = scenario_csv if args.scenario else sim.write_csv
    write = csv_writer if fmt == "csv" else sim.write_jsonl
    n = write(out, records)
    print(f"wrote {n:,} CDRs", file=sys.stderr)
    return EXIT_OK


def _spec_error(exc: ValueError) -> UsageError:
    """A scenario or simulation spec's complaint, in terms of the options that set it."""
    message = str(exc)
    name = message.split(" ", 1)[0]
    if name in ("hours", "subscribers", "scale", "late_fraction", "seed"):
        return UsageError(f"--{name.replace('_', '-')}: {message.split(' ', 1)[1]}")
    if "subscribers" in message:
        return UsageError(f"{message}: give more --subscribers or a smaller --scale")
    return UsageError(message)


def _fill_defaults(args: argparse.Namespace, defaults: dict[str, object]) -> None:
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def _scenario(args: argparse.Namespace, start: datetime) -> list[dict[str, object]]:
    """The labelled benchmark day; options not given keep the ScenarioSpec defaults."""
    from streams.tools import scenario as sc

    base = sc.ScenarioSpec(start=start)
    names = ("seed", "subscribers", "hours", "late_fraction")
    _fill_defaults(args, {name: getattr(base, name) for name in names})
    spec = sc.ScenarioSpec(
        start=start,
        seed=args.seed,
        subscribers=args.subscribers,
        hours=args.hours,
        scale=args.scale,
        late_fraction=args.late_fraction,
    )
    scenario = sc.generate_scenario(spec)
    if args.labels:
        sc.write_scenario_labels(args.labels, scenario.labels)
    if args.allowlist:
        sc.write_allowlist(args.allowlist, scenario.allowlist)
    return scenario.records
