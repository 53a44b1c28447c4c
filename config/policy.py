"""Detection policy: named windows and per-detector threshold levels, loaded from TOML."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

SEVERITIES = ("info", "warning", "critical")
ACTIONS = ("monitor", "intercept", "protect")


@dataclass(frozen=True, slots=True)
class Level:
    severity: str
    action: str
    thresholds: Mapping[str, int]  # window name -> calls that make this level fire (any of)
    # condition name -> value, all must hold on the window that reached its threshold; the
    # names a detector accepts are its own (detectors.registry.check_policy)
    conditions: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    classes: frozenset[str] = frozenset()  # number classes it applies to; empty means all

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.severity)


@dataclass(frozen=True, slots=True)
class DetectorPolicy:
    name: str
    category: str
    levels: tuple[Level, ...]  # most severe first
    params: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Features:
    """How calls are turned into the per-bucket features the detectors read."""

    short_call_s: int = 10  # an answered call at most this long counts as short
    max_stride: int = 100  # a callee at most this far from the previous one is sequential
    recent_counterparts: int = 16  # a call to one of the last N counterparts is a repeat
    peer_windows: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Subject kind -> the window over which each counterpart's calls are listed with their
    # local hour (repeated calls of one caller to one callee over hours: debt collection).
    pair_windows: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class ComplaintPolicy:
    """How complaint reports weigh: a number with a report in the horizon has every call
    threshold multiplied by ``factor``, and its alerts carry the reported category."""

    factor: float = 0.7
    horizon_s: int = 30 * 86_400


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    windows: Mapping[str, int]  # window name -> length in seconds
    detectors: Mapping[str, DetectorPolicy]
    features: Features = field(default_factory=Features)
    # Number class -> factor on every call threshold (below 1 is tighter: hot-spot ranges).
    class_factors: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    complaints: ComplaintPolicy = field(default_factory=ComplaintPolicy)
    source: str = "<policy>"  # the file it was read from, for errors found after parsing

    def factor(self, number_class: str) -> float:
        return self.class_factors.get(number_class, 1.0)

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
            conditions = dict(lv.get("conditions") or {})
            for cond, value in conditions.items():
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise fail(f"{name}: condition {cond!r} must be a non-negative number")
            classes = lv.get("classes") or []
            if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
                raise fail(f"{name}: classes must be a list of number classes")
            levels.append(
                Level(
                    severity,
                    action,
                    MappingProxyType(thresholds),
                    MappingProxyType({k: float(v) for k, v in conditions.items()}),
                    frozenset(classes),
                )
            )
        levels.sort(key=lambda lv: lv.rank, reverse=True)
        if len({lv.rank for lv in levels}) != len(levels):
            raise fail(f"{name}: two levels with the same severity")
        params = {
            k: _number(v, f"{name}.params.{k}", fail) for k, v in (body.get("params") or {}).items()
        }
        detectors[name] = DetectorPolicy(
            name, str(body.get("category", name)), tuple(levels), MappingProxyType(params)
        )
    return Policy(
        version=str(raw.get("policy_version", "unversioned")),
        windows=MappingProxyType(dict(windows)),
        detectors=MappingProxyType(detectors),
        features=_features(raw.get("features") or {}, windows, fail),
        complaints=_complaints(raw.get("complaints") or {}, fail),
        class_factors=MappingProxyType(
            {
                k: _number(v, f"class_factors.{k}", fail)
                for k, v in (raw.get("class_factors") or {}).items()
            }
        ),
        source=source,
    )


def _number(value: object, where: str, fail: Callable[[str], ValueError]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise fail(f"{where} must be a non-negative number")
    return float(value)


def _complaints(raw: Mapping[str, Any], fail: Callable[[str], ValueError]) -> ComplaintPolicy:
    default = ComplaintPolicy()
    factor = _number(raw.get("factor", default.factor), "complaints.factor", fail)
    days = _number(
        raw.get("horizon_days", default.horizon_s / 86_400), "complaints.horizon_days", fail
    )
    if not 0 < factor <= 1:
        raise fail("complaints.factor must be in (0, 1]")
    return ComplaintPolicy(factor, int(days * 86_400))


def _features(
    raw: Mapping[str, Any], windows: Mapping[str, int], fail: Callable[[str], ValueError]
) -> Features:
    defaults = Features()
    values: dict[str, Any] = {}
    for name in ("short_call_s", "max_stride", "recent_counterparts"):
        if name in raw:
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise fail(f"features.{name} must be a non-negative integer")
            values[name] = value
    peers = dict(raw.get("peer_windows") or {})
    for kind, window in peers.items():
        if kind not in ("callee", "block"):
            raise fail(f"features.peer_windows: unknown subject kind {kind!r}")
        if window not in windows:
            raise fail(f"features.peer_windows.{kind}: unknown window {window!r}")
    values["peer_windows"] = MappingProxyType(peers)
    pairs = dict(raw.get("pair_windows") or {})
    for kind, window in pairs.items():
        if kind != "callee":
            raise fail(f"features.pair_windows: unknown subject kind {kind!r}")
        if window not in windows:
            raise fail(f"features.pair_windows.{kind}: unknown window {window!r}")
    values["pair_windows"] = MappingProxyType(pairs)
    return Features(
        **{
            **{
                f: getattr(defaults, f)
                for f in ("short_call_s", "max_stride", "recent_counterparts")
            },
            **values,
        }
    )
