"""Numbering plans loaded from TOML (``config/numbering/*.toml``).

A plan file holds the fields of ``config.numbering.NumberingPlan``; ``cn.toml`` documents them
and ``gb.toml`` is the UK plan. ``load_plan(path)`` reads a file, ``parse_plan(raw, source)``
checks an already decoded mapping; both raise ``ValueError`` naming the file and the field.
``builtin_plan("gb")`` loads one of the shipped plans by name.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from config.numbering.plan import ClassRule, NumberClass, NumberingPlan

__all__ = ["PLANS_DIR", "builtin_plan", "builtin_plan_names", "load_plan", "parse_plan"]

PLANS_DIR = Path(__file__).resolve().parent

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_REQUIRED = ("name", "country_code", "class_rules")
_OPTIONAL = (
    "international_prefixes",
    "trunk_prefix",
    "carrier_prefixes",
    "carrier_prefix_min_digits",
    "bare_country_code_min_digits",
    "keep_as_dialled",
    "emergency_numbers",
)
_RULE_KEYS = ("class", "pattern")
_CLASS_NAMES = frozenset(c.value for c in NumberClass)
_CLASSES = ", ".join(c.value for c in NumberClass)

Fail = Callable[[str], ValueError]


def load_plan(path: Path | str) -> NumberingPlan:
    """The numbering plan in the TOML file at ``path``."""
    path = Path(path)
    with path.open("rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
    return parse_plan(raw, source=str(path))


def plan_from_setting(value: str) -> NumberingPlan:
    """``DIALWATCH_NUMBERING_PLAN``: a bundled plan's name, or the path of a plan file."""
    if value in builtin_plan_names():
        return builtin_plan(value)
    return load_plan(value)


def builtin_plan_names() -> tuple[str, ...]:
    """Names of the plans shipped in ``config/numbering/`` (``cn``, ``gb``, ...)."""
    return tuple(sorted(p.stem for p in PLANS_DIR.glob("*.toml")))


def builtin_plan(name: str) -> NumberingPlan:
    """The shipped plan ``config/numbering/<name>.toml``."""
    if not _NAME.fullmatch(name) or not (PLANS_DIR / f"{name}.toml").is_file():
        raise ValueError(
            f"unknown numbering plan {name!r}; shipped: {', '.join(builtin_plan_names())}"
        )
    return load_plan(PLANS_DIR / f"{name}.toml")


def parse_plan(raw: Mapping[str, Any], source: str = "<numbering plan>") -> NumberingPlan:
    """Check a decoded plan file and build the ``NumberingPlan`` it describes."""

    def fail(msg: str) -> ValueError:
        return ValueError(f"{source}: {msg}")

    if not isinstance(raw, Mapping):
        raise fail("a numbering plan must be a table")
    unknown = sorted(set(raw) - {*_REQUIRED, *_OPTIONAL})
    if unknown:
        raise fail(f"unknown field {unknown[0]!r}; known: {', '.join((*_REQUIRED, *_OPTIONAL))}")
    for key in _REQUIRED:
        if key not in raw:
            raise fail(f"{key}: missing (required)")

    name = raw["name"]
    if not isinstance(name, str) or not name.strip():
        raise fail("name: must be a non-empty string")
    country_code = raw["country_code"]
    if not isinstance(country_code, str):
        raise fail(
            f"country_code: must be a string of digits without '+', e.g. \"44\" "
            f"(got {country_code!r})"
        )

    values: dict[str, Any] = {"name": name, "country_code": country_code}
    for key in ("international_prefixes", "carrier_prefixes", "keep_as_dialled"):
        if key in raw:
            values[key] = tuple(_strings(raw[key], key, fail))
    if "emergency_numbers" in raw:
        values["emergency_numbers"] = frozenset(
            _strings(raw["emergency_numbers"], "emergency_numbers", fail)
        )
    if "trunk_prefix" in raw:
        trunk = raw["trunk_prefix"]
        if not isinstance(trunk, str):
            raise fail('trunk_prefix: must be a string of digits, or "" for none')
        values["trunk_prefix"] = trunk
    for key in ("carrier_prefix_min_digits", "bare_country_code_min_digits"):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise fail(f"{key}: must be an integer (got {value!r})")
            values[key] = value
    values["class_rules"] = _class_rules(raw["class_rules"], fail)

    try:
        return NumberingPlan(**values)
    except ValueError as exc:  # the plan's own checks name the field
        raise fail(str(exc)) from None


def _strings(value: object, key: str, fail: Fail) -> list[str]:
    if not isinstance(value, list):
        raise fail(f"{key}: must be a list of strings of digits")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise fail(f"{key}[{i}]: must be a string of digits in quotes (got {item!r})")
    return value


def _class_rules(value: object, fail: Fail) -> tuple[ClassRule, ...]:
    if not isinstance(value, list) or not value:
        raise fail("class_rules: must be a non-empty array of tables ([[class_rules]])")
    rules: list[ClassRule] = []
    for i, body in enumerate(value):
        where = f"class_rules[{i}]"
        if not isinstance(body, Mapping):
            raise fail(f"{where}: must be a table with 'class' and 'pattern'")
        unknown = sorted(set(body) - set(_RULE_KEYS))
        if unknown:
            raise fail(f"{where}: unknown field {unknown[0]!r}; known: class, pattern")
        for key in _RULE_KEYS:
            if key not in body:
                raise fail(f"{where}.{key}: missing (required)")
        number_class, pattern = body["class"], body["pattern"]
        if not isinstance(number_class, str) or number_class not in _CLASS_NAMES:
            raise fail(f"{where}.class: unknown number class {number_class!r}; known: {_CLASSES}")
        if not isinstance(pattern, str):
            raise fail(f"{where}.pattern: must be a string (a regular expression)")
        rules.append(ClassRule(NumberClass(number_class), pattern))
    return tuple(rules)
