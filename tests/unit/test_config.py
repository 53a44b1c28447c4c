"""Policy parsing (the bundled TOML and its validation) and Settings from the environment."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from config.policy import ACTIONS, SEVERITIES, Level, load_policy, parse_policy
from config.settings import DEFAULT_POLICY_FILE, Settings

# --------------------------------------------------------------------------- default policy


def test_bundled_default_policy_loads() -> None:
    policy = load_policy(DEFAULT_POLICY_FILE)
    assert policy.version == "2026.12.3"
    assert dict(policy.windows) == {
        "5m": 300,
        "10m": 600,
        "40m": 2400,
        "1h": 3600,
        "2h": 7200,
        "24h": 86_400,
    }
    assert set(policy.detectors) == {
        "bulk_dialling",
        "robocall",
        "quota_dialling",
        "sequential_dialling",
        "one_ring",
        "call_bombing",
        "coordinated_block",
        "spoofed_identity",
        "debt_collection",
    }
    bulk = policy.detector("bulk_dialling")
    assert bulk is not None
    assert (bulk.name, bulk.category) == ("bulk_dialling", "telemarketing")
    critical, warning = bulk.levels
    assert (critical.severity, critical.action) == ("critical", "intercept")
    assert dict(critical.thresholds) == {"5m": 22, "40m": 250, "24h": 2000}
    assert dict(critical.conditions) == {"max_answer_rate": 0.45, "min_short_share": 0.5}
    assert (warning.severity, warning.action) == ("warning", "monitor")
    assert dict(warning.conditions) == {}
    assert policy.factor("mvno") == 0.8 and policy.factor("mobile") == 1.0
    assert dict(policy.features.peer_windows) == {"callee": "10m", "block": "1h"}
    assert policy.detectors["one_ring"].levels[0].classes == frozenset({"international"})
    assert policy.detectors["call_bombing"].params["member_min_calls"] == 3
    assert dict(policy.features.pair_windows) == {"callee": "2h"}
    debt = policy.detectors["debt_collection"]
    assert (debt.category, debt.params["member_min_calls"]) == ("debt_collection", 12)
    assert debt.levels[0].classes == frozenset({"mobile", "mvno", "fixed"})


@pytest.mark.parametrize(
    ("pairs", "message"),
    [({"number": "2h"}, "unknown subject kind"), ({"callee": "3h"}, "unknown window")],
)
def test_pair_windows_are_validated(pairs: dict[str, str], message: str) -> None:
    raw = {
        "policy_version": "t",
        "windows": {"2h": 7200},
        "features": {"pair_windows": pairs},
        "detectors": {},
    }
    with pytest.raises(ValueError, match=message):
        parse_policy(raw)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"conditions": {"max_answer_rate": -1}}, "non-negative"),
        ({"conditions": {"max_answer_rate": True}}, "non-negative"),
        ({"classes": "mobile"}, "classes must be a list"),
    ],
)
def test_level_conditions_and_classes_are_validated(extra: dict[str, object], message: str) -> None:
    raw = with_level(**extra)
    with pytest.raises(ValueError, match=message):
        parse_policy(raw)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"short_call_s": -1}, "non-negative integer"),
        ({"peer_windows": {"galaxy": "40m"}}, "unknown subject kind"),
        ({"peer_windows": {"callee": "3m"}}, "unknown window"),
    ],
)
def test_features_are_validated(features: dict[str, object], message: str) -> None:
    raw = {**with_level(), "features": features}
    with pytest.raises(ValueError, match=message):
        parse_policy(raw)


def test_bundled_default_policy_is_the_settings_default() -> None:
    assert Settings().policy_file == DEFAULT_POLICY_FILE
    assert DEFAULT_POLICY_FILE.name == "default_policy.toml"
    assert DEFAULT_POLICY_FILE.is_file()


def test_unknown_detector_lookup_is_none() -> None:
    assert load_policy(DEFAULT_POLICY_FILE).detector("harassment") is None


def test_parsed_policy_is_read_only() -> None:
    policy = load_policy(DEFAULT_POLICY_FILE)
    with pytest.raises(TypeError):
        policy.windows["1m"] = 60  # type: ignore[index]
    with pytest.raises(TypeError):
        policy.detectors["bulk_dialling"].levels[0].thresholds["40m"] = 1  # type: ignore[index]


def test_parse_policy_does_not_alias_its_input() -> None:
    raw = copy.deepcopy(VALID)
    policy = parse_policy(raw)
    raw["windows"]["40m"] = 1  # type: ignore[index]
    raw["detectors"]["bulk_dialling"]["levels"][0]["thresholds"]["40m"] = 1  # type: ignore[index]
    assert policy.windows["40m"] == 2400
    assert policy.detectors["bulk_dialling"].levels[0].thresholds["40m"] == 250


VALID: dict[str, object] = {
    "policy_version": "test.1",
    "windows": {"40m": 2400, "24h": 86_400},
    "detectors": {
        "bulk_dialling": {
            "category": "telemarketing",
            "levels": [
                {"severity": "critical", "action": "intercept", "thresholds": {"40m": 250}},
            ],
        }
    },
}


def with_level(**level: object) -> dict[str, object]:
    raw = copy.deepcopy(VALID)
    lv = raw["detectors"]["bulk_dialling"]["levels"][0]  # type: ignore[index]
    lv.update(level)
    return raw


def with_levels(*levels: dict[str, object]) -> dict[str, object]:
    raw = copy.deepcopy(VALID)
    raw["detectors"]["bulk_dialling"]["levels"] = list(levels)  # type: ignore[index]
    return raw


def test_valid_policy_parses() -> None:
    policy = parse_policy(VALID)
    assert policy.version == "test.1"
    assert policy.detectors["bulk_dialling"].levels == (
        Level("critical", "intercept", {"40m": 250}),
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param({}, "[windows] must name at least one window", id="no-windows"),
        pytest.param(
            {"windows": {}}, "[windows] must name at least one window", id="empty-windows"
        ),
        pytest.param({"windows": [600]}, "[windows] must name", id="windows-not-a-table"),
        pytest.param({"windows": {"w": 0}}, "window 'w' must be a positive", id="window-zero"),
        pytest.param(
            {"windows": {"w": -60}}, "window 'w' must be a positive", id="window-negative"
        ),
        pytest.param(
            {"windows": {"w": "600"}}, "window 'w' must be a positive", id="window-string"
        ),
        pytest.param({"windows": {"w": 60.0}}, "window 'w' must be a positive", id="window-float"),
        pytest.param(
            with_level(thresholds={"1h": 10}),
            "bulk_dialling: threshold on unknown window '1h'",
            id="unknown-window",
        ),
        pytest.param(
            with_level(severity="urgent"),
            "bulk_dialling: severity must be one of",
            id="bad-severity",
        ),
        pytest.param(
            with_level(severity=None), "bulk_dialling: severity must be one of", id="no-severity"
        ),
        pytest.param(
            with_level(severity="Critical"),
            "bulk_dialling: severity must be one of",
            id="severity-wrong-case",
        ),
        pytest.param(
            with_level(action="block"), "bulk_dialling: action must be one of", id="bad-action"
        ),
        pytest.param(
            with_level(action=None), "bulk_dialling: action must be one of", id="no-action"
        ),
        pytest.param(
            with_level(thresholds={"40m": 0}),
            "bulk_dialling: threshold '40m' must be a positive integer",
            id="threshold-zero",
        ),
        pytest.param(
            with_level(thresholds={"40m": -250}),
            "bulk_dialling: threshold '40m' must be a positive integer",
            id="threshold-negative",
        ),
        pytest.param(
            with_level(thresholds={"40m": 2.5}),
            "bulk_dialling: threshold '40m' must be a positive integer",
            id="threshold-float",
        ),
        pytest.param(
            with_level(thresholds={"40m": "250"}),
            "bulk_dialling: threshold '40m' must be a positive integer",
            id="threshold-string",
        ),
        pytest.param(
            with_levels(
                {"severity": "critical", "action": "intercept", "thresholds": {"40m": 250}},
                {"severity": "critical", "action": "monitor", "thresholds": {"24h": 2000}},
            ),
            "bulk_dialling: two levels with the same severity",
            id="duplicate-severity",
        ),
    ],
)
def test_parse_policy_rejects(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^<policy>: " + re.escape(message)):
        parse_policy(raw)


def test_parse_policy_rejects_boolean_threshold() -> None:
    with pytest.raises(ValueError, match="threshold '40m' must be a positive integer"):
        parse_policy(with_level(thresholds={"40m": True}))


def test_levels_are_sorted_most_severe_first() -> None:
    raw = with_levels(
        {"severity": "info", "action": "monitor", "thresholds": {"24h": 300}},
        {"severity": "critical", "action": "intercept", "thresholds": {"40m": 250}},
        {"severity": "warning", "action": "monitor", "thresholds": {"40m": 150}},
    )
    levels = parse_policy(raw).detectors["bulk_dialling"].levels
    assert [lv.severity for lv in levels] == ["critical", "warning", "info"]
    assert [lv.rank for lv in levels] == [2, 1, 0]


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("action", ACTIONS)
def test_every_severity_and_action_is_accepted(severity: str, action: str) -> None:
    (level,) = (
        parse_policy(with_level(severity=severity, action=action)).detectors["bulk_dialling"].levels
    )
    assert (level.severity, level.action) == (severity, action)


def test_category_defaults_to_detector_name_and_version_to_unversioned() -> None:
    raw = {"windows": {"40m": 2400}, "detectors": {"bulk_dialling": {"levels": []}}}
    policy = parse_policy(raw)
    assert policy.version == "unversioned"
    assert policy.detectors["bulk_dialling"].category == "bulk_dialling"
    assert policy.detectors["bulk_dialling"].levels == ()


def test_load_policy_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[windows]\n"40m" = 2400\n[detectors.bulk_dialling]\n'
        '[[detectors.bulk_dialling.levels]]\nseverity = "critical"\n'
        'action = "intercept"\nthresholds = { "1h" = 5 }\n'
    )
    with pytest.raises(ValueError, match=re.escape(f"{path}: bulk_dialling: threshold on unknown")):
        load_policy(path)


def test_condition_names_are_the_detectors_to_check(tmp_path: Path) -> None:
    """The parser leaves condition names to the detectors (config imports no detector); the
    engine's check refuses an unknown one with the file and the field named."""
    from detectors.catalogue import load_all
    from detectors.registry import check_policy

    assert parse_policy(with_level(conditions={"max_fun": 1}))  # parses: not config's to judge
    path = tmp_path / "bad.toml"
    path.write_text(
        '[windows]\n"40m" = 2400\n[detectors.bulk_dialling]\n'
        '[[detectors.bulk_dialling.levels]]\nseverity = "critical"\n'
        'action = "intercept"\nthresholds = { "40m" = 5 }\nconditions = { max_fun = 1 }\n'
    )
    policy = load_policy(path)
    assert policy.source == str(path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: bulk_dialling: unknown condition")):
        check_policy(policy, load_all())


def test_load_policy_round_trips_a_two_level_file(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text(
        'policy_version = "x"\n[windows]\n"40m" = 2400\n"24h" = 86400\n'
        "[detectors.bulk_dialling]\n"
        '[[detectors.bulk_dialling.levels]]\nseverity = "warning"\naction = "monitor"\n'
        'thresholds = { "40m" = 100 }\n'
        '[[detectors.bulk_dialling.levels]]\nseverity = "critical"\naction = "intercept"\n'
        'thresholds = { "40m" = 250, "24h" = 2000 }\n'
    )
    levels = load_policy(path).detectors["bulk_dialling"].levels
    assert [(lv.severity, lv.action, dict(lv.thresholds)) for lv in levels] == [
        ("critical", "intercept", {"40m": 250, "24h": 2000}),
        ("warning", "monitor", {"40m": 100}),
    ]


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        pytest.param({"DIALWATCH_BUCKET_S": "30"}, "bucket_s", 30, id="int"),
        pytest.param({"DIALWATCH_WEB_PORT": " 8080 "}, "web_port", 8080, id="int-padded"),
        pytest.param({"DIALWATCH_BATCH_WITHIN_S": "0.5"}, "batch_within_s", 0.5, id="float"),
        pytest.param(
            {"DIALWATCH_SESSION_TIMEOUT_S": "10"}, "session_timeout_s", 10.0, id="float-int"
        ),
        pytest.param(
            {"DIALWATCH_POLICY_FILE": "/etc/dw/p.toml"},
            "policy_file",
            Path("/etc/dw/p.toml"),
            id="path",
        ),
        pytest.param(
            {"DIALWATCH_ALLOWLIST_FILE": "allow.txt"},
            "allowlist_file",
            Path("allow.txt"),
            id="optional-path",
        ),
        pytest.param(
            {"DIALWATCH_REDIS": "redis://r:6379/0"}, "redis", "redis://r:6379/0", id="optional-str"
        ),
        pytest.param({"DIALWATCH_KAFKA": "k1:9092,k2:9092"}, "kafka", "k1:9092,k2:9092", id="str"),
        pytest.param({"DIALWATCH_TIMEZONE": "UTC"}, "timezone", "UTC", id="timezone"),
        pytest.param({"DIALWATCH_BUCKET_S": ""}, "bucket_s", 60, id="empty-means-default"),
        pytest.param({"DIALWATCH_BUCKETS": "30"}, "bucket_s", 60, id="misspelt-ignored"),
        pytest.param({"dialwatch_bucket_s": "30"}, "bucket_s", 60, id="lower-case-ignored"),
        pytest.param({}, "allowlist_file", None, id="optional-default-none"),
    ],
)
def test_settings_from_env(env: dict[str, str], field: str, expected: object) -> None:
    got = getattr(Settings.from_env(env), field)
    assert got == expected
    assert type(got) is type(expected)


