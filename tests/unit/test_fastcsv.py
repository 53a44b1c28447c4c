"""The column-wise contract CSV reader (streams.fastcsv) gives what the csv module gives: the
same CDRs and Rejects (reasons and details) at the same line numbers, on any text."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.numbering import CHINA
from streams import files
from streams.cdr import CDR, Reject
from streams.errors import InputError
from streams.files import read_located

TZ = ZoneInfo("Asia/Shanghai")
HEADERS = [
    "cdr_id,caller,callee,start_time,duration_s,answered",
    "cdr_id,caller,callee,start_time,duration_s,answered,release_cause,direction,ingress_trunk,attestation,intercepted",
    "answered,duration_s,start_time,callee,caller,cdr_id,extra",
    "cdr_id,caller,callee,start_time,duration_s,answered,caller",  # repeated name
]
VALUES = {
    "cdr_id": ["a1", "b-2", "", "x" * 129, "42"],
    "caller": ["13800138000", "+86 138 0013 8000", "not-a-number", "008613800138000", "1"],
    "callee": ["13900139000", "13900139001", "", "12345"],
    "start_time": [
        "2026-11-02T01:00:00Z",
        "1793581260",
        "1793581260000.5",
        "2026-11-02T09:03:00",
        "yesterday",
        "inf",
        "1e20",
    ],
    "duration_s": ["0", "12", "1.5", "00:01:05", "-1", "1,5", "90000"],
    "answered": ["true", "false", "TRUE", "0", "maybe", ""],
    "release_cause": ["", "16", "200", "x"],
    "direction": ["", "out", "in" * 40],
    "ingress_trunk": ["", "core-1"],
    "attestation": ["", "A", "C"],
    "intercepted": ["", "true", "no", "perhaps"],
    "extra": ["", "z"],
}
ODD_LINES = [
    "",
    "   ",
    "a,b",
    '"q,1",13800138000,13900139000,1793581260,1,true',
    "\r",
    "x,\u2028,y",
]


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    header = draw(st.sampled_from(HEADERS))
    names = header.split(",")
    lines = [header]
    for _ in range(draw(st.integers(0, 40))):
        if draw(st.integers(0, 12)) == 0:
            lines.append(draw(st.sampled_from(ODD_LINES)))
            continue
        cells = [draw(st.sampled_from(VALUES[n])) for n in names]
        if draw(st.integers(0, 15)) == 0:
            cells = cells[: draw(st.integers(0, len(cells)))] + draw(
                st.lists(st.just("e"), max_size=2)
            )
        lines.append(",".join(cells))
    end = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    return end.join(lines) + draw(st.sampled_from(["", end]))


def both(path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    monkeypatch.setattr(files, "CHUNK_CHARS", chunk)
    results: list[object] = []
    for columnar in (True, False):
        try:
            results.append(list(read_located(str(path), CHINA, TZ, columnar=columnar)))
        except InputError as exc:
            results.append(str(exc))
    return results[0], results[1]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=csv_texts(), chunk=st.sampled_from([7, 64, 1 << 20]))
def test_any_text_reads_as_the_csv_module_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, chunk: int
) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8", newline="")
    columnar, python = both(path, chunk, monkeypatch)
    assert columnar == python


def test_a_plain_file_is_read_column_wise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the csv module's fallback: the blocks go to pyarrow (a test that could pass with the
    fallback alone would prove nothing)."""
    rows = [f"c{n},13800138000,1390013{n:04d},{1793581260 + n},{n % 7},true" for n in range(500)]
    rows[17] = "c17,13800138000,13900139000,soon,1,true"
    path = tmp_path / "p.csv"
    path.write_text(
        "cdr_id,caller,callee,start_time,duration_s,answered\n" + "\n".join(rows) + "\n"
    )
    from streams import fastcsv

    calls: list[int] = []
    arrow = fastcsv._arrow

    def counting(names: list[str], block: str) -> object:
        calls.append(len(block))
        return arrow(names, block)

    monkeypatch.setattr(fastcsv, "_arrow", counting)
    monkeypatch.setattr(fastcsv, "_python", None)  # any fallback would fail
    got = list(read_located(str(path), CHINA, TZ))
    assert calls
    assert len(got) == 500 and got[17] == (19, Reject("bad_time", "start_time is not ISO-8601"))
    assert got[0] == (2, CDR("c0", "13800138000", "13900130000", 1793581260000, 0, True))
    monkeypatch.undo()
    assert got == list(read_located(str(path), CHINA, TZ, columnar=False))
