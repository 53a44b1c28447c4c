"""The one typed settings object; the environment is read here and nowhere else."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

DEFAULT_POLICY_FILE = Path(__file__).with_name("default_policy.toml")


@dataclass(frozen=True, slots=True)
class Settings:
    """Runtime settings. Every field maps to one ``DIALWATCH_<NAME>`` environment variable."""

    kafka: str = "127.0.0.1:9092"
    redis: str | None = None
    cdr_topic: str = "cdrs"
    alert_topic: str = "dialwatch.alerts"
    dead_letter_topic: str = "dialwatch.deadletter"
    # Callee, block and trunk observations, re-keyed by subject (README "Derived stream").
    derived_topic: str = "dialwatch.derived"
    # CDRs that arrived on a partition other than their normalised caller's, re-keyed to it
    # (README "Batches and partitions"); as many partitions as the CDR topic.
    repartition_topic: str = "dialwatch.repartition"
    # Complaint reports from the complaint centre (streams.complaints), keyed by number.
    complaint_topic: str = "complaints"
    # Ingress trunks whose names start with one of these (comma-separated) are international:
    # a domestic number presented on one is a spoofed identity.
    international_trunk_prefixes: str = "intl-"
    app_id: str = "dialwatch"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    key_prefix: str = "dw"
    # Event-time windows: buckets of bucket_s for windows shorter than long_window_from_s,
    # buckets of long_bucket_s for the rest (24 h in 144 ten-minute buckets stays small).
    bucket_s: int = 60
    long_bucket_s: int = 600
    long_window_from_s: int = 7200
    allowed_lateness_s: int = 1800
    episode_quiet_s: int = 3600
    max_future_skew_s: int = 300
    timezone: str = "Asia/Shanghai"
    batch_max: int = 2000
    batch_within_s: float = 0.2
    # At most about this many records per store round trip: a batch of batch_max messages of
    # JSON arrays is cut into chunks, so memory stays bounded whatever producers send.
    chunk_records: int = 20_000
    retry_max_backoff_s: float = 5.0
    policy_file: Path = DEFAULT_POLICY_FILE
    allowlist_file: Path | None = None
    # Consumer-group timeouts: a dead worker's partitions move after session_timeout_s
    # (issue 17: detection back within 10 s of a SIGKILL, docs/recovery.md). Faust heartbeats
    # from its consumer thread, so a long batch does not miss them. Tansu accepts a 4 s
    # session; an Apache Kafka broker needs group.min.session.timeout.ms <= 4000 (its default
    # is 6000) or DIALWATCH_SESSION_TIMEOUT_S=6.
    session_timeout_s: float = 4.0
    heartbeat_interval_s: float = 0.5
    rebalance_timeout_s: float = 10.0
    # How long a graceful stop (SIGTERM) may take before the worker logs what it waits on and
    # exits with status 1 (streams/shutdown.py); below a pod's termination grace period.
    stop_timeout_s: float = 20.0
    topic_partitions: int = 8
    # Replication factor of the topics dialwatch creates itself (derived, complaints); 1 suits
    # a single broker, production clusters want 3 (README "Topics").
    topic_replication: int = 1
    log_level: str = "info"
    # Key of the pseudonyms that name callees in alerts (detectors.pseudonym). Set a secret one
    # in production; this default only keeps demos and tests reproducible.
    pseudonym_key: str = "dialwatch-demo-key"
    # Security (docs/security.md). All off by default. A secret comes from its variable or from
    # a file (the *_file field), never both; secrets never appear in repr() or messages.
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    kafka_sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_sasl_password_file: Path | None = None
    # SASL PLAIN sends the password as is: only over TLS (SASL_SSL) unless this says otherwise.
    kafka_allow_plaintext_sasl: bool = False
    kafka_ssl_cafile: Path | None = None  # CA bundle for the brokers; None: the system's
    kafka_ssl_certfile: Path | None = None  # client certificate (mutual TLS)
    kafka_ssl_keyfile: Path | None = None  # its key, when not in the certificate file
    # Redis: the URL may name an ACL user (redis://user@host) and use TLS (rediss://); the
    # password then comes from redis_password or redis_password_file rather than the URL.
    redis_password: str | None = field(default=None, repr=False)
    redis_password_file: Path | None = None
    redis_ssl_cafile: Path | None = None
    redis_ssl_certfile: Path | None = None
    redis_ssl_keyfile: Path | None = None
    # Redis Cluster (docs/cluster.md): every Redis URL (this one and --redis) names a seed node
    # of a cluster, as a redis+cluster:// or rediss+cluster:// URL does by itself. Needed for a
    # TLS cluster with redis_ssl_* files, whose URL must stay rediss://.
    redis_cluster: bool = False
    # The worker's state-changing HTTP endpoints (POST /allowlist...) need this bearer token;
    # without one they are disabled. From the variable or from the file, never both.
    api_token: str | None = field(default=None, repr=False)
    api_token_file: Path | None = None
    # How often the worker re-reads the allowlist file (when changed) and the shared run-time
    # entries in Redis.
    allowlist_refresh_s: float = 10.0
    # After a restart, pending outbox alerts are checked against the last this-many messages of
    # each alert-topic partition before being published, so none appears twice.
    outbox_tail_messages: int = 100_000
    # How often the worker compares the offset stored with each partition's state against the
    # last offset it handled, and re-reads from Kafka what a store that lost writes is missing
    # (an idle partition gets no batch that would reveal the gap).
    store_audit_s: float = 5.0
    # How long the broker may hold the worker's fetches when it has nothing new (None:
    # Faust's fixed 1,500 ms). Apache Kafka answers as soon as data arrives, so this only costs
    # latency on brokers that hold every fetch for the whole wait, as Tansu does: there 10 ms
    # takes alert latency from seconds to a few hundred ms, for more worker CPU when idle.
    fetch_max_wait_ms: int | None = None
    # Window keys expire (wall clock) once their longest window, the lateness and one long
    # bucket have passed. A soak that compresses days of event time into minutes scales that
    # lifetime by the same factor; leave 1 in production.
    key_ttl_scale: float = 1.0
    # A Redis call (or connection attempt) taking longer fails, is retried, and turns /health
    # to degraded meanwhile.
    redis_timeout_s: float = 5.0
    # The numbering plan: a bundled one by name (cn, gb) or a TOML file (config/numbering/).
    numbering_plan: str = "cn"
    # Interception list (README "Interception"). Its own Redis, so switches' lookups never wait
    # behind the analytics scripts; None: the main Redis (DIALWATCH_REDIS).
    intercept_redis: str | None = None
    interception_topic: str = "dialwatch.interceptions"  # list add/remove events
    audit_topic: str = "dialwatch.audit"  # mirror of the audit trail
    # Mode per number class, overriding the defaults: "class=mode,..." (shadow, approve, auto).
    intercept_modes: str = ""
    intercept_open_max_s: int = 7 * 86_400  # an entry's life while its episode stays open
    intercept_after_clear_s: int = 86_400  # and once its episode cleared
    intercept_release_grace_s: int = 3 * 86_400  # a released number stays out this long
    # More than breaker_max auto-listings within breaker_window_s: new entries wait for approval.
    intercept_breaker_max: int = 500
    intercept_breaker_window_s: int = 600
    audit_retention_s: int = 90 * 86_400  # audit entries older than this are trimmed
    intercept_mirror_s: float = 0.5  # how often the audit trail is mirrored to the topics
    # Regulator feed and privacy (README "Regulator feed", docs/privacy.md). The feed topic
    # leaves dialwatch: flagged numbers only, never a callee or victim in clear.
    feed_topic: str = "dialwatch.regulator-feed"
    feed_retention_s: int = 400 * 86_400  # the worker creates the feed topic with this retention
    # Retention the worker gives the internal topics it creates (derived, repartition): they
    # carry callee numbers and only need to outlive a restart's re-read.
    internal_retention_s: int = 7 * 86_400
    # Names the pseudonym key (DIALWATCH_PSEUDONYM_KEY) in what leaves, so a consumer knows
    # when pseudonyms changed after a rotation; empty: a fingerprint of the key.
    pseudonym_key_id: str = ""
    # Operations metrics (issue 16, README "Metrics and endpoints"): how often the cached
    # gauges (interception list sizes, breaker, consumer and state lag) are read again.
    metrics_refresh_s: float = 5.0
    # Campaigns and leak sources (docs/campaigns.md)
    leak_candidates_topic: str = "dialwatch.leak-candidates"  # trace-leaks --publish
    # Once this share of a campaign's numbers (and at least min_flagged of them) is flagged for
    # interception on its own, the rest may be intercepted on the campaign's evidence.
    campaign_intercept_share: float = 0.5
    campaign_intercept_min_flagged: int = 2
    # HTTP API and console (docs/api.md). Named tokens with roles, one "name role token" a
    # line (read-only, operator, admin); api_token above stays an admin token named api-token.
    api_tokens_file: Path | None = None
    api_session_s: int = 8 * 3600  # a console login lasts this long
    api_recent_alerts: int = 2000  # alerts each worker keeps from the alert topic's tail
    # Reliability (issue 17, docs/ordering.md): stage 2's canonical order. A stage-1 partition
    # that has read all its input tells stage 2 so every progress_heartbeat_s; a derived
    # partition holds at most reorder_max_held observations back (beyond: released early).
    progress_heartbeat_s: float = 1.0
    reorder_max_held: int = 500_000
    # Scan performance (issue 18): "fast" lets subjects that cannot reach any threshold skip
    # the per-record engine (streams.fastscan); "reference" runs every record through it.
    scan_path: str = "fast"
    # Refused sends (issue 17 item 3, docs/recovery.md "Refused sends"): the producer's largest
    # request; a message beyond it (or the broker's limit) is dead-lettered, not retried.
    producer_max_request_bytes: int = 1_000_000
    # Campaigns in the worker (issue 21, docs/campaigns.md "In the worker"): stage 2 records
    # each caller's sketch per campaign_period_s of event time; once every derived partition's
    # release passed a period's end, one worker groups and ranks (on/off: campaigns).
    campaigns: bool = True
    campaign_period_s: int = 86_400
    campaign_tick_s: float = 5.0  # how often a worker checks whether a period can be evaluated
    campaign_min_victims: int = 20  # no leak candidate below this many victims
    campaign_days: int = 30  # the contact window before a victim's first call
    # Stage 2's canonical order (issue 17 item 4, docs/ordering.md "Idle sources"): a stage-1
    # partition is told idle only after its stored offset stayed at the end of its log this
    # long while another partition of the worker still receives input; a shorter pause
    # between two inputs keeps holding stage 2 back (its order intact). progress_stopped_s
    # (at the end) is the wait when no partition of the worker receives input. 20 s, not 5: a
    # 20-minute chaos run (40 h of scenario, sparse at night) gave other stage-2 ids with 5 s,
    # the same ids with 20 s (docs/recovery.md); a carrier's partitions are never that quiet.
    progress_idle_s: float = 20.0
    # Recovery (issue 17 item 2, docs/recovery.md): how often Faust commits the offsets of
    # acknowledged batches (Faust's default 2.8 s: a new owner's commits showed up that late).
    commit_interval_s: float = 1.0
    # Idleness when the input stopped for every partition of the worker (streams.idle): the
    # stream ended, or a pause for all (a producer's pause, a broker frozen) that must not be
    # taken for idleness, which would make stage-2 alert ids depend on timing.
    progress_stopped_s: float = 20.0
    # Contact circles (issue 19, README "Debt collection"): stage 2 keeps, per subscriber and
    # UTC day, at most 32 keyed hashes of the numbers it called or was called by, for this
    # many days (0: no circles, and no contacts_of_person_called evidence).
    circle_days: int = 3

    def __post_init__(self) -> None:
        for name in (
            "bucket_s",
            "long_bucket_s",
            "batch_max",
            "chunk_records",
            "topic_partitions",
            "topic_replication",
            "stop_timeout_s",
            "reorder_max_held",
            "progress_heartbeat_s",
            "producer_max_request_bytes",
            "progress_idle_s",
            "commit_interval_s",
            "progress_stopped_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.progress_stopped_s < self.progress_idle_s:
            raise ValueError("progress_stopped_s must be at least progress_idle_s")
        if self.long_bucket_s % self.bucket_s:
            raise ValueError("long_bucket_s must be a multiple of bucket_s")
        if self.api_token is not None and self.api_token_file is not None:
            raise ValueError("set api_token or api_token_file, not both")
        if self.allowlist_refresh_s <= 0:
            raise ValueError("allowlist_refresh_s must be positive")
        if not 0 < self.key_ttl_scale <= 1:
            raise ValueError("key_ttl_scale must be in (0, 1]")
        if self.fetch_max_wait_ms is not None and not 0 <= self.fetch_max_wait_ms <= 60_000:
            raise ValueError("fetch_max_wait_ms must be between 0 and 60000")
        if self.store_audit_s <= 0:
            raise ValueError("store_audit_s must be positive")
        if self.redis_timeout_s <= 0:
            raise ValueError("redis_timeout_s must be positive")
        for name in (
            "intercept_open_max_s",
            "intercept_after_clear_s",
            "intercept_breaker_max",
            "intercept_breaker_window_s",
            "audit_retention_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.intercept_release_grace_s < 0 or self.intercept_mirror_s <= 0:
            raise ValueError("intercept_release_grace_s >= 0 and intercept_mirror_s > 0, please")
        if self.feed_retention_s <= 0 or self.internal_retention_s <= 0:
            raise ValueError("feed_retention_s and internal_retention_s must be positive")
        if self.metrics_refresh_s <= 0:
            raise ValueError("metrics_refresh_s must be positive")
        if not 0 < self.campaign_intercept_share <= 1 or self.campaign_intercept_min_flagged < 1:
            raise ValueError(
                "campaign_intercept_share in (0, 1], campaign_intercept_min_flagged >= 1"
            )
        if self.api_session_s <= 0 or self.api_recent_alerts <= 0:
            raise ValueError("api_session_s and api_recent_alerts must be positive")
        if self.scan_path not in ("fast", "reference"):
            raise ValueError("scan_path must be fast or reference")
        if (
            self.campaign_period_s < 60
            or self.campaign_tick_s <= 0
            or self.campaign_min_victims < 1
            or self.campaign_days < 1
        ):
            raise ValueError(
                "campaign_period_s >= 60, campaign_tick_s > 0, campaign_min_victims >= 1 and"
                " campaign_days >= 1, please"
            )
        self._check_kafka_security()
        self._check_redis_cluster()
        self._check_redis_security()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``DIALWATCH_*`` variables; explicit overrides win."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"DIALWATCH_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.name, str(f.type), raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def international_trunks(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.international_trunk_prefixes.split(",") if p.strip())

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        """Like the dataclass repr, but secrets show as <redacted> and URLs lose passwords."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (not f.repr or f.name in _SECRET_FIELDS):
                shown = "<redacted>"
            elif f.name in _URL_FIELDS and isinstance(value, str):
                shown = repr(redact_url(value))
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _check_kafka_security(self) -> None:
        protocol = self.kafka_security_protocol
        if protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise ValueError(
                f"kafka_security_protocol must be one of {', '.join(KAFKA_SECURITY_PROTOCOLS)},"
                f" not {protocol!r}"
            )
        tls = protocol in ("SSL", "SASL_SSL")
        sasl_fields = (
            "kafka_sasl_mechanism",
            "kafka_sasl_username",
            "kafka_sasl_password",
            "kafka_sasl_password_file",
        )
        if not protocol.startswith("SASL_"):
            for name in sasl_fields:
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name} is set but kafka_security_protocol is {protocol};"
                        " SASL needs SASL_PLAINTEXT or SASL_SSL"
                    )
        else:
            mechanism = self.kafka_sasl_mechanism
            if mechanism is None:
                raise ValueError(f"kafka_sasl_mechanism is required with {protocol}")
            if mechanism not in KAFKA_SASL_MECHANISMS:
                raise ValueError(
                    f"kafka_sasl_mechanism must be one of {', '.join(KAFKA_SASL_MECHANISMS)},"
                    f" not {mechanism!r}"
                )
            if not self.kafka_sasl_username:
                raise ValueError(f"kafka_sasl_username is required with {protocol}")
            _check_secret_source(
                "kafka_sasl_password", self.kafka_sasl_password, self.kafka_sasl_password_file
            )
            if self.kafka_sasl_password is None and self.kafka_sasl_password_file is None:
                raise ValueError(
                    f"kafka_sasl_password or kafka_sasl_password_file is required with {protocol}"
                )
            if mechanism == "PLAIN" and not tls and not self.kafka_allow_plaintext_sasl:
                raise ValueError(
                    "SASL PLAIN over SASL_PLAINTEXT sends the password unencrypted: use SASL_SSL,"
                    " a SCRAM mechanism, or set kafka_allow_plaintext_sasl=true"
                )
        if not tls:
            for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name} is set but kafka_security_protocol is {protocol};"
                        " TLS needs SSL or SASL_SSL"
                    )
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError("kafka_ssl_keyfile needs kafka_ssl_certfile")

    def _check_redis_security(self) -> None:
        _check_secret_source("redis_password", self.redis_password, self.redis_password_file)
        given = self.redis_password is not None or self.redis_password_file is not None
        if self.redis is not None:
            if given and redact_url(self.redis) != self.redis:
                raise ValueError(
                    "the redis URL already carries a password: remove it from the URL or unset"
                    " redis_password and redis_password_file"
                )
            if not self.redis.lower().startswith("rediss://"):
                for name in ("redis_ssl_cafile", "redis_ssl_certfile", "redis_ssl_keyfile"):
                    if getattr(self, name) is not None:
                        raise ValueError(f"{name} is set but the redis URL is not rediss:// (TLS)")
        if self.redis_ssl_keyfile is not None and self.redis_ssl_certfile is None:
            raise ValueError("redis_ssl_keyfile needs redis_ssl_certfile")

    def _check_redis_cluster(self) -> None:
        if self.redis is None:
            return
        scheme = self.redis.partition("://")[0].lower()
        if not (self.redis_cluster or scheme in REDIS_CLUSTER_SCHEMES):
            return
        if scheme not in ("redis", "rediss", *REDIS_CLUSTER_SCHEMES):
            raise ValueError(
                "redis_cluster needs a redis://, rediss://, redis+cluster:// or rediss+cluster://"
                " URL"
            )
        if redis_url_database(self.redis) not in (None, 0):
            raise ValueError("the redis URL names a database other than 0: a cluster has only 0")
        if scheme == "rediss+cluster" and any(
            path is not None
            for path in (self.redis_ssl_cafile, self.redis_ssl_certfile, self.redis_ssl_keyfile)
        ):
            raise ValueError(
                "redis_ssl_* files need a rediss:// URL: for a TLS cluster use rediss:// with"
                " redis_cluster=true"
            )


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Secret-bearing fields declared before field(repr=False) was the convention.
_SECRET_FIELDS = frozenset({"pseudonym_key"})
_URL_FIELDS = frozenset({"kafka", "redis", "intercept_redis"})
# URL schemes naming a seed node of a Redis Cluster (streams.security.redis_client).
REDIS_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

