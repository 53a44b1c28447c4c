"""Phone-number normalisation and classification for CDR caller/callee fields, per numbering plan.

A ``NumberingPlan`` holds the rules of one country's numbering plan as data. ``CHINA`` (+86) is
built in; plans are loaded from TOML by ``config.numbering.load_plan`` (``config/numbering/``
ships ``cn.toml`` and the UK's ``gb.toml``). Every function here takes the plan explicitly: the
runtime passes the configured one (``DIALWATCH_NUMBERING_PLAN``, read by
``config.numbering.plan_from_setting``), so no caller can fall back to another. This module does
no I/O.

``normalise(raw, plan)`` returns the canonical digit string for a number, or ``None`` when
it is not a usable phone number. The rules, applied in this order (examples for ``CHINA``):

1. Strip surrounding whitespace and remove spaces, hyphens, dots and parentheses. Anything else
   that is not an ASCII digit, apart from one leading ``+``, makes the number invalid. Fewer than
   3 or more than ``MAX_NUMBER_DIGITS`` digits is invalid; a leading ``+`` or international prefix
   (``00``) is not counted, so ``+`` and ``00`` forms of the same number obey the same limit.
2. Numbers kept as dialled: a number without ``+`` or international prefix that starts with one
   of ``plan.keep_as_dialled`` is returned as it is, no prefix stripped (CN: ``95``/``96``
   service numbers and ``400``/``800`` hotlines; none of the CN prefixes below can start them).
3. Carrier prefix: one leading ``plan.carrier_prefixes`` entry (CN: IP-dialling ``17951``,
   ``17911``, ``12593``) is stripped when at least ``plan.carrier_prefix_min_digits`` (7) digits
   follow it (``1795113800138000`` -> ``13800138000``; ``17951`` alone is kept).
4. Country prefix: ``+`` or an international prefix followed by ``plan.country_code`` (``+86``,
   ``0086``) is stripped; a bare country code is stripped only when at least
   ``plan.bare_country_code_min_digits`` (10) digits follow it (``8613800138000`` ->
   ``13800138000``, ``86123456`` is kept; never when that field is ``None``).
5. Other international numbers become ``00`` + country code + number, whatever the plan's
   international prefixes (``+44 7700 900123`` -> ``00447700900123``; ``0044...`` is kept).
6. Trunk prefix: one leading ``plan.trunk_prefix`` (``0``) of a domestic number is removed, also
   after a country prefix (``010-12345678``, ``+86 010 12345678`` and ``+86 10 1234 5678`` ->
   ``1012345678``).
7. Each prefix is stripped at most once. A domestic result that still starts with one (the trunk
   or an international prefix, a carrier prefix followed by enough digits, the country code
   followed by enough digits for rule 4, e.g. ``17951 17951 ...`` or ``+86 86 ...``) is
   malformed: invalid, never half-normalised.

A result has 3 to ``MAX_NUMBER_DIGITS`` digits, after a ``00`` when international: it matches
``^(00)?[0-9]{3,20}$``. ``normalise`` never raises and is idempotent for every valid plan
(``NumberingPlan`` checks the conditions for that when it is built).

``classify(number, plan)`` returns the class of the first of ``plan.class_rules`` whose
pattern matches the whole normalised number, and ``NumberClass.UNKNOWN`` when none does or the
input is not a string of ASCII digits. ``is_emergency(number, plan)`` is membership of
``plan.emergency_numbers``. Both never raise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "CHINA",
    "MAX_NUMBER_DIGITS",
    "ClassRule",
    "NumberClass",
    "NumberingPlan",
    "classify",
    "is_emergency",
    "normalise",
]

MAX_NUMBER_DIGITS: int = 20

# The international prefix of every normalised international number, whatever the plan.
CANONICAL_INTERNATIONAL_PREFIX = "00"


class NumberClass(StrEnum):
    # The comments describe the classes of the Chinese plan; other plans document theirs.
    MOBILE = "mobile"  # 11 digits 1[3-9]xxxxxxxxx, not an MVNO range
    MVNO = "mvno"  # 11-digit mobiles of virtual operators: 170, 171, 162, 165, 167
    SERVICE = "service"  # 95/96 enterprise service numbers, 5 to 7 digits
    CALL_CENTRE = "call_centre"  # 8-digit 95xxxxxx/96xxxxxx call-centre numbers
    HOTLINE = "hotline_400"  # enterprise hotline / freephone: 400xxxxxxx / 800xxxxxxx
    FIXED = "fixed"  # area code (10, 20-29: 8-digit local; 3xx-9xx: 7 or 8 digits), no trunk 0
    LOCAL = "local"  # 7 or 8 digits without area code, first digit 2-8
    SHORT = "short"  # 3 to 5 digits, other than SERVICE
    INTERNATIONAL = "international"  # "00" + country code (never the plan's) + number
    UNKNOWN = "unknown"  # none of the above


@dataclass(frozen=True, slots=True)
class ClassRule:
    """Numbers that fully match ``pattern`` (a regex without capturing groups, applied to a
    normalised number: ASCII digits only) are of ``number_class``."""

    number_class: NumberClass
    pattern: str

    def __post_init__(self) -> None:
        # NumberClass is a StrEnum: accept its string value, store the member.
        object.__setattr__(self, "number_class", NumberClass(self.number_class))


def _is_digits(value: object) -> bool:
    return isinstance(value, str) and value.isascii() and value.isdigit()


def _compile(pattern: object, where: str) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"{where}: must be a non-empty regular expression")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{where}: invalid regular expression {pattern!r}: {exc}") from None
    if compiled.groups:
        raise ValueError(
            f"{where}: {pattern!r} has a capturing group; use a non-capturing (?:...) group"
        )
    return compiled


def _combine(patterns: tuple[str, ...], where: str) -> re.Pattern[str]:
    """One regex whose group i+1 is ``patterns[i]``: alternatives are tried in order, so the
    first pattern that matches the whole string is ``match.lastindex - 1``."""
    try:
        return re.compile("|".join(f"({p})" for p in patterns))
    except re.error as exc:  # e.g. a global inline flag such as (?i) not at the start
        raise ValueError(f"{where}: patterns cannot be combined: {exc}") from None


def _prefixes(values: object, where: str) -> tuple[str, ...]:
    if not isinstance(values, tuple):
        raise ValueError(f"{where}: must be a tuple of digit strings")
    for i, value in enumerate(values):
        if not _is_digits(value):
            raise ValueError(f"{where}[{i}]: {value!r} is not a non-empty string of digits")
    if len(set(values)) != len(values):
        raise ValueError(f"{where}: duplicate prefix")
    return values


def _prefix_free(values: tuple[str, ...], where: str) -> tuple[str, ...]:
    for a in values:
        for b in values:
            if a != b and b.startswith(a):
                raise ValueError(f"{where}: {a!r} is a prefix of {b!r}; one of them is never used")
    return values


def _common_length(values: tuple[str, ...]) -> int:
    """The length of every one of ``values``, or 0 if they differ (or there are none)."""
    lengths = {len(v) for v in values}
    return lengths.pop() if len(lengths) == 1 else 0


def _count(value: object, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}: must be an integer >= {minimum}")
    return value


@dataclass(frozen=True, slots=True)
class NumberingPlan:
    """The rules of one numbering plan; see the module docstring for how they apply.

    Building one checks the fields (``ValueError`` naming the field) and precompiles them.
    """

    name: str
    country_code: str  # without "+", e.g. "86"
    class_rules: tuple[ClassRule, ...]  # first match wins; no match is UNKNOWN
    international_prefixes: tuple[str, ...] = (CANONICAL_INTERNATIONAL_PREFIX,)
    trunk_prefix: str = "0"  # "" for a plan without one
    carrier_prefixes: tuple[str, ...] = ()  # carrier selection / IP-dialling prefixes
    carrier_prefix_min_digits: int = 7  # digits that must follow a carrier prefix to strip it
    # Digits that must follow a country code dialled without "+" or international prefix for it
    # to be stripped; None: a bare country code is never stripped.
    bare_country_code_min_digits: int | None = None
    keep_as_dialled: tuple[str, ...] = ()  # prefixes of domestic numbers never stripped
    emergency_numbers: frozenset[str] = frozenset()

    # Derived in __post_init__, for the hot path.
    _intl: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _intl_len: int = field(init=False, repr=False, compare=False)  # 0: lengths differ
    _carriers: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _carrier_len: int = field(init=False, repr=False, compare=False)  # 0: lengths differ
    _carrier_min_len: int = field(init=False, repr=False, compare=False)
    _bare_cc_min_len: int = field(init=False, repr=False, compare=False)
    _kept: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _forbidden: str | tuple[str, ...] = field(init=False, repr=False, compare=False)
    _leftover_min_len: int = field(init=False, repr=False, compare=False)
    _leftover: tuple[tuple[int, tuple[str, ...]], ...] = field(
        init=False, repr=False, compare=False
    )
    _class_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _classes: tuple[NumberClass, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("name: must be a non-empty string")
        cc = self.country_code
        if not _is_digits(cc) or not 1 <= len(cc) <= 3 or cc.startswith("0"):
            raise ValueError(
                f"country_code: {cc!r} must be 1 to 3 digits not starting with 0, e.g. '86'"
            )

        intl = _prefixes(self.international_prefixes, "international_prefixes")
        if CANONICAL_INTERNATIONAL_PREFIX not in intl:
            raise ValueError(
                f"international_prefixes: must include {CANONICAL_INTERNATIONAL_PREFIX!r}, the "
                "prefix of normalised international numbers (so that normalising is idempotent)"
            )
        _prefix_free(intl, "international_prefixes")

        trunk = self.trunk_prefix
        if not isinstance(trunk, str) or (trunk and not _is_digits(trunk)):
            raise ValueError(f"trunk_prefix: {trunk!r} must be a string of digits, or '' for none")

        carriers = _prefix_free(
            _prefixes(self.carrier_prefixes, "carrier_prefixes"), "carrier_prefixes"
        )
        for i, prefix in enumerate(carriers):
            for other in intl:
                if prefix.startswith(other) or other.startswith(prefix):
                    raise ValueError(
                        f"carrier_prefixes[{i}]: {prefix!r} overlaps the international "
                        f"prefix {other!r}"
                    )
        carrier_min = _count(self.carrier_prefix_min_digits, "carrier_prefix_min_digits", 1)
        bare_min = self.bare_country_code_min_digits
        if bare_min is not None:
            _count(bare_min, "bare_country_code_min_digits", 1)

        keep = _prefixes(self.keep_as_dialled, "keep_as_dialled")

        rules = self.class_rules
        if not isinstance(rules, tuple) or not rules:
            raise ValueError("class_rules: must be a non-empty tuple of ClassRule")
        for i, rule in enumerate(rules):
            if not isinstance(rule, ClassRule):
                raise ValueError(f"class_rules[{i}]: {rule!r} is not a ClassRule")
            _compile(rule.pattern, f"class_rules[{i}].pattern")
        class_re = _combine(tuple(r.pattern for r in rules), "class_rules")

        if not isinstance(self.emergency_numbers, frozenset):
            raise ValueError("emergency_numbers: must be a frozenset of digit strings")
        for number in sorted(self.emergency_numbers, key=str):
            if not _is_digits(number):
                raise ValueError(f"emergency_numbers: {number!r} is not a string of digits")

        # Derived state.
        leftover: dict[int, list[str]] = {}
        for prefix in carriers:
            leftover.setdefault(len(prefix) + carrier_min, []).append(prefix)
        if bare_min is not None:
            leftover.setdefault(len(cc) + bare_min, []).append(cc)
        # What normalise() may strip from a domestic number. A number that starts with none of
        # these comes out as it went in, so only the kept prefixes that overlap one of them need
        # checking (none in the shipped plans: no cost on the hot path).
        strippable = [*carriers, *([cc] if bare_min is not None else []), trunk]
        kept = tuple(
            k for k in keep if any(s and (k.startswith(s) or s.startswith(k)) for s in strippable)
        )
        never = 1 << 30
        set_ = object.__setattr__
        set_(self, "_intl", intl)
        set_(self, "_intl_len", _common_length(intl))
        set_(self, "_carriers", carriers)
        set_(self, "_carrier_len", _common_length(carriers))
        set_(self, "_carrier_min_len", min(map(len, carriers), default=never) + carrier_min)
        set_(self, "_bare_cc_min_len", never if bare_min is None else len(cc) + bare_min)
        set_(self, "_kept", kept)
        forbidden = [
            p
            for p in (trunk, *intl)
            if p and not any(q and q != p and p.startswith(q) for q in (trunk, *intl))
        ]
        set_(self, "_forbidden", forbidden[0] if len(forbidden) == 1 else tuple(forbidden))
        set_(self, "_leftover", tuple((n, tuple(p)) for n, p in sorted(leftover.items())))
        set_(self, "_leftover_min_len", min(leftover, default=never))
        set_(self, "_class_re", class_re)
        # Group i+1 is rule i; index 0 is never a lastindex.
        set_(self, "_classes", (NumberClass.UNKNOWN, *(r.number_class for r in rules)))


# The Chinese numbering plan: the same values as config/numbering/cn.toml (a test checks that
# loading that file gives an equal plan).
CHINA = NumberingPlan(
    name="cn",
    country_code="86",
    international_prefixes=("00",),
    trunk_prefix="0",
    carrier_prefixes=("17951", "17911", "12593"),
    carrier_prefix_min_digits=7,
    bare_country_code_min_digits=10,
    keep_as_dialled=("95", "96", "400", "800"),
    class_rules=(
        ClassRule(NumberClass.INTERNATIONAL, "00[0-9]*"),
        ClassRule(NumberClass.CALL_CENTRE, "9[56][0-9]{6}"),
        ClassRule(NumberClass.SERVICE, "9[56][0-9]{3,5}"),
        ClassRule(NumberClass.SHORT, "[0-9]{3,5}"),
        ClassRule(NumberClass.MVNO, "1(?:70|71|62|65|67)[0-9]{8}"),
        ClassRule(NumberClass.MOBILE, "1[3-9][0-9]{9}"),
        ClassRule(NumberClass.FIXED, "[3-9][0-9]{10}"),
        ClassRule(NumberClass.HOTLINE, "(?:400|800)[0-9]{7}"),
        ClassRule(NumberClass.FIXED, "(?:10|[2-9][0-9])[0-9]{8}"),
        ClassRule(NumberClass.LOCAL, "[2-8][0-9]{6,7}"),
    ),
    emergency_numbers=frozenset({"110", "119", "120", "122", "112", "999"}),
)

_DROP = str.maketrans("", "", " -.()")


def normalise(raw: str, plan: NumberingPlan) -> str | None:
    """Canonical form of a dialled or presented number under ``plan``, or ``None`` if it is
    not one."""
    digits = raw.strip()
    plus = False
    if not (digits.isascii() and digits.isdigit()):
        digits = digits.translate(_DROP)
        if digits.startswith("+"):
            plus = True
            digits = digits[1:]
        # isdigit() alone accepts non-ASCII digits; "" fails isdigit().
        if not (digits.isascii() and digits.isdigit()):
            return None
    n = len(digits)
    cc = plan.country_code
    if plus or digits.startswith(plan._intl):
        if not plus:
            digits = digits[plan._intl_len or len(_prefix_of(digits, plan._intl)) :]
            n = len(digits)
        if n < 3 or n > MAX_NUMBER_DIGITS:
            return None
        if not digits.startswith(cc):
            return "00" + digits
        national = digits[len(cc) :]
    else:
        if n < 3 or n > MAX_NUMBER_DIGITS:
            return None
        if plan._kept and digits.startswith(plan._kept):
            return digits
        if n >= plan._carrier_min_len and digits.startswith(plan._carriers):
            # With one carrier prefix length, n >= _carrier_min_len means enough digits follow.
            cut = plan._carrier_len or _carrier_cut(digits, plan)
            digits = digits[cut:]
            n -= cut
            if digits.startswith(plan._intl):  # e.g. 17951 0086 ...
                digits = digits[plan._intl_len or len(_prefix_of(digits, plan._intl)) :]
                if not digits.startswith(cc):
                    return "00" + digits if len(digits) >= 3 else None
                national = digits[len(cc) :]
            elif n >= plan._bare_cc_min_len and digits.startswith(cc):
                national = digits[len(cc) :]
            else:
                national = digits
        elif n >= plan._bare_cc_min_len and digits.startswith(cc):
            national = digits[len(cc) :]
        else:
            national = digits

    trunk = plan.trunk_prefix  # "" strips nothing
    if national.startswith(trunk):
        national = national[len(trunk) :]
    n = len(national)
    if n < 3 or national.startswith(plan._forbidden):
        return None
    if n >= plan._leftover_min_len:
        for min_len, prefixes in plan._leftover:
            if n >= min_len and national.startswith(prefixes):
                return None
    return national


def _carrier_cut(digits: str, plan: NumberingPlan) -> int:
    """Length of the carrier prefix ``digits`` start with, or 0 if too few digits follow it."""
    cut = len(_prefix_of(digits, plan._carriers))
    return cut if len(digits) - cut >= plan.carrier_prefix_min_digits else 0


def _prefix_of(digits: str, prefixes: tuple[str, ...]) -> str:
    """The one of ``prefixes`` (a prefix-free set) that ``digits`` start with, or ""."""
    for prefix in prefixes:
        if digits.startswith(prefix):
            return prefix
    return ""


def classify(number: str, plan: NumberingPlan) -> NumberClass:
    """Class of a normalised number under ``plan``; anything else is ``UNKNOWN``."""
    if not (number.isascii() and number.isdigit()):
        return NumberClass.UNKNOWN
    match = plan._class_re.fullmatch(number)
    if match is None:
        return NumberClass.UNKNOWN
    return plan._classes[match.lastindex or 0]


def is_emergency(number: str, plan: NumberingPlan) -> bool:
    """True for the plan's emergency numbers (normalised form); CN: 110, 119, 120, 122, 112
    and 999."""
    return number in plan.emergency_numbers
