"""Security settings, the client builders, and a real redis-server with an ACL user and TLS.

Kafka security is tested up to the client libraries (kafka-python's and aiokafka's own config
validation, faust's credentials mapping) but not against a broker: the embedded Tansu 0.6 can
require SCRAM, yet its users can only be created through an already authenticated connection
and its memory storage does not outlive a restart, and its TLS options do not start a TLS
listener. See docs/security.md "What is tested".
"""

from __future__ import annotations

import hashlib
import re
import shutil
import ssl
import subprocess
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiokafka
import faust
import pytest
import redis.asyncio as aioredis
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from config.settings import Settings
from streams.security import (
    REDIS_ACL_COMMANDS,
    RedisClient,
    SecretError,
    describe,
    faust_broker_credentials,
    faust_broker_kwargs,
    faust_web_kwargs,
    kafka_python_kwargs,
    kafka_sasl_password,
    kafka_ssl_context,
    read_secret,
    redacted,
    redis_acl_rule,
    redis_client,
    redis_password,
    redis_url_and_kwargs,
)
from streams.state.base import Changes, PartitionMeta
from streams.state.redis import RedisStore
from streams.tools.services import Service, free_port, start_redis, wait_for_port

SECRET = "hunter2-Zq9"  # never expected in any repr, message or log line
DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"

SASL_SSL_SCRAM: dict[str, object] = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "dialwatch",
    "kafka_sasl_password": SECRET,
}


def secret_file(tmp_path: Path, text: str = SECRET + "\n", name: str = "secret") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------- settings


