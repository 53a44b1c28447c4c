"""The commands implemented here rather than in the runtime or the tooling they call."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from config.settings import Settings
from streams.errors import EXIT_OK, InputError, UsageError

if TYPE_CHECKING:
    from streams.formats import Format
from streams.cli.checks import check_redis
from streams.cli.parser import SWITCH_FORMATS


def _input_format(args: argparse.Namespace) -> Format:
    from streams.formats import from_cli

    try:
        return from_cli(args.format, args.map)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def run_scan(args: argparse.Namespace, settings: Settings) -> int:
    from streams.factory import build_engines
    from streams.files import RejectLog, open_rejects
    from streams.scan import scan

    fmt = _input_format(args)

    settings = settings.with_(
        allowlist_file=args.allowlist or settings.allowlist_file,
        policy_file=args.config or settings.policy_file,
    )
    if args.redis or settings.redis:
        check_redis(settings, args.redis, "--redis" if args.redis else "DIALWATCH_REDIS")
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


def run_evaluate(
    parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings
) -> int:
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


def run_allowlist(args: argparse.Namespace, settings: Settings) -> int:
    """Edit the Redis set every worker merges into its allowlist within allowlist_refresh_s."""
    from streams.allowlist import shared_key
    from streams.security import redis_client

    if not settings.redis:
        raise UsageError("set DIALWATCH_REDIS to the workers' Redis URL")
    numbers = allowlist_entries(args.numbers, settings)
    if numbers is None:
        bad = next(n for n in args.numbers if allowlist_entries([n], settings) is None)
        raise UsageError(f"not a phone number: {bad}")
    check_redis(settings, None, "DIALWATCH_REDIS")
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


def run_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools import simulate as sim
    from streams.tools.scenario import write_scenario_csv as scenario_csv
    from streams.tools.simulate import default_start

    if args.leaks:
        return run_simulate_leaks(args, settings)
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
    if name in ("hours", "subscribers", "scale", "late_fraction", "seed", "days"):
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


def run_simulate_leaks(args: argparse.Namespace, settings: Settings) -> int:
    """``simulate --leaks``: the multi-day leak scenario as a contract file (docs/campaigns.md)."""
    from streams.tools import leaks
    from streams.tools import simulate as sim

    if args.topic or args.scenario or args.allowlist or args.format in SWITCH_FORMATS:
        raise UsageError(
            "--leaks writes a contract file: no --topic, --scenario, --allowlist or switch format"
        )
    out = args.out or "-"
    fmt = sim.output_format(out, args.format)
    tz = ZoneInfo(settings.timezone)
    start = args.start or (datetime.now(tz) - timedelta(days=args.days))
    if start.tzinfo is None:
        start = start.replace(tzinfo=tz)
    start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    base = leaks.LeakSpec(start=start)
    try:
        spec = leaks.LeakSpec(
            start=start,
            seed=base.seed if args.seed is None else args.seed,
            days=args.days,
            subscribers=args.subscribers or base.subscribers,
        )
    except ValueError as exc:
        raise _spec_error(exc) from exc
    scenario = leaks.generate_leaks(spec)
    if args.labels:
        leaks.write_leak_labels(args.labels, scenario.labels())
    write = sim.write_csv if fmt == "csv" else sim.write_jsonl
    n = write(out, scenario.records)
    print(f"wrote {n:,} CDRs over {spec.days} days", file=sys.stderr)
    return EXIT_OK


def run_trace_leaks(args: argparse.Namespace, settings: Settings) -> int:
    """``trace-leaks``: campaigns and leak candidates over CDR files, JSON Lines on stdout."""
    from config.numbering import plan_from_setting
    from detectors.leak_sources import LeakPolicy
    from streams.files import RejectLog, open_rejects
    from streams.leaktrace import TraceOptions, run

    fmt = _input_format(args)
    from streams.leaktrace import flagged_numbers

    options = TraceOptions(
        key=settings.pseudonym_key.encode(),
        leak=LeakPolicy(days=args.days, min_victims=args.min_victims),
        flagged=flagged_numbers(str(args.alerts)) if args.alerts else None,
        intercept_share=settings.campaign_intercept_share,
        intercept_min_flagged=settings.campaign_intercept_min_flagged,
    )
    plan = plan_from_setting(settings.numbering_plan)
    with contextlib.ExitStack() as stack:
        rejects = stack.enter_context(open_rejects(args.rejects)) if args.rejects else None
        records = run(
            args.files,
            plan,
            options,
            ZoneInfo(settings.timezone),
            fmt,
            rejects=RejectLog(rejects) if rejects else None,
        )
    if args.publish:
        from streams.leaktrace import publish

        n = publish(records, settings)
        print(f"published {n} campaigns to {settings.leak_candidates_topic}", file=sys.stderr)
    return EXIT_OK
