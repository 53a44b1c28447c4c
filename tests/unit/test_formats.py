"""Format adapters: the sample file of each format (tests/data/formats) reads to exact CDRs,
the simulator's writers read back to the records they were given, ids are stable."""

from __future__ import annotations

import io
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.numbering import CHINA
from streams.cdr import CDR, Reject, parse_record
from streams.files import read_located, read_records
from streams.formats import FORMATS, from_cli, get, parse_map
from streams.formats.asterisk import trunk_of
from streams.formats.base import Q850_BY_NAME

DATA = Path(__file__).resolve().parents[1] / "data" / "formats"
TZ = ZoneInfo("Asia/Shanghai")
T0 = 1_796_000_400_000  # 2026-11-30 09:00:00 in Asia/Shanghai


def read(name: str, fmt: str, mapping: str | None = None) -> list[tuple[int, CDR | Reject]]:
    return list(read_located(str(DATA / name), CHINA, tz=TZ, fmt=from_cli(fmt, mapping)))


def test_asterisk_master_csv() -> None:
    got = read("asterisk-Master.csv", "asterisk")
    cdrs = [(n, r) for n, r in got if isinstance(r, CDR)]
    want = [
        (1, "13800138000", "13900139000", T0, 125, True, 16, "carrier-a"),
        (2, "13800138001", "13900139001", T0 + 1000, 0, False, 17, "carrier-b"),
        (3, "13800138002", "13900139002", T0 + 2000, 0, False, 19, "carrier-a"),
        (4, "13800138003", "13900139003", T0 + 3000, 0, False, None, "1"),
        (5, "13800138004", "13900139004", T0 + 4000, 0, False, None, "carrier-a"),
        (6, "13800138000", "13900139005", T0 + 5000, 0, False, 19, "carrier-a"),
        (7, "13800138000", "13900139005", T0 + 5000, 0, False, 19, "carrier-a"),
    ]
    fields = [
        (n, r.caller, r.callee, r.start_ms, r.duration_s, r.answered, r.release_cause)
        for n, r in cdrs
    ]
    assert [(*f, r.ingress_trunk) for f, (_, r) in zip(fields, cdrs, strict=True)] == want
    assert all(r.attestation is None and r.cdr_id.startswith("ast-") for _, r in cdrs)
    # Same caller, callee and second, two channels: two attempts.
    assert cdrs[5][1].cdr_id != cdrs[6][1].cdr_id
    detail = "disposition is not ANSWERED, NO ANSWER, BUSY, FAILED"
    assert got[-1] == (8, Reject("bad_type", detail))


def test_a_file_read_twice_gives_the_same_ids() -> None:
    samples = [("asterisk-Master.csv", "asterisk"), ("freeswitch-Master.csv", "freeswitch-csv")]
    for name, fmt in samples:
        assert read(name, fmt) == read(name, fmt)


@pytest.mark.parametrize(
    ("channel", "trunk"),
    [
        ("SIP/trunk-00000a1b", "trunk"),
        ("PJSIP/carrier-b-0000001f", "carrier-b"),
        ("IAX2/peer-1234", "peer"),
        ("Local/100@from-internal-00000001;1", "100@from-internal"),
        ("SIP/10.0.0.1-00000001", "10.0.0.1"),
        ("", None),
    ],
)
def test_trunk_from_the_channel_name(channel: str, trunk: str | None) -> None:
    assert trunk_of(channel) == trunk


def test_freeswitch_csv_default_and_example_templates() -> None:
    got = read("freeswitch-Master.csv", "freeswitch-csv")
    assert all(isinstance(r, CDR) for _, r in got)
    cdrs = [r for _, r in got if isinstance(r, CDR)]
    assert [(c.cdr_id, c.start_ms, c.duration_s, c.answered, c.release_cause) for c in cdrs] == [
        ("fs-a5c9f6c0-e752-11e3-8bfb-65b6c3cdac7d", T0, 125, True, 16),
        ("fs-e29ff0ae-e752-11e3-8bff-65b6c3cdac7d", T0 + 1000, 0, False, 17),
        ("fs-e2fe712e-e752-11e3-8c03-65b6c3cdac7d", T0 + 2000, 0, False, 1),
        ("fs-e34619ac-e752-11e3-8c07-65b6c3cdac7d", T0 + 3000, 0, False, None),  # no Q.850
    ]
    assert all(c.ingress_trunk is None for c in cdrs)


def test_freeswitch_json_document_file_url_encoded_values() -> None:
    [(_, cdr)] = read("freeswitch-json-cdr.json", "freeswitch-json")
    assert cdr == CDR(
        "fs-a5c9f6c0-e752-11e3-8bfb-65b6c3cdac7d",
        "13800138000",
        "13900139000",
        T0 + 250,  # start_uepoch keeps the fraction
        125,
        True,
        16,
        None,
        "carrier-a",
    )


def test_freeswitch_json_lines_fall_back_to_the_callflow_profile() -> None:
    got = read("freeswitch-json-lines.jsonl", "freeswitch-json")
    assert [(n, r.callee if isinstance(r, CDR) else r.reason) for n, r in got] == [
        (1, "13900139001"),
        (2, "13900139002"),
        (3, "missing_field"),
    ]
    first = got[0][1]
    assert isinstance(first, CDR) and first.release_cause == 17 and first.caller == "13800138001"


