"""The one typed settings object; the environment is read here and nowhere else."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

DEFAULT_POLICY_FILE = Path(__file__).with_name("default_policy.toml")


@dataclass(frozen=True, slots=True)
class Settings:
    """Runtime settings. Every field maps to one ``DIALWATCH_<NAME>`` environment variable."""

    kafka: str = "127.0.0.1:9092"
    redis: str | None = None
    cdr_topic: str = "cdrs"
    alert_topic: str = "dialwatch.alerts"
    dead_letter_topic: str = "dialwatch.deadletter"
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
    retry_max_backoff_s: float = 5.0
    policy_file: Path = DEFAULT_POLICY_FILE
    allowlist_file: Path | None = None
    # Consumer-group timeouts: the defaults suit production; tests shorten them.
    session_timeout_s: float = 30.0
    heartbeat_interval_s: float = 3.0
    rebalance_timeout_s: float = 60.0
    topic_partitions: int = 8
    log_level: str = "info"

    def __post_init__(self) -> None:
        for name in ("bucket_s", "long_bucket_s", "batch_max", "topic_partitions"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.long_bucket_s % self.bucket_s:
            raise ValueError("long_bucket_s must be a multiple of bucket_s")

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

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _coerce(name: str, type_name: str, raw: str) -> object:
    try:
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
        if "Path" in type_name:
            return Path(raw)
    except ValueError as exc:
        raise ValueError(f"DIALWATCH_{name.upper()}: cannot read {raw!r}: {exc}") from None
    return raw
