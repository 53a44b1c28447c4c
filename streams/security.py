"""Client security from Settings: Kafka (TLS, SASL) and Redis (ACL user, password, TLS).

Pure builders: the only I/O is reading secret files and loading certificates into an
``ssl.SSLContext``. Secrets are returned to the client libraries and nowhere else: no log line,
repr or exception message here contains one (see docs/security.md).

Callers:

* ``streams.app``: ``faust.App(..., **faust_broker_kwargs(settings))``
* ``streams.factory``: ``RedisStore(redis_client(settings, url), prefix=..., ...)``
* kafka-python (``simulate.produce``, ``topics.create_topics``, the demo's consumer):
  ``KafkaProducer(bootstrap_servers=..., **kafka_python_kwargs(settings))``
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from config.settings import REDIS_CLUSTER_SCHEMES, Settings, redact_url, redis_url_database

if TYPE_CHECKING:
    from faust.auth import Credentials


class SecretError(ValueError):
    """A secret file is missing, unreadable or empty. The message names the file only."""


def redacted(url: str) -> str:
    """A Redis or Kafka URL (or a comma-separated list) with any password replaced by ``***``.

    Covers ``scheme://user:password@host``, bare ``user:password@host:port`` entries and
    ``?password=`` style query parameters; use it for every URL that reaches a log line.
    """
    return redact_url(url)


def read_secret(path: Path, setting: str) -> str:
    """The secret in ``path``: its text without the trailing line break.

    ``setting`` names the setting the path came from, for the error message.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{setting}: {path} is not UTF-8 text") from None
    except OSError as exc:
        raise SecretError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise SecretError(f"{setting}: {path} is empty")
    return secret


def api_token(settings: Settings) -> str | None:
    """The bearer token of the worker's state-changing endpoints, or None (endpoints off)."""
    if settings.api_token_file is not None:
        return read_secret(settings.api_token_file, "api_token_file")
    return settings.api_token or None


def bearer_ok(header: str | None, token: str | None) -> bool:
    """``Authorization: Bearer <token>`` in constant time; always False without a token."""
    if token is None or header is None or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].encode(), token.encode())


def kafka_sasl_password(settings: Settings) -> str | None:
    """The SASL password, from its setting or its file; None without SASL."""
    if settings.kafka_sasl_password is not None:
        return settings.kafka_sasl_password
    if settings.kafka_sasl_password_file is not None:
        return read_secret(settings.kafka_sasl_password_file, "kafka_sasl_password_file")
    return None


def redis_password(settings: Settings) -> str | None:
    """The Redis password, from its setting or its file; None when neither is set."""
    if settings.redis_password is not None:
        return settings.redis_password
    if settings.redis_password_file is not None:
        return read_secret(settings.redis_password_file, "redis_password_file")
    return None


# --------------------------------------------------------------------------- Redis


def redis_url_and_kwargs(settings: Settings, url: str | None = None) -> tuple[str, dict[str, Any]]:
    """The URL (``url`` if given, else ``settings.redis``) and the keyword arguments to pass
    with it to ``redis.asyncio.Redis.from_url``: ``password`` and the ``ssl_*`` files.

    The URL keeps any ACL user name (``redis://dialwatch@host:6379/0``); the password comes from
    ``redis_password`` or ``redis_password_file``. redis-py lets a password in the URL win over
    the keyword, so a URL that carries one while a password is configured is refused.
    """
    url = url or settings.redis
    if not url:
        raise ValueError("no Redis URL: set DIALWATCH_REDIS")
    kwargs: dict[str, Any] = {}
    password = redis_password(settings)
    if password is not None:
        if redact_url(url) != url:
            raise ValueError(
                f"the Redis URL {redact_url(url)} already carries a password: remove it or unset"
                " redis_password and redis_password_file"
            )
        kwargs["password"] = password
    files = {
        "ssl_ca_certs": settings.redis_ssl_cafile,
        "ssl_certfile": settings.redis_ssl_certfile,
        "ssl_keyfile": settings.redis_ssl_keyfile,
    }
    tls = url.lower().startswith(("rediss://", "rediss+cluster://"))
    if any(files.values()) and not tls:
        raise ValueError(f"redis_ssl_* files are set but {redact_url(url)} is not rediss:// (TLS)")
    kwargs.update({key: str(path) for key, path in files.items() if path is not None})
    # Our own bound, not the library's default: a hung Redis must show as degraded health.
    kwargs["socket_timeout"] = settings.redis_timeout_s
    kwargs["socket_connect_timeout"] = settings.redis_timeout_s
    return url, kwargs