def test_security_is_off_by_default() -> None:
    s = Settings()
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert (s.kafka_sasl_mechanism, s.kafka_sasl_username, s.kafka_sasl_password) == (None,) * 3
    assert s.kafka_allow_plaintext_sasl is False
    assert (s.redis_password, s.redis_password_file, s.redis_ssl_cafile) == (None,) * 3
    assert kafka_python_kwargs(s) == {"security_protocol": "PLAINTEXT"}
    assert faust_broker_credentials(s) is None
    assert faust_broker_kwargs(s) == {}
    assert kafka_ssl_context(s) is None


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"kafka_security_protocol": "SSL"}, id="ssl-system-ca"),
        pytest.param(
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": Path("ca.pem")}, id="ssl-ca"
        ),
        pytest.param(
            {
                "kafka_security_protocol": "SSL",
                "kafka_ssl_certfile": Path("c.pem"),
                "kafka_ssl_keyfile": Path("k.pem"),
            },
            id="mutual-tls",
        ),
        pytest.param(SASL_SSL_SCRAM, id="sasl-ssl-scram512"),
        pytest.param(
            {**SASL_SSL_SCRAM, "kafka_sasl_mechanism": "PLAIN"}, id="sasl-ssl-plain-allowed"
        ),
        pytest.param(
            {**SASL_SSL_SCRAM, "kafka_security_protocol": "SASL_PLAINTEXT"},
            id="scram-without-tls",
        ),
        pytest.param(
            {
                **SASL_SSL_SCRAM,
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_allow_plaintext_sasl": True,
            },
            id="plain-without-tls-explicitly-allowed",
        ),
        pytest.param(
            {
                **SASL_SSL_SCRAM,
                "kafka_sasl_password": None,
                "kafka_sasl_password_file": Path("/run/secrets/kafka"),
            },
            id="password-file",
        ),
        pytest.param({"redis": "redis://dialwatch@r:6379/0", "redis_password": SECRET}, id="acl"),
        pytest.param(
            {"redis": "redis://dialwatch@r/0", "redis_password_file": Path("pw")}, id="pw-file"
        ),
        pytest.param({"redis_password_file": Path("pw")}, id="pw-file-url-given-later"),
        pytest.param(
            {
                "redis": "rediss://dialwatch@r:6380/0",
                "redis_ssl_cafile": Path("ca.pem"),
                "redis_ssl_certfile": Path("c.pem"),
                "redis_ssl_keyfile": Path("k.pem"),
            },
            id="rediss",
        ),
        pytest.param({"redis": "redis://:pw@r:6379/0"}, id="password-in-url-alone"),
    ],
)
def test_valid_security_settings(changes: dict[str, object]) -> None:
    s = Settings().with_(**changes)
    for name, value in changes.items():
        assert getattr(s, name) == value


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"kafka_security_protocol": "sasl_ssl"},
            "kafka_security_protocol must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL,"
            " not 'sasl_ssl'",
            id="protocol-unknown",
        ),
        pytest.param(
            {**SASL_SSL_SCRAM, "kafka_sasl_mechanism": None},
            "kafka_sasl_mechanism is required with SASL_SSL",
            id="no-mechanism",
        ),
        pytest.param(
            {**SASL_SSL_SCRAM, "kafka_sasl_mechanism": "GSSAPI"},
            "kafka_sasl_mechanism must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, not 'GSSAPI'",
            id="mechanism-unsupported",
        ),
        pytest.param(
            {**SASL_SSL_SCRAM, "kafka_sasl_username": None},
            "kafka_sasl_username is required with SASL_SSL",
            id="no-username",
        ),
        pytest.param(
            {**SASL_SSL_SCRAM, "kafka_sasl_password": None},
            "kafka_sasl_password or kafka_sasl_password_file is required with SASL_SSL",
            id="no-password",
        ),
        pytest.param(
            {**SASL_SSL_SCRAM, "kafka_sasl_password": ""},
            "kafka_sasl_password is empty",
            id="empty-password",
        ),
        pytest.param(
            {**SASL_SSL_SCRAM, "kafka_sasl_password_file": Path("pw")},
            "set kafka_sasl_password or kafka_sasl_password_file, not both",
            id="password-and-file",
        ),
        pytest.param(
            {
                **SASL_SSL_SCRAM,
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "PLAIN",
            },
            "SASL PLAIN over SASL_PLAINTEXT sends the password unencrypted: use SASL_SSL,"
            " a SCRAM mechanism, or set kafka_allow_plaintext_sasl=true",
            id="plain-without-tls",
        ),
        pytest.param(
            {"kafka_sasl_username": "dialwatch"},
            "kafka_sasl_username is set but kafka_security_protocol is PLAINTEXT;"
            " SASL needs SASL_PLAINTEXT or SASL_SSL",
            id="sasl-field-without-sasl",
        ),
        pytest.param(
            {**SASL_SSL_SCRAM, "kafka_security_protocol": "SSL"},
            "kafka_sasl_mechanism is set but kafka_security_protocol is SSL;"
            " SASL needs SASL_PLAINTEXT or SASL_SSL",
            id="sasl-fields-with-ssl",
        ),
        pytest.param(
            {"kafka_ssl_cafile": Path("ca.pem")},
            "kafka_ssl_cafile is set but kafka_security_protocol is PLAINTEXT;"
            " TLS needs SSL or SASL_SSL",
            id="ca-without-tls",
        ),
        pytest.param(
            {"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": Path("k.pem")},
            "kafka_ssl_keyfile needs kafka_ssl_certfile",
            id="key-without-cert",
        ),
        pytest.param(
            {"redis_password": SECRET, "redis_password_file": Path("pw")},
            "set redis_password or redis_password_file, not both",
            id="redis-password-and-file",
        ),
        pytest.param({"redis_password": ""}, "redis_password is empty", id="redis-empty"),
        pytest.param(
            {"redis": f"redis://dialwatch:{SECRET}@r/0", "redis_password_file": Path("pw")},
            "the redis URL already carries a password: remove it from the URL or unset"
            " redis_password and redis_password_file",
            id="password-in-url-and-file",
        ),
        pytest.param(
            {"redis": "redis://r:6379/0", "redis_ssl_cafile": Path("ca.pem")},
            "redis_ssl_cafile is set but the redis URL is not rediss:// (TLS)",
            id="redis-ca-without-tls",
        ),
        pytest.param(
            {"redis_ssl_keyfile": Path("k.pem")},
            "redis_ssl_keyfile needs redis_ssl_certfile",
            id="redis-key-without-cert",
        ),
    ],
)
def test_invalid_security_settings(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$") as info:
        Settings(**changes)  # type: ignore[arg-type]
    assert SECRET not in str(info.value)
    assert SECRET not in "".join(traceback.format_exception(info.value))


def test_security_settings_from_env(tmp_path: Path) -> None:
    env = {
        "DIALWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "DIALWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "DIALWATCH_KAFKA_SASL_USERNAME": "dialwatch",
        "DIALWATCH_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "kafka.pw"),
        "DIALWATCH_KAFKA_SSL_CAFILE": "/etc/dw/ca.pem",
        "DIALWATCH_REDIS": "rediss://dialwatch@r:6380/0",
        "DIALWATCH_REDIS_PASSWORD": SECRET,
        "DIALWATCH_REDIS_SSL_CAFILE": "/etc/dw/redis-ca.pem",
    }
    s = Settings.from_env(env)
    assert s.kafka_security_protocol == "SASL_SSL"
    assert s.kafka_sasl_mechanism == "SCRAM-SHA-256"
    assert s.kafka_sasl_password_file == tmp_path / "kafka.pw"
    assert s.kafka_ssl_cafile == Path("/etc/dw/ca.pem")
    assert s.redis_password == SECRET
    assert s.redis_ssl_cafile == Path("/etc/dw/redis-ca.pem")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("true", True), ("TRUE", True), (" yes ", True), ("1", True), ("on", True)],
        *[("false", False), ("No", False), ("0", False), ("off", False)],
    ],
)
def test_bool_settings_from_env(raw: str, expected: bool) -> None:
    env = {"DIALWATCH_KAFKA_ALLOW_PLAINTEXT_SASL": raw}
    assert Settings.from_env(env).kafka_allow_plaintext_sasl is expected