def test_settings_from_env_reads_many_at_once() -> None:
    s = Settings.from_env(
        {
            "DIALWATCH_BUCKET_S": "30",
            "DIALWATCH_LONG_BUCKET_S": "300",
            "DIALWATCH_LONG_WINDOW_FROM_S": "3600",
            "DIALWATCH_CDR_TOPIC": "cdrs.v2",
            "PATH": "/usr/bin",
        }
    )
    assert (s.bucket_s, s.long_bucket_s, s.long_window_from_s, s.cdr_topic) == (
        30,
        300,
        3600,
        "cdrs.v2",
    )
    assert s.alert_topic == Settings().alert_topic


def test_settings_from_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIALWATCH_BATCH_MAX", "123")
    monkeypatch.setenv("DIALWATCH_APP_ID", "dw-test")
    s = Settings.from_env()
    assert (s.batch_max, s.app_id) == (123, "dw-test")


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        pytest.param("DIALWATCH_BUCKET_S", "sixty", id="int-words"),
        pytest.param("DIALWATCH_WEB_PORT", "80.5", id="int-decimal"),
        pytest.param("DIALWATCH_BATCH_MAX", "2e3", id="int-exponent"),
        pytest.param("DIALWATCH_BATCH_WITHIN_S", "fast", id="float-words"),
        pytest.param("DIALWATCH_RETRY_MAX_BACKOFF_S", "5s", id="float-with-unit"),
    ],
)
def test_settings_from_env_rejects_junk_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: cannot read {re.escape(repr(raw))}"):
        Settings.from_env({name: raw})