# What redis_client returns: one server, or a Redis Cluster (docs/cluster.md).
RedisClient = aioredis.Redis | RedisCluster


def redis_cluster_url(settings: Settings, url: str) -> str | None:
    """The ``redis://`` or ``rediss://`` URL of a cluster seed node when ``url`` names a Redis
    Cluster (a ``redis+cluster://`` or ``rediss+cluster://`` URL, or any URL with
    ``settings.redis_cluster``), None for a single server."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme in REDIS_CLUSTER_SCHEMES:
        return f"{scheme.removesuffix('+cluster')}://{rest}"
    if not settings.redis_cluster:
        return None
    if scheme not in ("redis", "rediss"):
        raise ValueError(f"redis_cluster needs a redis:// or rediss:// URL, not {redact_url(url)}")
    return url


def redis_client(settings: Settings, url: str | None = None) -> RedisClient:
    """An asyncio Redis client for the store, authenticated and over TLS as configured.

    A cluster URL (``redis+cluster://host:port``, ``rediss+cluster://``, or any URL with
    ``redis_cluster`` set) gives a ``redis.asyncio.cluster.RedisCluster`` seeded from that node,
    with the same credentials and TLS files; every other URL a ``redis.asyncio.Redis``.

    Nothing connects yet: a wrong password or an untrusted certificate shows on the first
    command, as ``redis.exceptions.AuthenticationError`` or ``ConnectionError``.
    """
    url, kwargs = redis_url_and_kwargs(settings, url)
    cluster_url = redis_cluster_url(settings, url)
    if cluster_url is None:
        return aioredis.Redis.from_url(url, decode_responses=False, **kwargs)
    if redis_url_database(cluster_url) not in (None, 0):
        raise ValueError(f"{redact_url(url)} names a database other than 0: a cluster has only 0")
    return RedisCluster.from_url(cluster_url, decode_responses=False, **kwargs)


# The commands the store sends (streams/state/redis.py) and the ones its Lua scripts call
# (streams/lua/*.lua): Redis checks both against the user's ACL. PING is for operators.
REDIS_ACL_COMMANDS = (
    "evalsha",
    "script|load",
    "hmget",
    "hgetall",
    "mget",
    "hget",
    "zrangebyscore",
    "set",
    "del",
    "hset",
    "hdel",
    "zadd",
    "zrem",
    "exists",
    "pexpire",
    "ping",
    # the interception list (streams/interception, streams/lua/intercept_*.lua)
    "get",
    "zscore",
    "zcard",
    "zrange",
    "zremrangebyscore",
    "pexpireat",
    "hexists",
    "xadd",
    "xrange",
    # the operator's API (streams/api): audit newest first, the breaker's window, the shared
    # allowlist set (also read by the allowlist refresh)
    "xrevrange",
    "zcount",
    "sadd",
    "srem",
    "smembers",
)


# What the Redis Cluster client sends besides (docs/cluster.md): CLUSTER SLOTS to learn which node
# serves which slot, COMMAND to learn where commands keep their keys, and ASKING before a command
# redirected to the node a slot is migrating to.
REDIS_CLUSTER_ACL_COMMANDS = ("cluster|slots", "command", "asking")


def redis_acl_rule(username: str, key_prefix: str, password: str, *, cluster: bool = False) -> str:
    """The ``user`` line of a Redis ACL file granting the store exactly what it needs.

    Keys are limited to ``<key_prefix>:*`` (both stages' keys live there), commands to
    REDIS_ACL_COMMANDS (plus REDIS_CLUSTER_ACL_COMMANDS with ``cluster``, for every node of a
    Redis Cluster), and the password is stored as its SHA-256 (``#<hex>``), so the line holds no
    secret. Load it with ``aclfile`` or send it, without ``user``, to ``ACL SETUSER``.
    """
    if any(c in key_prefix for c in "*?[]\\ "):
        raise ValueError("key_prefix must not contain glob characters or spaces")
    digest = hashlib.sha256(password.encode()).hexdigest()
    allowed = REDIS_ACL_COMMANDS + (REDIS_CLUSTER_ACL_COMMANDS if cluster else ())
    commands = " ".join(f"+{c}" for c in allowed)
    return f"user {username} reset on #{digest} ~{key_prefix}:* resetchannels -@all {commands}"


# --------------------------------------------------------------------------- Kafka


def _kafka_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def _kafka_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (None otherwise): the broker certificate is verified
    against ``kafka_ssl_cafile`` (or the system's CAs) and its host name checked; the client
    certificate, when configured, is presented for mutual TLS."""
    if not _kafka_tls(settings):
        return None
    cafile = settings.kafka_ssl_cafile
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile is not None else None
    )
    if settings.kafka_ssl_certfile is not None:
        keyfile = settings.kafka_ssl_keyfile
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile), str(keyfile) if keyfile is not None else None
        )
    return context