def test_bool_setting_rejects_junk_naming_the_variable() -> None:
    message = "DIALWATCH_KAFKA_ALLOW_PLAINTEXT_SASL: cannot read 'maybe': expected true or false"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Settings.from_env({"DIALWATCH_KAFKA_ALLOW_PLAINTEXT_SASL": "maybe"})


def test_secrets_are_absent_from_repr_and_str() -> None:
    s = Settings(
        redis=f"redis://dialwatch:{SECRET}@r:6379/0",
        pseudonym_key=SECRET + "-pseudonyms",
        **SASL_SSL_SCRAM,  # type: ignore[arg-type]
    )
    for text in (repr(s), str(s), repr(s.with_(bucket_s=30)), f"{s!r}"):
        assert SECRET not in text
        assert "kafka_sasl_password=<redacted>" in text
        assert "pseudonym_key=<redacted>" in text
        assert "redis='redis://dialwatch:***@r:6379/0'" in text
        assert "kafka_sasl_username='dialwatch'" in text
    assert "redis_password=None" in repr(s)
    assert "redis_password=<redacted>" in repr(Settings(redis_password=SECRET))
    assert s == Settings(
        redis=f"redis://dialwatch:{SECRET}@r:6379/0",
        pseudonym_key=SECRET + "-pseudonyms",
        **SASL_SSL_SCRAM,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- secrets from files


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SECRET, SECRET),
        (SECRET + "\n", SECRET),
        (SECRET + "\r\n", SECRET),
        (SECRET + "\n\n", SECRET),
        (" pass phrase with spaces \n", " pass phrase with spaces "),
        ("pässwörd\n", "pässwörd"),
    ],
    ids=["bare", "newline", "crlf", "blank-lines", "spaces-kept", "utf8"],
)
def test_read_secret(tmp_path: Path, text: str, expected: str) -> None:
    assert read_secret(secret_file(tmp_path, text), "x_file") == expected


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", r"^x_file: cannot read .*/missing: No such file or directory$"),
        (lambda d: d, r"^x_file: cannot read .*: Is a directory$"),
        (lambda d: secret_file(d, "\n"), r"^x_file: .*/secret is empty$"),
        (lambda d: secret_file(d, ""), r"^x_file: .*/secret is empty$"),
    ],
    ids=["missing", "directory", "only-newline", "empty"],
)
def test_read_secret_errors_name_the_file(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(SecretError, match=message):
        read_secret(make(tmp_path), "x_file")


def test_read_secret_binary_file_error_holds_no_content(tmp_path: Path) -> None:
    path = tmp_path / "bin"
    path.write_bytes(SECRET.encode() + b"\xff\xfe")
    with pytest.raises(SecretError, match=r"^x_file: .*/bin is not UTF-8 text$") as info:
        read_secret(path, "x_file")
    assert SECRET not in "".join(traceback.format_exception(info.value))


def test_passwords_come_from_setting_or_file(tmp_path: Path) -> None:
    path = secret_file(tmp_path)
    from_file = Settings(
        **{**SASL_SSL_SCRAM, "kafka_sasl_password": None, "kafka_sasl_password_file": path},  # type: ignore[arg-type]
        redis_password_file=path,
    )
    assert kafka_sasl_password(from_file) == SECRET
    assert redis_password(from_file) == SECRET
    from_env = Settings(**SASL_SSL_SCRAM, redis_password="r-" + SECRET)  # type: ignore[arg-type]
    assert kafka_sasl_password(from_env) == SECRET
    assert redis_password(from_env) == "r-" + SECRET
    assert kafka_sasl_password(Settings()) is None
    assert redis_password(Settings()) is None


def test_missing_password_file_fails_when_the_client_is_built(tmp_path: Path) -> None:
    s = Settings(redis="redis://dialwatch@r/0", redis_password_file=tmp_path / "nope")
    with pytest.raises(SecretError, match=r"^redis_password_file: cannot read"):
        redis_url_and_kwargs(s)


# --------------------------------------------------------------------------- redacted


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://dialwatch@r:6379/0", "redis://dialwatch@r:6379/0"),
        (f"redis://:{SECRET}@r:6379/0", "redis://:***@r:6379/0"),
        (f"rediss://dialwatch:{SECRET}@r:6380/0", "rediss://dialwatch:***@r:6380/0"),
        ("redis://dialwatch:p%40ss@r/0", "redis://dialwatch:***@r/0"),
        ("redis://dialwatch:p@ss/w,rd@r/0", "redis://dialwatch:***@r/0"),
        (
            f"unix://dialwatch:{SECRET}@/run/redis.sock?db=0",
            "unix://dialwatch:***@/run/redis.sock?db=0",
        ),
        (f"redis://r/0?password={SECRET}&db=1", "redis://r/0?password=***&db=1"),
        (f"redis://r/0?db=1&PASSWORD={SECRET}", "redis://r/0?db=1&PASSWORD=***"),
        ("k1:9092,k2:9092", "k1:9092,k2:9092"),
        (f"kafka://dialwatch:{SECRET}@k1:9092", "kafka://dialwatch:***@k1:9092"),
        (f"dialwatch:{SECRET}@k1:9092,k2:9092", "dialwatch:***@k1:9092,k2:9092"),
        # several credentials in one list: more than the passwords may go, never less
        (f"u:{SECRET}@k1:9092,v:{SECRET}@k2:9092", "u:***@k2:9092"),
        ("", ""),
    ],
)
def test_redacted(url: str, expected: str) -> None:
    assert redacted(url) == expected
    assert SECRET not in redacted(url)
    assert redacted(redacted(url)) == redacted(url)


