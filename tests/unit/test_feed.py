"""The regulator feed's pure parts: records, the period, the export's encoding (README
"Regulator feed"). The worker and the broker are in tests/integration/test_privacy.py."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import random
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.pseudonym import key_id
from streams.cli import main
from streams.feed.export import (
    COLUMNS,
    LEAK_COLUMNS,
    LEAK_COUNTS,
    encode,
    leak_rows,
    manifest,
    rows,
)
from streams.feed.period import parse_instant, parse_period, to_ms
from streams.feed.records import alert_record, decision_record, leak_records

TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 11, 28, tzinfo=TZ)


def alert(number: str = "17012345678", **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "alert_id": f"a-{number}",
        "episode_id": f"e-{number}",
        "number": number,
        "number_class": "mvno",
        "subject": "number",
        "detector": "bulk_dialling",
        "state": "raised",
        "severity": "critical",
        "action": "intercept",
        "category": "telemarketing",
        "event_time": "2026-11-28T09:38:22+08:00",
        "detected_at": "2026-12-01T09:00:00+08:00",
        "evidence": {"window_calls": 22, "answered": 6, "distinct": 22},
        "reasons": ["22 calls in 5m >= 18"],
        "allowlisted": False,
        "policy_version": "2026.12.1",
    }
    return {**base, **over}


# ----------------------------------------------------------------------------- records


@pytest.mark.parametrize(
    ("over", "flagged"),
    [
        ({}, True),
        ({"state": "escalated"}, True),
        ({"action": "monitor"}, False),  # a busy switchboard: not for the regulator
        ({"allowlisted": True, "action": "monitor"}, False),
        ({"subject": "callee", "number": "ps:0123456789abcdef0123", "action": "protect"}, False),
        ({"subject": "block", "number": "170123456xx", "action": "monitor"}, False),
        ({"subject": "trunk", "number": "intl-gw-1"}, False),
        ({"state": "cleared", "action": "monitor", "severity": "info"}, False),
    ],
)
def test_only_alerts_that_flag_a_number_become_records(over: dict[str, Any], flagged: bool) -> None:
    record = alert_record(alert(**over), "k1")
    assert (record is not None) == flagged
    if record is not None:
        assert record["record_type"] == "alert" and record["schema_version"] == 1
        assert record["pseudonym_key_id"] == "k1"


def test_an_alert_record_keeps_counts_only_never_member_lists() -> None:
    evidence = {"window_calls": 30, "members": 5, "victim": "13812345678", "ok": True}
    record = alert_record(alert(evidence=evidence), "k1")
    assert record is not None
    assert record["counts"] == {"members": 5, "window_calls": 30}
    assert "13812345678" not in orjson.dumps(record).decode()


@pytest.mark.parametrize(
    ("event", "number", "state"),
    [
        ("add", "17012345678", "active"),
        ("pending", "17012345678", "pending"),
        ("approve", "17012345678", "active"),
        ("release", "17012345678", "released"),
        ("withheld", "17012345678", "withheld"),
        ("protect", "ps:0123456789abcdef0123", None),  # a victim's entry
        ("protect_member", "ps:0123456789abcdef0123", None),
        ("breaker", "", None),
    ],
)
def test_decisions_are_about_flagged_numbers_only(
    event: str, number: str, state: str | None
) -> None:
    audit = {"event_id": "1-0", "event": event, "number": number, "actor": "alice"}
    record = decision_record(audit, "k1")
    assert (record and record["interception_state"]) == state


SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "regulator-feed.schema.json"


@functools.cache
def feed_validator() -> Any:
    import jsonschema  # type: ignore[import-untyped, unused-ignore]

    return jsonschema.Draft202012Validator(orjson.loads(SCHEMA.read_bytes()))


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_every_record_meets_the_documented_schema(data: st.DataObject) -> None:
    validator = feed_validator()
    for record in data.draw(feeds()):
        validator.validate(record)


def test_the_schema_refuses_a_pseudonym_as_the_number() -> None:
    record = alert_record(alert(), "k1")
    assert record is not None
    assert not feed_validator().is_valid({**record, "number": "ps:0123456789abcdef0123"})


def test_the_key_id_names_the_key_and_nothing_else() -> None:
    assert key_id(b"one") != key_id(b"two") and key_id(b"one") == key_id(b"one")
    assert key_id(b"one", "2026-q4") == "2026-q4"
    assert len(key_id(b"one")) == 9 and key_id(b"one").startswith("k")


# ----------------------------------------------------------------------------- the period

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=offsets
)


@settings(max_examples=200, deadline=None)
@given(instants, st.sampled_from(["seconds", "milliseconds", "microseconds", "minutes"]))
def test_a_time_with_an_offset_reads_back_exactly(value: datetime, spec: str) -> None:
    text = value.isoformat(timespec=spec)
    parsed = parse_instant(text, TZ)
    assert parsed == datetime.fromisoformat(text)
    assert to_ms(parsed) == (parsed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
def test_a_date_is_midnight_in_the_configured_zone(day: date) -> None:
    parsed = parse_instant(day.isoformat(), TZ)
    local = parsed.astimezone(TZ)
    assert (local.date(), local.hour, local.minute) == (day, 0, 0)


@given(instants)
def test_a_time_without_an_offset_is_refused(value: datetime) -> None:
    with pytest.raises(ValueError, match="offset"):
        parse_instant(value.replace(tzinfo=None).isoformat(timespec="seconds"), TZ)


@given(st.text(max_size=30))
def test_garbage_is_a_value_error_never_another(text: str) -> None:
    try:
        parsed = parse_instant(text, TZ)
    except ValueError:
        return
    assert parsed.utcoffset() is not None  # whatever is accepted is an exact instant


@given(instants, instants)
def test_until_must_be_after_since(a: datetime, b: datetime) -> None:
    since, until = a.isoformat(), b.isoformat()
    if b > a:
        assert parse_period(since, until, TZ) == (to_ms(a), to_ms(b))
    else:
        with pytest.raises(ValueError, match="not after"):
            parse_period(since, until, TZ)


# ----------------------------------------------------------------------------- the export

NUMBERS = ["17012345678", "13900139000", "95512345", "0044207946000"]


@st.composite
def feeds(draw: st.DrawFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 12))):
        number = draw(st.sampled_from(NUMBERS))
        minute = draw(st.integers(-600, 3000))
        counts = {"window_calls": draw(st.integers(0, 500)), "answered": draw(st.integers(0, 9))}
        a = alert(
            number,
            alert_id=f"a{i}",
            episode_id=f"e{number}{draw(st.integers(0, 1))}",
            event_time=(DAY + timedelta(minutes=minute)).isoformat(),
            evidence=counts,
            detector=draw(st.sampled_from(["bulk_dialling", "robocall", "call_bombing"])),
            category=draw(st.sampled_from(["telemarketing", "fraud", "call_bombing"])),
        )
        record = alert_record(a, "k1")
        assert record is not None
        out.append(record)
        if draw(st.booleans()):
            event = draw(st.sampled_from(["add", "pending", "approve", "release", "clear"]))
            audit = {
                "event_id": f"{draw(st.integers(1, 10**13))}-{i}",
                "event": event,
                "number": number,
                "actor": draw(st.sampled_from(["worker", "alice", "bob, the lead"])),
                "kind": "appeal" if event == "release" else "",
                "episode_id": a["episode_id"] if draw(st.booleans()) else "",
                "reason": 'quoted "text", commas',
            }
            decision = decision_record(audit, "k1")
            assert decision is not None
            out.append(decision)
    return out


PERIOD = (to_ms(DAY), to_ms(DAY + timedelta(days=1)))


@settings(max_examples=150, deadline=None)
@given(feeds(), st.randoms(use_true_random=False), st.sampled_from(["csv", "jsonl"]))
def test_the_same_records_give_the_same_bytes_in_any_order_and_repeated(
    feed: list[dict[str, Any]], rnd: random.Random, fmt: str
) -> None:
    expected = encode(rows(feed, *PERIOD), fmt)
    shuffled = feed + rnd.sample(feed, len(feed) // 2)  # at least once: repeats
    rnd.shuffle(shuffled)
    assert encode(rows(shuffled, *PERIOD), fmt) == expected


@settings(max_examples=150, deadline=None)
@given(feeds())
def test_csv_and_jsonl_hold_the_same_rows_for_the_period(feed: list[dict[str, Any]]) -> None:
    table = rows(feed, *PERIOD)
    in_period = {
        r["number"]
        for r in feed
        if r["record_type"] == "alert"
        and PERIOD[0] <= to_ms(datetime.fromisoformat(r["event_time"])) < PERIOD[1]
    }
    assert [row["number"] for row in table] == sorted(in_period)
    lines = encode(table, "jsonl").splitlines()
    assert [orjson.loads(line) for line in lines] == table
    text = encode(table, "csv").decode()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [p["number"] for p in parsed] == [row["number"] for row in table]
    for p, row in zip(parsed, table, strict=True):
        assert p["detectors"].split("|") == row["detectors"]
        assert int(p["window_calls"]) == row["window_calls"]
        assert p["approved_by"] == row["approved_by"]


def test_a_row_folds_episodes_decisions_and_counts() -> None:
    raised = alert_record(alert(evidence={"window_calls": 22, "answered": 6}), "k")
    later = alert_record(
        alert(
            alert_id="a2",
            detector="robocall",
            state="escalated",
            event_time="2026-11-28T10:00:00+08:00",
            evidence={"window_calls": 30, "answered": 2},
        ),
        "k",
    )
    decisions = [
        decision_record({"event_id": f"{ms}-0", "event": e, "number": "17012345678",
                         "actor": who, "kind": kind, "episode_id": "e-17012345678"}, "k")
        for ms, e, who, kind in (
            (1, "pending", "worker", ""),
            (2, "approve", "alice", ""),
            (3, "release", "bob", "appeal"),
        )
    ]  # fmt: skip
    [row] = rows([raised, later, *decisions], *PERIOD)  # type: ignore[list-item]
    assert row["first_seen"] == "2026-11-28T09:38:22+08:00"
    assert row["last_seen"] == "2026-11-28T10:00:00+08:00"
    assert (row["alerts"], row["window_calls"], row["answered"]) == (2, 30, 2)
    assert row["detectors"] == ["bulk_dialling", "robocall"]
    assert row["interception_state"] == "released"
    assert (row["approved_by"], row["released_by"], row["release_kind"]) == (
        "alice",
        "bob",
        "appeal",
    )


def test_the_manifest_has_no_wall_clock() -> None:
    data = b"x\n"
    one = manifest(data, name="f", fmt="csv", since="a", until="b", records=1, source="s")
    two = manifest(data, name="f", fmt="csv", since="a", until="b", records=1, source="s")
    assert one == two and one["sha256"] == hashlib.sha256(data).hexdigest()
    assert (one["bytes"], one["rows"]) == (2, 1)


# ----------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    ("since", "until", "culprit"),
    [
        ("2026-11-29", "2026-11-28", "is not after --since"),
        ("2026-11-28", "2026-11-28", "is not after --since"),
        ("2026-13-01", "2026-11-28", "--since '2026-13-01'"),
        ("2026-11-28T00:00:00", "2026-11-29", "needs an offset"),
        ("yesterday", "2026-11-29", "--since 'yesterday'"),
        ("2026-11-28", "2026-11-29T25:00+08:00", "--until"),
    ],
)
def test_bad_periods_are_one_line_and_exit_2(
    since: str, until: str, culprit: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text("")
    argv = ["feed", "export", "--since", since, "--until", until, "--input", str(feed)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and culprit in err and "Traceback" not in err


def test_a_missing_input_or_out_directory_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = ["feed", "export", "--since", "2026-11-28", "--until", "2026-11-29"]
    assert main([*base, "--input", str(tmp_path / "none.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "f.jsonl").write_text("")
    assert main([*base, "--input", str(tmp_path / "f.jsonl"), "--out", "/no/dir/x.csv"]) == 2
    assert "directory does not exist" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    assert main([*base, "--input", str(tmp_path / "bad.jsonl")]) == 1
    assert capsys.readouterr().err.count("\n") == 1


# ----------------------------------------------------------------------------- the worker


async def test_outbox_recovery_sends_the_feed_records_of_every_pending_alert() -> None:
    """A crash after the alerts reached the topic but before their feed records did: the next
    owner sends no alert again, but every pending alert's feed record (the export drops
    repeats by record_id)."""
    from streams.state.memory import MemoryStore
    from tests.factories import dial
    from tests.unit.test_runtime import runtime

    store = MemoryStore()
    first = runtime(store)
    first.engine.outbox = True
    outcome = await first.process(0, list(enumerate(dial("17012345678", 260, 2000))))
    ids = {a.alert_id for a in outcome.alerts}
    sent: list[bytes] = []
    fed: list[dict[str, Any]] = []

    async def published(wanted: set[str]) -> set[str]:
        return wanted  # every alert is on the topic already

    async def send(values: list[bytes]) -> list[Any]:
        sent.extend(values)
        return []

    async def feed(values: list[bytes]) -> list[Any]:
        for value in values:
            record = alert_record(orjson.loads(value), "k1")
            assert record is not None
            fed.append(record)
        return []

    second = runtime(store)
    second.engine.outbox = True
    second.feed = feed
    assert await second.recover(0, published, send) == 0
    assert sent == [] and {r["alert_id"] for r in fed} == ids
    assert {r["number"] for r in fed} == {"17012345678"}


# ----------------------------------------------------------------------------- leak candidates


def campaign(cid: str = "cmp-0123456789ab", victims: int = 40, **over: Any) -> dict[str, Any]:
    """A campaign record as the worker sends it to the leak-candidates topic."""
    base: dict[str, Any] = {
        "schema_version": 1,
        "campaign_id": cid,
        "members": ["17012345601", "17012345602"],
        "size": 2,
        "victims": victims,
        "calls": 80,
        "first_activity": "2026-11-05T09:00:00+08:00",
        "last_activity": "2026-11-07T20:00:00+08:00",
        "days": 30,
        "reportable": victims >= 20,
        "candidates": [
            {"number": "4001234567", "victims_contacted": 30, "victim_share": 0.75,
             "base_contacted": 50, "population": 1500, "base_share": 0.0339, "lift": 22.1,
             "log10_p": -30.2, "p_value": 1e-29},
            {"number": "95123", "victims_contacted": 9, "victim_share": 0.225,
             "base_contacted": 40, "population": 1500, "base_share": 0.0273, "lift": 8.2,
             "log10_p": -6.1, "p_value": 2e-5},
        ],
    }  # fmt: skip
    base.update(over)
    return base


def test_leak_candidates_are_records_of_their_own_with_counts_and_no_victim() -> None:
    records = leak_records(campaign(), "k1")
    assert [(r["number"], r["rank"]) for r in records] == [("4001234567", 1), ("95123", 2)]
    validator = feed_validator()
    for record in records:
        validator.validate(record)
        assert record["record_type"] == "leak_candidate"
        assert record["campaign_members"] == ["17012345601", "17012345602"]
        assert set(record["counts"]) == set(LEAK_COUNTS)
    # Deterministic ids: the same campaign state, the same ids; a grown one, new ids.
    assert [r["record_id"] for r in leak_records(campaign(), "k1")] == [
        r["record_id"] for r in records
    ]
    grown = leak_records(campaign(victims=41), "k1")
    assert not {r["record_id"] for r in grown} & {r["record_id"] for r in records}


def test_no_leak_record_below_the_minimum_victims() -> None:
    assert leak_records(campaign(victims=19), "k1") == []


def test_the_export_keeps_each_campaigns_latest_candidates_in_its_period() -> None:
    old = leak_records(campaign(victims=30), "k1")
    new = leak_records(campaign(victims=45, last_activity="2026-11-08T20:00:00+08:00"), "k1")
    other = leak_records(
        campaign(
            "cmp-ba9876543210",
            first_activity="2026-11-20T09:00:00+08:00",
            last_activity="2026-11-21T09:00:00+08:00",
        ),
        "k1",
    )
    feed = [*new, *old, *other, *old]
    since, until = parse_period("2026-11-01", "2026-11-10", ZoneInfo("Asia/Shanghai"))
    table = leak_rows(feed, since, until)
    assert [(r["campaign_id"], r["number"], r["victims"]) for r in table] == [
        ("cmp-0123456789ab", "4001234567", 45),
        ("cmp-0123456789ab", "95123", 45),
    ]
    shuffled = feed[:]
    random.Random(5).shuffle(shuffled)
    assert encode(leak_rows(shuffled, since, until), "csv", LEAK_COLUMNS) == encode(
        table, "csv", LEAK_COLUMNS
    )
    later = parse_period("2026-11-15", "2026-11-30", ZoneInfo("Asia/Shanghai"))
    assert [r["campaign_id"] for r in leak_rows(feed, *later)] == ["cmp-ba9876543210"] * 2


def test_export_writes_leak_candidates_beside_the_csv_and_into_jsonl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feed = tmp_path / "feed.jsonl"
    lines = [alert_record(alert(), "k1"), *leak_records(campaign(), "k1")]
    feed.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines if r))
    base = ["feed", "export", "--since", "2026-11-01", "--until", "2026-12-01"]
    out = tmp_path / "nov.csv"
    assert main([*base, "--input", str(feed), "--out", str(out)]) == 0
    leaks = tmp_path / "nov.leaks.csv"
    with leaks.open() as fh:
        got = list(csv.DictReader(fh))
    assert [(r["number"], r["rank"]) for r in got] == [("4001234567", "1"), ("95123", "2")]
    manifest_ = orjson.loads((tmp_path / "nov.csv.manifest.json").read_bytes())
    assert manifest_["leak_candidates"] == 2 and manifest_["leaks_file"] == "nov.leaks.csv"
    assert manifest_["leaks_sha256"] == hashlib.sha256(leaks.read_bytes()).hexdigest()
    assert (tmp_path / "nov.leaks.csv.sha256").read_text().startswith(manifest_["leaks_sha256"])
    jsonl = tmp_path / "nov.jsonl"
    assert main([*base, "--input", str(feed), "--format", "jsonl", "--out", str(jsonl)]) == 0
    types = [orjson.loads(line)["record_type"] for line in jsonl.read_bytes().splitlines()]
    assert types == ["flagged_number", "leak_candidate", "leak_candidate"]