def faust_broker_credentials(settings: Settings) -> Credentials | None:
    """The ``broker_credentials`` for ``faust.App``: None for PLAINTEXT, else a
    ``faust.SSLCredentials`` or ``faust.SASLCredentials`` (PLAIN or SCRAM, which faust-streaming
    0.15 hands to aiokafka as ``sasl_mechanism``; its repr shows the user name only)."""
    import faust

    context = kafka_ssl_context(settings)
    if _kafka_sasl(settings):
        # faust derives SASL_SSL from the presence of the context, SASL_PLAINTEXT otherwise.
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=kafka_sasl_password(settings),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def faust_broker_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App``: ``broker_credentials`` when Kafka security is on,
    nothing for PLAINTEXT (so the app is built exactly as before)."""
    credentials = faust_broker_credentials(settings)
    return {} if credentials is None else {"broker_credentials": credentials}


def faust_web_kwargs() -> dict[str, Any]:
    """``faust.App`` keyword arguments that switch off faust's built-in web views, leaving the
    worker's own ``/metrics`` and ``/health`` (and faust's ``/`` status page). dialwatch has no
    faust tables, so ``/router`` and ``/table`` only expose topology."""
    return {
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_stats_enabled": False,
        "web_graph_enabled": False,
        "web_metrics_enabled": False,
    }


def kafka_python_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python 3.0 clients (KafkaProducer, KafkaConsumer,
    KafkaAdminClient): ``security_protocol`` always, the ``ssl_*`` files with TLS, and
    ``sasl_mechanism`` / ``sasl_plain_username`` / ``sasl_plain_password`` with SASL (kafka-python
    uses the ``sasl_plain_*`` names for SCRAM too)."""
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if _kafka_tls(settings):
        kwargs["ssl_check_hostname"] = True
        files = {
            "ssl_cafile": settings.kafka_ssl_cafile,
            "ssl_certfile": settings.kafka_ssl_certfile,
            "ssl_keyfile": settings.kafka_ssl_keyfile,
        }
        kwargs.update({key: str(path) for key, path in files.items() if path is not None})
    if _kafka_sasl(settings):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = kafka_sasl_password(settings)
    return kwargs


def describe(settings: Settings) -> str:
    """One line for the startup log: what security is on, with no secret in it."""
    kafka = settings.kafka_security_protocol
    if _kafka_sasl(settings):
        source = "file" if settings.kafka_sasl_password_file is not None else "env"
        kafka += (
            f" {settings.kafka_sasl_mechanism} user={settings.kafka_sasl_username}"
            f" password from {source}"
        )
    if _kafka_tls(settings):
        kafka += f" ca={settings.kafka_ssl_cafile or 'system'}"
        if settings.kafka_ssl_certfile is not None:
            kafka += " client-cert"
    if settings.redis is None:
        redis = "not configured"
    else:
        redis = redact_url(settings.redis)
        if settings.redis_password_file is not None:
            redis += " password from file"
        elif settings.redis_password is not None:
            redis += " password from env"
        if settings.redis_ssl_cafile is not None:
            redis += f" ca={settings.redis_ssl_cafile}"
        if settings.redis_ssl_certfile is not None:
            redis += " client-cert"
        if settings.redis_cluster:
            redis += " cluster"
    return f"kafka: {kafka}; redis: {redis}"