# --------------------------------------------------------------------------- Redis builder


@pytest.mark.parametrize(
    ("changes", "url", "expected"),
    [
        pytest.param({"redis": "redis://r:6379/0"}, None, {}, id="plain"),
        pytest.param(
            {"redis": "redis://dialwatch@r:6379/0", "redis_password": SECRET},
            None,
            {"password": SECRET},
            id="acl-user-password",
        ),
        pytest.param(
            {"redis_password": SECRET},
            "redis://dialwatch@other:6379/0",
            {"password": SECRET},
            id="url-argument-wins",
        ),
        pytest.param(
            {
                "redis": "rediss://dialwatch@r:6380/0",
                "redis_password": SECRET,
                "redis_ssl_cafile": Path("/etc/ca.pem"),
                "redis_ssl_certfile": Path("/etc/c.pem"),
                "redis_ssl_keyfile": Path("/etc/k.pem"),
            },
            None,
            {
                "password": SECRET,
                "ssl_ca_certs": "/etc/ca.pem",
                "ssl_certfile": "/etc/c.pem",
                "ssl_keyfile": "/etc/k.pem",
            },
            id="tls",
        ),
        pytest.param({"redis": f"redis://:{SECRET}@r:6379/0"}, None, {}, id="password-in-url-only"),
    ],
)
def test_redis_url_and_kwargs(
    changes: dict[str, object], url: str | None, expected: dict[str, object]
) -> None:
    got_url, kwargs = redis_url_and_kwargs(Settings().with_(**changes), url)
    assert got_url == (url or changes["redis"])
    timeouts = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}  # always our own bound
    assert kwargs == {**expected, **timeouts}


