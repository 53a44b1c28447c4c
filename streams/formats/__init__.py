"""CDR formats by name: the contract and the layouts switches and mediation systems write.

``get(name)`` gives a :class:`~streams.formats.base.Format`; each module says where its layout
comes from. Every format ends in streams.cdr.parse_record (the one reading of a record).
"""

from __future__ import annotations

from collections.abc import Mapping

from streams.formats.asterisk import Asterisk
from streams.formats.base import Format
from streams.formats.contract import Contract
from streams.formats.csv_map import CsvMap, parse_map
from streams.formats.freeswitch_csv import FreeswitchCsv
from streams.formats.freeswitch_json import FreeswitchJson
from streams.formats.kamailio import Kamailio

FORMATS: dict[str, type[Format]] = {
    "contract": Contract,
    "asterisk": Asterisk,
    "freeswitch-csv": FreeswitchCsv,
    "freeswitch-json": FreeswitchJson,
    "csv-map": CsvMap,
    "kamailio": Kamailio,
}
NAMES = tuple(FORMATS)


def get(name: str, mapping: Mapping[str, str] | None = None) -> Format:
    """The format called ``name``; KeyError for an unknown name, ValueError when csv-map has
    no map (or another format is given one)."""
    cls = FORMATS[name]
    if cls is CsvMap:
        if not mapping:
            raise ValueError("csv-map needs --map field=column,... (at least caller, callee)")
        return CsvMap(mapping)
    if mapping:
        raise ValueError(f"--map is for csv-map, not {name}")
    return cls()


__all__ = ["FORMATS", "NAMES", "Format", "from_cli", "get", "parse_map"]


def from_cli(name: str, map_text: str | None) -> Format:
    """The format of ``--format NAME [--map ...]``; ValueError with a one-line reason."""
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; one of {', '.join(NAMES)}")
    return get(name, parse_map(map_text) if map_text else None)
