"""The layout the README and docs/architecture.md describe is the tree as it stands: every
module named, no stale or repeated entry, and no runtime module past 600 lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_RUNTIME_LINES = 600


def _readme_layout() -> str:
    section = (ROOT / "README.md").read_text().split("\n## Layout\n", 1)[1]
    block = re.search(r"```\n(.*?)```\n", section, re.DOTALL)
    assert block is not None, "README: the Layout section has no block"
    return block.group(1)


def _architecture() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```\n(.*?)```\n", text, re.DOTALL)
    assert block is not None
    return block.group(1)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))


def _names(folder: Path) -> set[str]:
    """The modules and packages directly in a folder, as the layout names them."""
    names = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    names |= {p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    return names


def _streams_part(layout: str) -> str:
    """The lines of the runtime's entry, up to the next top-level entry."""
    lines = layout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("streams/ "))
    end = next(i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" "))
    return "\n".join(lines[start:end])


def _detector_files(folder: str) -> set[str]:
    """ "One file per detector": named by the catalogue, which the layout names."""
    if folder != "detectors":
        return set()
    from detectors.catalogue import MODULES

    return {m.__name__.rsplit(".", 1)[1] for m in MODULES}


@pytest.mark.parametrize(
    ("folder", "part"),
    [("streams", "streams"), ("streams/tools", "all"), ("detectors", "all"), ("benchmarks", "all")],
)
def test_the_readme_layout_names_every_module(folder: str, part: str) -> None:
    layout = _readme_layout()
    text = _streams_part(layout) if part == "streams" else layout
    missing = _names(ROOT / folder) - _words(text) - {"__main__"} - _detector_files(folder)
    assert not missing, f"README Layout does not name {sorted(missing)} of {folder}/"


def test_the_architecture_drawing_names_every_runtime_module() -> None:
    missing = (_names(ROOT / "streams") | {"lua"}) - {"cli", "tools"} - _words(_architecture())
    assert not missing, f"docs/architecture.md does not name {sorted(missing)}"


def test_the_readme_layout_has_each_top_level_entry_once_and_it_exists() -> None:
    entries = [line.split()[0] for line in _readme_layout().splitlines() if line and line[0] != " "]
    assert len(entries) == len(set(entries)), f"repeated entries: {entries}"
    for entry in entries:
        assert (ROOT / entry).is_dir(), f"README Layout names {entry}, which is not in the tree"


def test_every_doc_is_named_in_the_layout() -> None:
    missing = {p.stem for p in (ROOT / "docs").glob("*.md")} - _words(_readme_layout())
    assert not missing, f"README Layout does not name docs {sorted(missing)}"


def test_no_runtime_module_is_over_600_lines() -> None:
    runtime = [
        p
        for folder in ("streams", "detectors", "config")
        for p in (ROOT / folder).rglob("*.py")
        if "tools" not in p.relative_to(ROOT).parts
    ]
    long = {
        str(p.relative_to(ROOT)): n
        for p in runtime
        if (n := len(p.read_text().splitlines())) > MAX_RUNTIME_LINES
    }
    assert not long, f"runtime modules over {MAX_RUNTIME_LINES} lines: {long}"
