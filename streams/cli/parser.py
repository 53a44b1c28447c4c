"""The ``dialwatch`` parser: every command, option, help text and the checks of option values."""

from __future__ import annotations

import argparse
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.errors import UsageError, path_error

if TYPE_CHECKING:
    pass


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
    format_options(p)

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
    format_options(p)

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
        "--leaks",
        action="store_true",
        help="the multi-day leak scenario: businesses, leaked lists, campaigns (docs/campaigns.md)",
    )
    p.add_argument(
        "--days",
        type=_positive_int,
        default=14,
        metavar="D",
        help="--leaks: days of traffic, at least 6",
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
    trace_leaks_parser(
        command(
            "trace-leaks",
            "group CDR files' callers into campaigns and rank"
            " the businesses their lists leaked from (docs/campaigns.md)",
        )
    )
    from streams.interception import cli as interception_cli

    interception_cli.add_parsers(command)  # intercept ..., audit (README "Interception")
    from streams.feed import cli as feed_cli

    feed_cli.add_parsers(command)  # feed export (README "Regulator feed")
    return parser


def format_options(p: argparse.ArgumentParser) -> None:
    from streams.formats import NAMES

    p.add_argument(
        "--format",
        choices=NAMES,
        default="contract",
        metavar="NAME",
        help="input format: contract, asterisk, freeswitch-csv, freeswitch-json, kamailio or"
        " csv-map"
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


def trace_leaks_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "files",
        nargs="+",
        type=_input_file,
        metavar="FILE",
        help="CSV (header row) or JSON Lines, gzipped when named .gz; - is stdin",
    )
    p.add_argument(
        "--days",
        type=_positive_int,
        default=30,
        metavar="N",
        help="contacts counted in the N days before a victim's first call",
    )
    p.add_argument(
        "--min-victims",
        type=_positive_int,
        default=20,
        metavar="N",
        help="no candidates for a campaign with fewer victims",
    )
    p.add_argument(
        "--alerts",
        type=_existing_file,
        metavar="FILE",
        help="alerts of the same traffic (dialwatch scan's output): count each campaign's"
        " flagged numbers and list the rest for interception once"
        " DIALWATCH_CAMPAIGN_INTERCEPT_SHARE of it is flagged",
    )
    p.add_argument(
        "--publish",
        action="store_true",
        help="also produce each campaign to DIALWATCH_LEAK_CANDIDATES_TOPIC"
        " (broker: DIALWATCH_KAFKA)",
    )
    format_options(p)