def test_overrides_win_over_environment() -> None:
    env = {"DIALWATCH_BUCKET_S": "30", "DIALWATCH_KAFKA": "env:9092", "DIALWATCH_REDIS": "r://e"}
    s = Settings.from_env(env, bucket_s=20, kafka="cli:9092", redis=None)
    assert (s.bucket_s, s.kafka) == (20, "cli:9092")
    assert s.redis == "r://e"  # a None override means "not given", so the environment stays


def test_override_can_fix_an_invalid_environment_combination() -> None:
    env = {"DIALWATCH_BUCKET_S": "70"}  # 600 is not a multiple of 70
    with pytest.raises(ValueError, match="long_bucket_s must be a multiple of bucket_s"):
        Settings.from_env(env)
    assert Settings.from_env(env, long_bucket_s=700).long_bucket_s == 700


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"long_bucket_s": 90}, "long_bucket_s must be a multiple of bucket_s", id="90-of-60"
        ),
        pytest.param(
            {"bucket_s": 7}, "long_bucket_s must be a multiple of bucket_s", id="600-of-7"
        ),
        pytest.param({"bucket_s": 0}, "bucket_s must be positive", id="bucket-zero"),
        pytest.param({"bucket_s": -60}, "bucket_s must be positive", id="bucket-negative"),
        pytest.param({"long_bucket_s": 0}, "long_bucket_s must be positive", id="long-zero"),
        pytest.param({"batch_max": 0}, "batch_max must be positive", id="batch-zero"),
        pytest.param(
            {"topic_partitions": 0}, "topic_partitions must be positive", id="partitions-zero"
        ),
    ],
)
def test_settings_validation(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        Settings(**changes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"^{message}$"):
        Settings().with_(**changes)


@pytest.mark.parametrize(
    ("bucket_s", "long_bucket_s"),
    [(60, 600), (60, 60), (30, 300), (1, 7)],
    ids=["default", "equal", "30-300", "1-7"],
)
def test_settings_accepts_long_bucket_multiples(bucket_s: int, long_bucket_s: int) -> None:
    s = Settings(bucket_s=bucket_s, long_bucket_s=long_bucket_s)
    assert (s.bucket_s, s.long_bucket_s) == (bucket_s, long_bucket_s)


def test_with_returns_a_new_settings_and_keeps_the_original() -> None:
    base = Settings()
    changed = base.with_(bucket_s=30, kafka="x:1")
    assert (changed.bucket_s, changed.kafka) == (30, "x:1")
    assert (base.bucket_s, base.kafka) == (60, "127.0.0.1:9092")
