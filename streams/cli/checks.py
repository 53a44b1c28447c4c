"""Checks made once before a command starts: the policy, plan and allowlist load, Redis answers."""

from __future__ import annotations

import argparse
import asyncio
import tomllib

from config.settings import Settings
from streams.errors import UsageError, path_error


def check_files(settings: Settings, args: argparse.Namespace) -> None:
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
    if args.command == "worker":  # the API's tokens: a bad file is one line, never a token
        from streams.api.auth import load_tokens

        try:
            load_tokens(settings)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
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


def check_redis(settings: Settings, url: str | None, what: str) -> None:
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
