"""Phone-number normalisation and classification for CDR caller/callee fields.

``normalise(raw)`` returns the canonical digit string for a number, or ``None`` when it is not a
usable phone number. The rules, applied in this order:

1. Strip surrounding whitespace and remove spaces, hyphens, dots and parentheses. Anything else
   that is not an ASCII digit, apart from one leading ``+``, makes the number invalid. Fewer than
   3 or more than ``MAX_NUMBER_DIGITS`` digits is invalid; a leading ``+`` or ``00`` is not
   counted, so ``+`` and ``00`` forms of the same number obey the same limit.
2. IP-dialling prefix: one leading ``17951``, ``17911`` or ``12593`` is stripped when at least 7
   digits follow it (``1795113800138000`` -> ``13800138000``; ``17951`` alone is kept).
3. Country prefix: ``+86`` and ``0086`` are stripped; a bare ``86`` is stripped only when at least
   10 digits follow it (``8613800138000`` -> ``13800138000``, ``86123456`` is kept).
4. Other international numbers become ``00`` + country code + number (``+44 7700 900123`` ->
   ``00447700900123``; ``0044...`` is kept).
5. Trunk prefix: one leading ``0`` of a domestic number is removed, also after a country prefix
   (``010-12345678``, ``+86 010 12345678`` and ``+86 10 1234 5678`` -> ``1012345678``).
6. Each prefix is stripped at most once. A domestic result that still starts with one (``0``, an IP
   prefix followed by 7+ digits, ``86`` followed by 10+ digits, e.g. ``17951 17951 ...`` or
   ``+86 86 ...``) is malformed: invalid, never half-normalised.
7. Service numbers (``95xxx``, ``96xxx``) and ``400``/``800`` hotlines are kept as dialled.

A result has 3 to ``MAX_NUMBER_DIGITS`` digits, after a ``00`` when international: it matches
``^(00)?[0-9]{3,20}$``. ``normalise`` never raises and is idempotent.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["MAX_NUMBER_DIGITS", "NumberClass", "classify", "is_emergency", "normalise"]

MAX_NUMBER_DIGITS: int = 20


class NumberClass(StrEnum):
    MOBILE = "mobile"  # 11 digits 1[3-9]xxxxxxxxx, not an MVNO range
    MVNO = "mvno"  # 11-digit mobiles of virtual operators: 170, 171, 162, 165, 167
    SERVICE = "service"  # 95/96 call-centre numbers, 5 to 8 digits
    HOTLINE = "hotline_400"  # 400xxxxxxx / 800xxxxxxx enterprise hotlines
    FIXED = "fixed"  # area code (10, 20-29: 8-digit local; 3xx-9xx: 7 or 8 digits), no trunk 0
    LOCAL = "local"  # 7 or 8 digits without area code, first digit 2-8
    SHORT = "short"  # 3 to 5 digits, other than SERVICE
    INTERNATIONAL = "international"  # "00" + country code (never 86) + number
    UNKNOWN = "unknown"  # none of the above


_DROP = str.maketrans("", "", " -.()")
_IP_PREFIXES = ("17951", "17911", "12593")
# Prefixes a domestic result must not start with once it has 12+ digits (rule 6): an IP prefix
# with 7+ digits after it, or 86 with 10+ digits after it.
_LEFTOVER_PREFIXES = ("86", *_IP_PREFIXES)
_MVNO_PREFIXES = ("170", "171", "162", "165", "167")
_EMERGENCY = frozenset({"110", "119", "120", "122", "112", "999"})


def normalise(raw: str) -> str | None:
    """Canonical form of a dialled or presented number, or ``None`` if it is not one."""
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
    counted = len(digits) - 2 if not plus and digits.startswith("00") else len(digits)
    if counted < 3 or counted > MAX_NUMBER_DIGITS:
        return None

    if plus:
        if not digits.startswith("86"):
            return _international(digits)
        national = digits[2:]
    else:
        if len(digits) >= 12 and digits.startswith(_IP_PREFIXES):
            digits = digits[5:]
        if digits.startswith("00"):
            if not digits.startswith("0086"):
                return _international(digits[2:])
            national = digits[4:]
        elif len(digits) >= 12 and digits.startswith("86"):
            national = digits[2:]
        else:
            national = digits

    if national.startswith("0"):
        national = national[1:]
    if (
        len(national) < 3
        or national.startswith("0")
        or (len(national) >= 12 and national.startswith(_LEFTOVER_PREFIXES))
    ):
        return None
    return national


def _international(digits: str) -> str | None:
    """``digits`` follow the international prefix and do not start with 86."""
    return "00" + digits if len(digits) >= 3 else None


def classify(number: str) -> NumberClass:
    """Class of a normalised number; anything else is ``UNKNOWN``."""
    if not (number.isascii() and number.isdigit()):
        return NumberClass.UNKNOWN
    if number.startswith("00"):
        return NumberClass.INTERNATIONAL
    n = len(number)
    if 5 <= n <= 8 and number.startswith(("95", "96")):
        return NumberClass.SERVICE
    if n <= 5:
        return NumberClass.SHORT if n >= 3 else NumberClass.UNKNOWN
    first = number[0]
    if n == 11:
        if first == "1":
            if number[1] in "3456789":
                if number.startswith(_MVNO_PREFIXES):
                    return NumberClass.MVNO
                return NumberClass.MOBILE
            return NumberClass.UNKNOWN
        if first in "3456789":
            return NumberClass.FIXED
    elif n == 10:
        if number.startswith(("400", "800")):
            return NumberClass.HOTLINE
        if first in "23456789" or number.startswith("10"):
            return NumberClass.FIXED
    elif (n == 7 or n == 8) and first in "2345678":
        return NumberClass.LOCAL
    return NumberClass.UNKNOWN


def is_emergency(number: str) -> bool:
    """True for the emergency numbers 110, 119, 120, 122, 112 and 999 (normalised form)."""
    return number in _EMERGENCY
