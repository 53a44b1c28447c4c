"""CDR files: CSV with a header, JSON Lines, gzip, and stdin, yielding CDR/Reject in file order."""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import orjson
import pytest

from config.numbering import CHINA
from streams.cdr import CDR, Reject
from streams.errors import UsageError
from streams.files import read_records

T0_MS = 1_793_581_200_000  # 2026-11-02T01:00:00Z

HEADER = "cdr_id,caller,callee,start_time,duration_s,answered,release_cause,direction\n"
CSV_ROWS = (
    "a,13800138000,13900139000,2026-11-02T01:00:00Z,12,true,16,out\n"
    "b,+86 138 0013 8000,13900139001,1793581260,0,false,,\n"
    "c,not-a-number,13900139002,1793581320,0,false,,\n"
    "d,13800138000,13900139003,2026-11-02T09:03:00+08:00,5,maybe,,\n"
    'e,"138 0013 8000",13900139004,1793581440,3,TRUE,,in\n'
)
CSV_EXPECTED: list[CDR | Reject] = [
    CDR("a", "13800138000", "13900139000", T0_MS, 12, True, 16, "out"),
    CDR("b", "13800138000", "13900139001", T0_MS + 60_000, 0, False),
    Reject("bad_number", "caller is not a phone number"),
    Reject("bad_type", "answered must be true or false"),
    CDR("e", "13800138000", "13900139004", T0_MS + 240_000, 3, True, None, "in"),
]


def line(**fields: object) -> str:
    base: dict[str, object] = {
        "cdr_id": "j",
        "caller": "13800138000",
        "callee": "13900139000",
        "start_time": 1_793_581_200,
        "duration_s": 12,
        "answered": True,
    }
    return orjson.dumps({**base, **fields}).decode()


JSONL_TEXT = (
    "\n".join(
        [
            line(cdr_id="j1"),
            "",
            "   ",
            '{"cdr_id": "j2", "caller": ',  # truncated: malformed
            "[" + line(cdr_id="j3") + ", " + line(cdr_id="j4", duration_s=-1) + "]",
            "42",
            line(cdr_id="j5", answered="false", start_time="2026-11-02T09:00:00+08:00"),
        ]
    )
    + "\n"
)
JSONL_EXPECTED_SHAPE = [
    ("CDR", "j1"),
    ("Reject", "malformed_json"),
    ("CDR", "j3"),
    ("Reject", "bad_duration"),
    ("Reject", "not_an_object"),
    ("CDR", "j5"),
]


def shape(records: list[CDR | Reject]) -> list[tuple[str, str]]:
    return [("CDR", r.cdr_id) if isinstance(r, CDR) else ("Reject", r.reason) for r in records]


def write(path: Path, text: str) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return str(path)


@pytest.mark.parametrize("name", ["cdrs.csv", "cdrs.csv.gz", "cdrs.txt"], ids=["csv", "gz", "txt"])
def test_csv_with_header_yields_records_in_order(tmp_path: Path, name: str) -> None:
    got = list(read_records(write(tmp_path / name, HEADER + CSV_ROWS), CHINA))
    assert got == CSV_EXPECTED


def test_csv_with_crlf_line_endings(tmp_path: Path) -> None:
    text = (HEADER + CSV_ROWS).replace("\n", "\r\n")
    assert list(read_records(write(tmp_path / "crlf.csv", text), CHINA)) == CSV_EXPECTED


def test_csv_header_order_does_not_matter_and_extra_columns_are_ignored(tmp_path: Path) -> None:
    text = (
        "answered,start_time,note,duration_s,callee,caller,cdr_id\n"
        "false,1793581200,hello,7,13900139000,13800138000,x1\n"
    )
    got = list(read_records(write(tmp_path / "reordered.csv", text), CHINA))
    assert got == [CDR("x1", "13800138000", "13900139000", T0_MS, 7, False)]


def test_csv_short_and_long_rows(tmp_path: Path) -> None:
    text = (
        "cdr_id,caller,callee,start_time,duration_s,answered\n"
        "s1,13800138000,13900139000,1793581200,7,true,surplus,cells\n"
        "s2,13800138000\n"
    )
    got = list(read_records(write(tmp_path / "ragged.csv", text), CHINA))
    assert got == [
        CDR("s1", "13800138000", "13900139000", T0_MS, 7, True),
        Reject("missing_field", "missing callee"),
    ]


