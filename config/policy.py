"""Detection policy: named windows and per-detector threshold levels, loaded from TOML."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

SEVERITIES = ("info", "warning", "critical")
ACTIONS = ("monitor", "intercept", "protect")


@dataclass(frozen=True, slots=True)
class Level:
    severity: str
    action: str
    thresholds: Mapping[str, int]  # window name -> calls that make this level fire

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.severity)


@dataclass(frozen=True, slots=True)
class DetectorPolicy:
    name: str
    category: str
    levels: tuple[Level, ...]  # most severe first


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    windows: Mapping[str, int]  # window name -> length in seconds
    detectors: Mapping[str, DetectorPolicy]

    def detector(self, name: str) -> DetectorPolicy | None:
        return self.detectors.get(name)


def load_policy(path: Path) -> Policy:
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    return parse_policy(raw, source=str(path))


def parse_policy(raw: Mapping[str, Any], source: str = "<policy>") -> Policy:
    def fail(msg: str) -> ValueError:
        return ValueError(f"{source}: {msg}")

    windows = raw.get("windows")
    if not isinstance(windows, Mapping) or not windows:
        raise fail("[windows] must name at least one window")
    for name, length in windows.items():
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise fail(f"window {name!r} must be a positive number of seconds")
    detectors: dict[str, DetectorPolicy] = {}
    for name, body in (raw.get("detectors") or {}).items():
        levels: list[Level] = []
        for lv in body.get("levels", []):
            severity, action = lv.get("severity"), lv.get("action")
            if severity not in SEVERITIES:
                raise fail(f"{name}: severity must be one of {SEVERITIES}")
            if action not in ACTIONS:
                raise fail(f"{name}: action must be one of {ACTIONS}")
            thresholds = dict(lv.get("thresholds") or {})
            for window, value in thresholds.items():
                if window not in windows:
                    raise fail(f"{name}: threshold on unknown window {window!r}")
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise fail(f"{name}: threshold {window!r} must be a positive integer")
            levels.append(Level(severity, action, MappingProxyType(thresholds)))
        levels.sort(key=lambda lv: lv.rank, reverse=True)
        if len({lv.rank for lv in levels}) != len(levels):
            raise fail(f"{name}: two levels with the same severity")
        detectors[name] = DetectorPolicy(name, str(body.get("category", name)), tuple(levels))
    return Policy(
        version=str(raw.get("policy_version", "unversioned")),
        windows=MappingProxyType(dict(windows)),
        detectors=MappingProxyType(detectors),
    )