@pytest.mark.parametrize(
    ("changes", "url", "message"),
    [
        pytest.param({}, None, "no Redis URL: set DIALWATCH_REDIS", id="no-url"),
        pytest.param(
            {"redis_password": "configured"},
            f"redis://u:{SECRET}@r/0",
            "the Redis URL redis://u:***@r/0 already carries a password",
            id="url-argument-with-password",
        ),
        pytest.param(
            {"redis_ssl_cafile": Path("ca.pem")},
            "redis://r/0",
            "redis_ssl_* files are set but redis://r/0 is not rediss:// (TLS)",
            id="url-argument-without-tls",
        ),
    ],
)
def test_redis_url_and_kwargs_errors(
    changes: dict[str, object], url: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}") as info:
        redis_url_and_kwargs(Settings().with_(**changes), url)
    assert SECRET not in str(info.value)


async def test_redis_client_carries_user_and_password_but_does_not_show_them() -> None:
    s = Settings(redis="redis://dialwatch@r:6379/3", redis_password=SECRET)
    client = redis_client(s)
    assert isinstance(client, aioredis.Redis)
    try:
        conn = client.connection_pool.connection_kwargs
        assert (conn["username"], conn["password"], conn["db"]) == ("dialwatch", SECRET, 3)
        assert SECRET not in repr(client)
        assert SECRET not in repr(client.connection_pool)
        assert client.connection_pool.connection_class is aioredis.Connection
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- Kafka builders


KAFKA_CASES: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "plaintext": ({}, {"security_protocol": "PLAINTEXT"}),
    "ssl": (
        {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "CA"},
        {"security_protocol": "SSL", "ssl_check_hostname": True, "ssl_cafile": "CA"},
    ),
    "ssl-mutual": (
        {
            "kafka_security_protocol": "SSL",
            "kafka_ssl_cafile": "CA",
            "kafka_ssl_certfile": "CERT",
            "kafka_ssl_keyfile": "KEY",
        },
        {
            "security_protocol": "SSL",
            "ssl_check_hostname": True,
            "ssl_cafile": "CA",
            "ssl_certfile": "CERT",
            "ssl_keyfile": "KEY",
        },
    ),
    "sasl-plaintext-scram256": (
        {**SASL_SSL_SCRAM, "kafka_security_protocol": "SASL_PLAINTEXT"},
        {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "dialwatch",
            "sasl_plain_password": SECRET,
        },
    ),
    "sasl-plaintext-plain-allowed": (
        {
            **SASL_SSL_SCRAM,
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": "PLAIN",
            "kafka_allow_plaintext_sasl": True,
        },
        {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": "dialwatch",
            "sasl_plain_password": SECRET,
        },
    ),
    "sasl-ssl-scram512": (
        {**SASL_SSL_SCRAM, "kafka_ssl_cafile": "CA"},
        {
            "security_protocol": "SASL_SSL",
            "ssl_check_hostname": True,
            "ssl_cafile": "CA",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "dialwatch",
            "sasl_plain_password": SECRET,
        },
    ),
    "sasl-ssl-plain-system-ca": (
        {**SASL_SSL_SCRAM, "kafka_sasl_mechanism": "PLAIN"},
        {
            "security_protocol": "SASL_SSL",
            "ssl_check_hostname": True,
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": "dialwatch",
            "sasl_plain_password": SECRET,
        },
    ),
}