MAP = (
    "cdr_id=CALL_REF,caller=A_NUMBER,callee=B_NUMBER,start_time=SEIZURE,duration_ms=DUR_MS,"
    "answered=OK,release_cause=CAUSE,ingress_trunk=ROUTE"
)


def test_csv_map_reads_a_mediation_export() -> None:
    got = read("mediation-export.csv", "csv-map", MAP)
    assert got[:3] == [
        (2, CDR("m-1", "13800138000", "13900139000", T0, 126, True, 16, None, "carrier-a")),
        (3, CDR("m-2", "13800138001", "13900139001", T0 + 1000, 0, False, 17, None, "carrier-b")),
        (4, CDR("m-3", "13800138002", "13900139002", T0 + 2000, 0, False, 19, None, "carrier-a")),
    ]
    assert got[3] == (5, Reject("bad_type", "answered must be true or false"))


def test_csv_map_without_an_id_column_derives_a_stable_one() -> None:
    mapping = MAP.replace("cdr_id=CALL_REF,", "")
    first, second = (
        read("mediation-export.csv", "csv-map", mapping),
        read("mediation-export.csv", "csv-map", mapping),
    )
    ids = [r.cdr_id for _, r in first if isinstance(r, CDR)]
    assert ids == [r.cdr_id for _, r in second if isinstance(r, CDR)]
    assert len(set(ids)) == 3 and all(i.startswith("map-") for i in ids)


@pytest.mark.parametrize(
    ("name", "mapping", "message"),
    [
        ("excel", None, "unknown format 'excel'"),
        ("csv-map", None, "csv-map needs --map"),
        ("asterisk", "caller=src", "--map is for csv-map"),
        ("csv-map", "caller", "is not field=column"),
        ("csv-map", "phone=src", "'phone' is not a field"),
    ],
)
def test_format_mistakes_are_one_line(name: str, mapping: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_cli(name, mapping)


def test_parse_map() -> None:
    assert parse_map(" caller = src ,callee=dst,") == {"caller": "src", "callee": "dst"}


RECORDS: list[dict[str, object]] = [
    {
        "cdr_id": f"c{i}",
        "caller": f"1380013{i:04d}",
        "callee": f"1390013{i:04d}",
        "start_time": f"2026-11-30T09:{i // 60:02d}:{i % 60:02d}+08:00",
        "duration_s": (i * 37) % 400 if i % 3 else 0,
        "answered": bool(i % 3),
        "release_cause": {0: 17, 1: 16, 2: 16}[i % 3] if i % 5 else 19,
        "ingress_trunk": f"core-{i % 4}",
    }
    for i in range(300)
]


@pytest.mark.parametrize("name", [n for n, f in FORMATS.items() if f.writable and n != "contract"])
def test_written_records_read_back_to_the_same_calls(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"cdrs.{name}"
    with path.open("w", encoding="utf-8", newline="") as out:
        assert get(name).write(out, RECORDS, TZ) == len(RECORDS)
    got = [r for r in read_records(str(path), CHINA, tz=TZ, fmt=get(name))]
    assert all(isinstance(r, CDR) for r in got)
    want = {
        (c.caller, c.start_ms): c
        for c in (parse_record(r, CHINA) for r in RECORDS)
        if isinstance(c, CDR)
    }
    assert len(got) == len(want)
    for cdr in got:
        assert isinstance(cdr, CDR)
        orig = want[(cdr.caller, cdr.start_ms)]
        assert (cdr.callee, cdr.duration_s, cdr.answered) == (
            orig.callee,
            orig.duration_s,
            orig.answered,
        )
        if name != "freeswitch-csv":  # the default template has no trunk
            assert cdr.ingress_trunk == orig.ingress_trunk
        if name != "asterisk":  # a disposition is not a cause
            assert cdr.release_cause == orig.release_cause


def test_asterisk_is_written_in_call_end_order() -> None:
    out = io.StringIO()
    get("asterisk").write(out, RECORDS, TZ)
    ends = [line.split('","')[11] for line in out.getvalue().splitlines()]
    assert ends == sorted(ends)
    starts = [line.split('","')[9] for line in out.getvalue().splitlines()]
    assert starts != sorted(starts)  # long calls come after later-starting short ones


def test_cause_names_are_q850() -> None:
    assert Q850_BY_NAME["NORMAL_CLEARING"] == 16
    assert Q850_BY_NAME["USER_BUSY"] == 17
    assert Q850_BY_NAME["NO_ANSWER"] == 19
    assert Q850_BY_NAME["UNALLOCATED_NUMBER"] == 1
    assert all(0 <= code <= 127 for code in Q850_BY_NAME.values())


def test_csv_map_naming_an_absent_column_says_which() -> None:
    got = read("mediation-export.csv", "csv-map", "caller=A_NUMBER,callee=CALLED")
    assert {r for _, r in got} == {
        Reject("missing_field", "--map names columns the header lacks: CALLED")
    }