# "user:password@" after "scheme://" or, in a bare "host:port" list, at the start of an entry.
# The password runs to the last "@" before whitespace, "?" or "#", so an unescaped "@", "/" or
# "," in it is still hidden (at worst more than the password is hidden, never less).
_URL_USERINFO = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s:/@,?#]*):(?P<password>[^\s?#]*)@"
)
_BARE_USERINFO = re.compile(r"(?P<head>^|(?<=[,\s]))(?P<user>[^\s:/@,?#]*):(?P<password>[^\s?#]*)@")
_URL_SECRET_QUERY = re.compile(
    r"(?i)(?P<key>[?&;](?:password|passwd|pwd|pass|secret|token|sasl_plain_password)=)[^&;#\s]*"
)


def redact_url(url: str) -> str:
    """``url`` (or a comma-separated list of them) with every password replaced by ``***``."""
    userinfo = _URL_USERINFO if "://" in url else _BARE_USERINFO
    url = userinfo.sub(lambda m: f"{m['head']}{m['user']}:***@", url)
    return _URL_SECRET_QUERY.sub(lambda m: f"{m['key']}***", url)


def redis_url_database(url: str) -> int | None:
    """The database a Redis URL names (path ``/N`` or ``?db=N``), None when it names none or
    one redis-py would reject anyway."""
    parts = urlsplit(url)
    raw = parts.path.strip("/") or next(
        (v for k, v in parse_qsl(parts.query) if k.lower() == "db"), ""
    )
    return int(raw) if raw.isdigit() else None


def _check_secret_source(name: str, value: str | None, path: Path | None) -> None:
    if value is not None and path is not None:
        raise ValueError(f"set {name} or {name}_file, not both")
    if value == "":
        raise ValueError(f"{name} is empty")


def _coerce(name: str, type_name: str, raw: str) -> object:
    try:
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
        if "Path" in type_name:
            return Path(raw)
        if type_name == "bool":
            return _parse_bool(raw)
    except ValueError as exc:
        raise ValueError(f"DIALWATCH_{name.upper()}: cannot read {raw!r}: {exc}") from None
    return raw


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _parse_bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("expected true or false")