@dataclass(frozen=True)
class Pki:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("openssl not found: the TLS tests need it to make certificates")
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    days = ["-days", "2"]
    for ca in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key",
            "-out", f"{ca}.crt", *days, "-subj", f"/CN=dialwatch test {ca}", cwd=d,
        )  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN=dialwatch-{name}", cwd=d,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", *days, "-extfile", f"{name}.ext", cwd=d,
        )  # fmt: skip
    return Pki(
        d / "ca.crt",
        d / "server.crt",
        d / "server.key",
        d / "client.crt",
        d / "client.key",
        d / "other-ca.crt",
    )


def _kafka_settings(changes: dict[str, object], pki: Pki) -> Settings:
    files = {"CA": pki.ca, "CERT": pki.client_cert, "KEY": pki.client_key}
    resolved = {k: files.get(v, v) if isinstance(v, str) else v for k, v in changes.items()}
    return Settings().with_(**resolved)


@pytest.mark.parametrize("case", list(KAFKA_CASES))
def test_kafka_python_kwargs(case: str, pki: Pki) -> None:
    changes, expected = KAFKA_CASES[case]
    files = {"CA": str(pki.ca), "CERT": str(pki.client_cert), "KEY": str(pki.client_key)}
    expected = {k: files.get(v, v) if isinstance(v, str) else v for k, v in expected.items()}
    kwargs = kafka_python_kwargs(_kafka_settings(changes, pki))
    assert kwargs == expected
    # Every key is a configuration kafka-python's producer, consumer and admin client accept.
    for client in (KafkaProducer, KafkaConsumer, KafkaAdminClient):
        assert set(kwargs) <= set(client.DEFAULT_CONFIG), client


def test_kafka_python_kwargs_reads_the_password_file(tmp_path: Path) -> None:
    s = Settings(
        **{**SASL_SSL_SCRAM, "kafka_sasl_password": None},  # type: ignore[arg-type]
        kafka_sasl_password_file=secret_file(tmp_path),
    )
    assert kafka_python_kwargs(s)["sasl_plain_password"] == SECRET


@pytest.mark.parametrize("case", list(KAFKA_CASES))
async def test_faust_credentials_reach_aiokafka(case: str, pki: Pki) -> None:
    changes, expected = KAFKA_CASES[case]
    s = _kafka_settings(changes, pki)
    credentials = faust_broker_credentials(s)
    if case == "plaintext":
        assert credentials is None
        return
    assert credentials is not None
    assert SECRET not in repr(credentials)
    # What faust-streaming 0.15 hands to aiokafka for its consumer and producer.
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == expected["security_protocol"]
    for key in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
        assert auth.get(key) == expected.get(key)
    if expected["security_protocol"] in ("SSL", "SASL_SSL"):
        context = auth["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
    # aiokafka's own validation accepts the combination (it rejects e.g. SSL without a context
    # or an unknown mechanism); nothing connects.
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", **auth)
    await producer.stop()


def test_faust_app_takes_the_credentials_and_web_lockdown() -> None:
    s = Settings(**SASL_SSL_SCRAM)  # type: ignore[arg-type]
    app = faust.App(
        "dialwatch-security-test",
        broker="kafka://127.0.0.1:9",
        **faust_broker_kwargs(s),
        **faust_web_kwargs(),
    )
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    # Only faust's "/" status page stays besides the worker's own pages.
    assert [prefix for prefix, _ in app.web._enabled_blueprints()] == [""]


def test_kafka_ssl_context_loads_the_client_certificate(pki: Pki) -> None:
    s = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki.ca,
        kafka_ssl_certfile=pki.client_cert,
        kafka_ssl_keyfile=pki.client_key,
    )
    context = kafka_ssl_context(s)
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1
    with pytest.raises(FileNotFoundError):
        kafka_ssl_context(s.with_(kafka_ssl_cafile=pki.ca.with_name("absent.crt")))


def test_describe_names_the_setup_without_secrets(tmp_path: Path) -> None:
    s = Settings(
        **{**SASL_SSL_SCRAM, "kafka_sasl_password": None},  # type: ignore[arg-type]
        kafka_sasl_password_file=secret_file(tmp_path),
        redis=f"rediss://dialwatch:{SECRET}@r:6380/0",
    )
    line = describe(s)
    assert SECRET not in line
    assert line == (
        "kafka: SASL_SSL SCRAM-SHA-512 user=dialwatch password from file ca=system;"
        " redis: rediss://dialwatch:***@r:6380/0"
    )
    assert describe(Settings()) == "kafka: PLAINTEXT; redis: not configured"


