"""The shipper's file reading without a broker: complete lines only, positions that survive a
restart, rotation (while running and while stopped), truncation, headers when resuming."""

from __future__ import annotations

import gzip
from pathlib import Path

from streams.formats import get
from streams.ingest import Position, Source


def lines(n: int, first: int = 0) -> str:
    return "".join(f"line {i}\n" for i in range(first, first + n))


def texts(batch: list[tuple[int, str]]) -> list[str]:
    return [t for _, t in batch]


def source(path: Path, state: Path | None = None, fmt: str = "asterisk") -> Source:
    return Source(path, get(fmt), state, follow=True)


def test_a_partial_last_line_waits_for_its_end(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_text("line 0\nline 1\nline 2 is being wr")
    src = source(path)
    assert texts(src.read(100)) == ["line 0", "line 1"]
    assert src.read(100) == []
    with path.open("a") as out:
        out.write("itten\n")
    assert src.read(100) == [(3, "line 2 is being written")]


def test_batches_and_a_restart_resume_at_the_confirmed_position(tmp_path: Path) -> None:
    path, state = tmp_path / "Master.csv", tmp_path / "pos"
    path.write_text(lines(10))
    src = source(path, state)
    assert texts(src.read(4)) == [f"line {i}" for i in range(4)]
    src.commit()
    assert texts(src.read(4)) == [f"line {i}" for i in range(4, 8)]  # read, not confirmed
    src.close()
    saved = Position.load(state)
    assert saved is not None and saved.line == 4
    again = source(path, state)
    assert again.read(100) == [(n + 1, f"line {n}") for n in range(4, 10)]


def test_rotation_while_running_finishes_the_old_file_first(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_text(lines(3))
    src = source(path)
    assert len(src.read(100)) == 3
    with path.open("a") as out:
        out.write("line 3\nline 4 without newline")
    path.rename(tmp_path / "Master.csv.1")
    path.write_text(lines(2, 100))
    assert texts(src.read(100)) == ["line 3"]  # the partial line waits: the file may grow
    assert src.switch()
    assert texts(src.read(100)) == ["line 4 without newline"]
    assert src.switch()
    assert texts(src.read(100)) == ["line 100", "line 101"]


def test_rotation_while_stopped_is_found_by_the_file_identity(tmp_path: Path) -> None:
    path, state = tmp_path / "Master.csv", tmp_path / "pos"
    path.write_text(lines(5))
    src = source(path, state)
    src.read(2)
    src.commit()
    src.close()
    with path.open("a") as out:
        out.write(lines(1, 5))
    path.rename(tmp_path / "Master.csv.1")
    path.write_text(lines(2, 100))
    again = source(path, state)
    assert any("rotated while stopped" in note for note in again.notes)
    assert texts(again.read(100)) == ["line 2", "line 3", "line 4", "line 5"]
    again.commit()
    assert again.switch()
    assert texts(again.read(100)) == ["line 100", "line 101"]


def test_truncation_reads_the_file_again_from_its_start(tmp_path: Path) -> None:
    path, state = tmp_path / "Master.csv", tmp_path / "pos"
    path.write_text(lines(20))
    src = source(path, state)
    assert len(src.read(100)) == 20
    src.commit()
    path.write_text(lines(2, 50))
    assert src.read(100) == []
    assert src.switch()
    assert src.read(100) == [(1, "line 50"), (2, "line 51")]


def test_a_header_is_read_again_when_resuming_mid_file(tmp_path: Path) -> None:
    path, state = tmp_path / "export.csv", tmp_path / "pos"
    path.write_text("A,B\n1,2\n3,4\n")
    src = Source(path, get("csv-map", {"caller": "A"}), state, follow=True)
    assert src.read(1) == [(2, "1,2")] and src.header == ["A", "B"]
    src.commit()
    src.close()
    again = Source(path, get("csv-map", {"caller": "A"}), state, follow=True)
    assert again.header == ["A", "B"]
    assert again.read(10) == [(3, "3,4")]


def test_a_corrupt_state_file_is_one_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "pos"
    state.write_text("not json")
    try:
        Position.load(state)
    except ValueError as exc:
        assert "is not a dialwatch position" in str(exc)
    else:
        raise AssertionError("accepted a corrupt state file")


def test_a_gzipped_file_is_read_whole_its_last_line_complete(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv.gz"
    with gzip.open(path, "wt") as out:
        out.write(lines(3) + "line 3 without newline")
    src = Source(path, get("asterisk"), None, follow=False)
    assert texts(src.read(100)) == ["line 0", "line 1", "line 2", "line 3 without newline"]
    assert not src.switch()