def test_csv_header_only_yields_nothing(tmp_path: Path) -> None:
    assert list(read_records(write(tmp_path / "empty.csv", HEADER), CHINA)) == []


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl", "empty.jsonl.gz"])
def test_empty_file_yields_nothing(tmp_path: Path, name: str) -> None:
    assert list(read_records(write(tmp_path / name, ""), CHINA)) == []


@pytest.mark.parametrize(
    "name", ["cdrs.jsonl", "cdrs.jsonl.gz", "cdrs.json"], ids=["jsonl", "gz", "json"]
)
def test_json_lines_mix_of_records_and_rejects_in_order(tmp_path: Path, name: str) -> None:
    got = list(read_records(write(tmp_path / name, JSONL_TEXT), CHINA))
    assert shape(got) == JSONL_EXPECTED_SHAPE
    assert got[0] == CDR("j1", "13800138000", "13900139000", T0_MS, 12, True)
    assert got[5] == CDR("j5", "13800138000", "13900139000", T0_MS, 12, False)


def test_json_lines_with_crlf_and_no_final_newline(tmp_path: Path) -> None:
    text = JSONL_TEXT.rstrip("\n").replace("\n", "\r\n")
    got = list(read_records(write(tmp_path / "crlf.jsonl", text), CHINA))
    assert shape(got) == JSONL_EXPECTED_SHAPE


def test_file_starting_with_array_is_read_as_json(tmp_path: Path) -> None:
    text = "[" + line(cdr_id="k1") + "," + line(cdr_id="k2") + "]\n" + line(cdr_id="k3") + "\n"
    got = list(read_records(write(tmp_path / "array.jsonl", text), CHINA))
    assert shape(got) == [("CDR", "k1"), ("CDR", "k2"), ("CDR", "k3")]


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    first = line(cdr_id="u1@").encode().replace(b"@", b"\xff")
    path.write_bytes(first + b"\n" + line(cdr_id="u2").encode() + b"\n")
    got = list(read_records(str(path), CHINA))
    assert got == [
        CDR("u1\ufffd", "13800138000", "13900139000", T0_MS, 12, True),
        CDR("u2", "13800138000", "13900139000", T0_MS, 12, True),
    ]


def test_missing_file_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"absent\.csv: no such file"):
        list(read_records(str(tmp_path / "absent.csv"), CHINA))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(JSONL_TEXT, JSONL_EXPECTED_SHAPE, id="json-lines"),
        pytest.param(
            HEADER + CSV_ROWS,
            [
                ("CDR", "a"),
                ("CDR", "b"),
                ("Reject", "bad_number"),
                ("Reject", "bad_type"),
                ("CDR", "e"),
            ],
            id="csv",
        ),
    ],
)
def test_dash_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: list[tuple[str, str]]
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(text.encode("utf-8")), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert shape(list(read_records("-", CHINA))) == expected


def test_json_lines_starting_with_a_blank_line(tmp_path: Path) -> None:
    got = list(read_records(write(tmp_path / "lead.jsonl", "\n" + line(cdr_id="b1") + "\n"), CHINA))
    assert shape(got) == [("CDR", "b1")]


def test_csv_with_utf8_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeff".encode() + (HEADER + CSV_ROWS).encode())
    assert list(read_records(str(path), CHINA)) == CSV_EXPECTED


def test_json_lines_record_with_unicode_line_separator_in_a_string(tmp_path: Path) -> None:
    text = line(cdr_id="ls1", ingress_trunk="A\u2028B") + "\n"
    got = list(read_records(write(tmp_path / "ls.jsonl", text), CHINA))
    assert shape(got) == [("CDR", "ls1")]


def test_csv_row_with_infinite_start_time_does_not_abort_the_file(tmp_path: Path) -> None:
    text = HEADER + "i1,13800138000,13900139000,inf,1,true,,\n" + CSV_ROWS
    got = list(read_records(write(tmp_path / "inf.csv", text), CHINA))
    assert [type(r).__name__ for r in got[:1]] == ["Reject"]
    assert got[1:] == CSV_EXPECTED