# --------------------------------------------------------------------------- the ACL rule


def test_redis_acl_rule() -> None:
    rule = redis_acl_rule("dialwatch", "dw", SECRET)
    assert SECRET not in rule
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    assert rule.startswith(f"user dialwatch reset on #{digest} ~dw:* resetchannels -@all +evalsha")
    assert rule.split()[-len(REDIS_ACL_COMMANDS) :] == [f"+{c}" for c in REDIS_ACL_COMMANDS]
    with pytest.raises(ValueError, match="glob"):
        redis_acl_rule("dialwatch", "dw*", SECRET)


def test_docs_show_the_tested_acl_rule() -> None:
    rule = redis_acl_rule("dialwatch", "dw", "x")
    shown = re.sub("#[0-9a-f]{64}", "#<sha256-of-the-password>", rule)
    assert shown in DOCS.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- real redis-server


USER = "dialwatch"
PASSWORD = "acl-" + SECRET


@dataclass(frozen=True)
class AclRedis:
    service: Service
    tls_port: int

    @property
    def url(self) -> str:
        return f"redis://{USER}@127.0.0.1:{self.service.port}/0"

    @property
    def tls_url(self) -> str:
        return f"rediss://{USER}@127.0.0.1:{self.tls_port}/0"


@pytest.fixture(scope="module")
def acl_redis(pki: Pki) -> Iterator[AclRedis]:
    """redis-server with the default user off and only the documented dialwatch user, on a
    plain port and on a TLS port that requires a client certificate."""
    rule = redis_acl_rule(USER, "dw", PASSWORD).split()
    tls_port = free_port()
    service = start_redis(
        extra=[
            "--user", "default", "off",
            "--user", *rule[1:],
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(pki.server_cert),
            "--tls-key-file", str(pki.server_key),
            "--tls-ca-cert-file", str(pki.ca),
            "--tls-auth-clients", "yes",
        ]
    )  # fmt: skip
    try:
        assert PASSWORD not in " ".join(service.argv)  # only its SHA-256 is on the command line
        wait_for_port(tls_port, 15.0, service.proc)
        yield AclRedis(service, tls_port)
    finally:
        service.stop()


def _store(client: RedisClient, prefix: str = "dw") -> RedisStore:
    return RedisStore(client, prefix=prefix, window_ttl_ms=60_000, partition_ttl_ms=120_000)


async def _exercise_store(store: RedisStore) -> None:
    """Every command the store's scripts use: read, an empty write, a write, a delete."""
    number = "13800138000"
    meta = await store.load_meta(0)
    read = await store.read(0, [number], 0)
    assert read.windows == {number: None} and read.episodes == {number: None} and not read.due
    await store.write(0, meta.offset, Changes(PartitionMeta(meta.offset + 1, 1_000), {}, {}))
    assert await store.load_meta(0) == PartitionMeta(meta.offset + 1, 1_000)
    changes = Changes(PartitionMeta(meta.offset + 2, 2_000), {number: b"w"}, {number: (b"e", 5)})
    await store.write(0, meta.offset + 1, changes)
    read = await store.read(0, [number], 0)
    assert (read.windows, read.episodes) == ({number: b"w"}, {number: b"e"})
    assert (await store.read(0, [], 10)).due == {number: (b"e", 5)}
    changes = Changes(PartitionMeta(meta.offset + 3, 3_000), {number: b""}, {number: (b"", None)})
    await store.write(0, meta.offset + 2, changes)
    read = await store.read(0, [number], 10)
    assert (read.windows, read.episodes, read.due) == ({number: None}, {number: None}, {})


async def test_store_works_as_acl_user_with_password_file(
    acl_redis: AclRedis, tmp_path: Path
) -> None:
    s = Settings(redis=acl_redis.url, redis_password_file=secret_file(tmp_path, PASSWORD + "\n"))
    client = redis_client(s)
    store = _store(client)
    try:
        assert await client.ping()
        await _exercise_store(store)
    finally:
        await store.close()


async def test_store_works_over_tls_with_client_certificate(
    acl_redis: AclRedis, pki: Pki, tmp_path: Path
) -> None:
    s = Settings(
        redis=acl_redis.tls_url,
        redis_password_file=secret_file(tmp_path, PASSWORD),
        redis_ssl_cafile=pki.ca,
        redis_ssl_certfile=pki.client_cert,
        redis_ssl_keyfile=pki.client_key,
    )
    client = redis_client(s)
    store = _store(client)
    try:
        await _exercise_store(store)
    finally:
        await store.close()


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"redis_ssl_cafile": None}, id="untrusted-server"),
        pytest.param({"redis_ssl_cafile": "other"}, id="wrong-ca"),
        pytest.param({"redis_ssl_certfile": None, "redis_ssl_keyfile": None}, id="no-client-cert"),
    ],
)
async def test_tls_refuses_unverified_peers(
    acl_redis: AclRedis, pki: Pki, changes: dict[str, object]
) -> None:
    s = Settings(
        redis=acl_redis.tls_url,
        redis_password=PASSWORD,
        redis_ssl_cafile=pki.ca,
        redis_ssl_certfile=pki.client_cert,
        redis_ssl_keyfile=pki.client_key,
    ).with_(**{k: pki.other_ca if v == "other" else v for k, v in changes.items()})
    client = redis_client(s)
    try:
        with pytest.raises(RedisConnectionError) as info:
            await client.ping()
        assert PASSWORD not in "".join(traceback.format_exception(info.value))
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("url_user", "password"),
    [(USER, "wrong-" + SECRET), ("nobody", PASSWORD), (USER, PASSWORD[:-1])],
    ids=["wrong-password", "unknown-user", "truncated-password"],
)
async def test_wrong_credentials_fail_without_showing_them(
    acl_redis: AclRedis, tmp_path: Path, url_user: str, password: str
) -> None:
    url = f"redis://{url_user}@127.0.0.1:{acl_redis.service.port}/0"
    client = redis_client(Settings(redis=url, redis_password_file=secret_file(tmp_path, password)))
    store = _store(client)
    try:
        with pytest.raises(AuthenticationError) as info:
            await store.load_meta(0)
        text = "".join(traceback.format_exception(info.value)) + repr(info.value)
        assert password not in text
        assert PASSWORD not in text
        assert SECRET not in text
    finally:
        await store.close()


async def test_default_user_is_off(acl_redis: AclRedis) -> None:
    client = aioredis.Redis.from_url(acl_redis.service.address)
    try:
        with pytest.raises(AuthenticationError, match=r"NOAUTH|authenticated"):
            await client.ping()
    finally:
        await client.aclose()


async def test_acl_confines_the_user_to_its_prefix_and_commands(acl_redis: AclRedis) -> None:
    client = redis_client(Settings(redis=acl_redis.url, redis_password=PASSWORD))
    try:
        await client.set("dw:probe", b"1", px=1000)  # inside the prefix: allowed
        with pytest.raises(NoPermissionError, match="keys"):
            await client.set("other:probe", b"1")
        with pytest.raises(NoPermissionError, match="keys"):
            await client.hmget("dwx:{p0}:meta", ["off"])  # "dw" without its ":" is outside too
        with pytest.raises(NoPermissionError, match="keys"):
            await _store(client, prefix="other").load_meta(0)
        with pytest.raises(NoPermissionError):  # the store's scripts, on foreign keys
            await _store(client, prefix="other").read(0, ["13800138000"], 0)
        with pytest.raises(NoPermissionError):
            await client.flushall()
        with pytest.raises(NoPermissionError):
            await client.keys("*")
        with pytest.raises(NoPermissionError):
            await client.config_get("*")
        with pytest.raises(NoPermissionError):
            await client.eval("return 1", 0)
        with pytest.raises(ResponseError):  # a command a script may not call either
            await client.evalsha(await client.script_load("return redis.call('FLUSHALL')"), 0)
    finally:
        await client.aclose()
