import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.numbering import (
    CHINA,
    MAX_NUMBER_DIGITS,
    NumberClass,
    classify,
    is_emergency,
    normalise,
)

MOBILE = "13800138000"
OUTPUT = re.compile(r"(00)?[0-9]{3,20}")
IP_PREFIXES = ("17951", "17911", "12593")


@pytest.mark.parametrize(
    ("member", "value"),
    [
        (NumberClass.MOBILE, "mobile"),
        (NumberClass.MVNO, "mvno"),
        (NumberClass.SERVICE, "service"),
        (NumberClass.HOTLINE, "hotline_400"),
        (NumberClass.FIXED, "fixed"),
        (NumberClass.LOCAL, "local"),
        (NumberClass.SHORT, "short"),
        (NumberClass.INTERNATIONAL, "international"),
        (NumberClass.UNKNOWN, "unknown"),
    ],
)
def test_number_class_values_are_stable(member: NumberClass, value: str) -> None:
    assert member == value
    assert NumberClass(value) is member


def test_max_number_digits() -> None:
    assert MAX_NUMBER_DIGITS == 20


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # rule 1: cleaning
        (MOBILE, MOBILE),
        ("  13800138000\n", MOBILE),
        ("\t138 0013 8000 ", MOBILE),
        ("138-0013-8000", MOBILE),
        ("(138) 0013.8000", MOBILE),
        ("(+86) 138-0013-8000", MOBILE),
        ("1" * MAX_NUMBER_DIGITS, "1" * MAX_NUMBER_DIGITS),
        ("123", "123"),
        # rule 2: IP-dialling prefixes
        ("1795113800138000", MOBILE),
        ("1791113800138000", MOBILE),
        ("1259313800138000", MOBILE),
        ("17951 138 0013 8000", MOBILE),
        ("17951", "17951"),
        ("179511234567", "1234567"),
        ("17951123456", "17951123456"),
        ("17951008613800138000", MOBILE),
        ("179518613800138000", MOBILE),
        ("17951013800138000", MOBILE),
        ("17951 010 12345678", "1012345678"),
        ("1795100447700900123", "00447700900123"),
        # rule 3: country prefix 86
        ("+8613800138000", MOBILE),
        ("+86 138 0013 8000", MOBILE),
        ("008613800138000", MOBILE),
        ("0086 138 0013 8000", MOBILE),
        ("8613800138000", MOBILE),
        ("861012345678", "1012345678"),
        ("86123456", "86123456"),
        ("8612345678", "8612345678"),
        ("86123456789", "86123456789"),
        ("+86 110", "110"),
        # rule 4: other international
        ("+44 7700 900123", "00447700900123"),
        ("00447700900123", "00447700900123"),
        ("0044 7700 900123", "00447700900123"),
        ("+1 (212) 555-0100", "0012125550100"),
        ("+123", "00123"),
        ("+" + "4" * MAX_NUMBER_DIGITS, "00" + "4" * MAX_NUMBER_DIGITS),
        ("00" + "4" * MAX_NUMBER_DIGITS, "00" + "4" * MAX_NUMBER_DIGITS),
        # rule 5: trunk prefix 0
        ("010-12345678", "1012345678"),
        ("0755 12345678", "75512345678"),
        ("0571-8765432", "5718765432"),
        ("013800138000", MOBILE),
        ("+86 10 1234 5678", "1012345678"),
        ("+86 010 12345678", "1012345678"),
        ("0086 0755 1234 5678", "75512345678"),
        ("86 0755 1234 5678", "75512345678"),
        ("0110", "110"),
        # rule 7: service numbers and hotlines as dialled
        ("95588", "95588"),
        ("95105888", "95105888"),
        ("96123", "96123"),
        ("400-123-4567", "4001234567"),
        ("800 810 8888", "8008108888"),
        ("+86 400 123 4567", "4001234567"),
        ("12345", "12345"),
        ("10086", "10086"),
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise(raw, CHINA) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "+",
        "-",
        "()",
        "++8613800138000",
        "138+00138000",
        "13800138000x",
        "1380013800O",  # letter O
        "138\t0013\t8000",  # internal whitespace other than spaces
        "138_0013_8000",
        "138/0013/8000",
        "１３８００１３８０００",  # full-width digits
        "٣٣٣٣٣",  # Arabic-Indic digits
        "12",
        "1 2",
        "0",
        "00",
        "001",
        "0012",
        "+12",
        "+86",
        "0086",
        "+8612",
        "0086 12",
        "010",
        "1" * (MAX_NUMBER_DIGITS + 1),
        "0" + "1" * MAX_NUMBER_DIGITS,
        "+" + "4" * (MAX_NUMBER_DIGITS + 1),
        "00" + "4" * (MAX_NUMBER_DIGITS + 1),
        "17911 0086 0 13800138000",  # 21 digits
        # rule 6: a prefix left over after the one allowed strip
        "17951 17951 13800138000",
        "+86 17951 13800138000",
        "0 17951 13800138000",
        "86 86 13800138000",
        "+86 86 13800138000",
        "0 86 13800138000",
        "+86 00 44 7700 900123",
        "0086 0044 7700 900123",
        "12593+8613800138000",  # '+' not leading
    ],
)
def test_normalise_rejects(raw: str) -> None:
    assert normalise(raw, CHINA) is None


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (MOBILE, NumberClass.MOBILE),
        ("19912345678", NumberClass.MOBILE),
        ("14512345678", NumberClass.MOBILE),
        ("16612345678", NumberClass.MOBILE),
        ("17212345678", NumberClass.MOBILE),
        ("17012345678", NumberClass.MVNO),
        ("17112345678", NumberClass.MVNO),
        ("16212345678", NumberClass.MVNO),
        ("16512345678", NumberClass.MVNO),
        ("16712345678", NumberClass.MVNO),
        ("95588", NumberClass.SERVICE),
        ("96123", NumberClass.SERVICE),
        ("951234", NumberClass.SERVICE),
        ("9612345", NumberClass.SERVICE),
        ("95105888", NumberClass.CALL_CENTRE),
        ("4001234567", NumberClass.HOTLINE),
        ("8008108888", NumberClass.HOTLINE),
        ("1012345678", NumberClass.FIXED),
        ("2012345678", NumberClass.FIXED),
        ("2912345678", NumberClass.FIXED),
        ("75512345678", NumberClass.FIXED),
        ("5718765432", NumberClass.FIXED),
        ("93112345678", NumberClass.FIXED),
        ("23456789", NumberClass.LOCAL),
        ("12345678", NumberClass.UNKNOWN),
        ("2345678", NumberClass.LOCAL),
        ("87654321", NumberClass.LOCAL),
        ("110", NumberClass.SHORT),
        ("119", NumberClass.SHORT),
        ("120", NumberClass.SHORT),
        ("122", NumberClass.SHORT),
        ("112", NumberClass.SHORT),
        ("999", NumberClass.SHORT),
        ("1234", NumberClass.SHORT),
        ("9558", NumberClass.SHORT),
        ("12345", NumberClass.SHORT),
        ("10086", NumberClass.SHORT),
        ("12321", NumberClass.SHORT),
        ("17951", NumberClass.SHORT),
        ("00447700900123", NumberClass.INTERNATIONAL),
        ("00123", NumberClass.INTERNATIONAL),
        ("12345678901", NumberClass.UNKNOWN),
        ("10123456789", NumberClass.UNKNOWN),
        ("21234567890", NumberClass.UNKNOWN),
        ("1112345678", NumberClass.UNKNOWN),
        ("123456", NumberClass.UNKNOWN),
        ("1234567", NumberClass.UNKNOWN),
        ("91234567", NumberClass.UNKNOWN),
        ("123456789", NumberClass.UNKNOWN),
        ("123456789012", NumberClass.UNKNOWN),
        ("86123456", NumberClass.LOCAL),
        # not normalised numbers
        ("12", NumberClass.UNKNOWN),
        ("", NumberClass.UNKNOWN),
        ("+8613800138000", NumberClass.UNKNOWN),
        ("138 0013 8000", NumberClass.UNKNOWN),
    ],
)
def test_classify(number: str, expected: NumberClass) -> None:
    assert classify(number, CHINA) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+86 138 0013 8000", NumberClass.MOBILE),
        ("1795117012345678", NumberClass.MVNO),
        ("0755-12345678", NumberClass.FIXED),
        ("+86 10 1234 5678", NumberClass.FIXED),
        ("400 123 4567", NumberClass.HOTLINE),
        ("95588", NumberClass.SERVICE),
        ("+44 7700 900123", NumberClass.INTERNATIONAL),
        ("17951", NumberClass.SHORT),
    ],
)
def test_classify_normalised(raw: str, expected: NumberClass) -> None:
    number = normalise(raw, CHINA)
    assert number is not None
    assert classify(number, CHINA) is expected


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("110", True),
        ("119", True),
        ("120", True),
        ("122", True),
        ("112", True),
        ("999", True),
        ("10086", False),
        ("1100", False),
        ("911", False),
        ("11", False),
        ("", False),
        ("+86110", False),
    ],
)
def test_is_emergency(number: str, expected: bool) -> None:
    assert is_emergency(number, CHINA) is expected


# --- properties ---

DIGITS = "0123456789"
PREFIXES = (
    "",
    "+",
    "+86",
    "+860",
    "0",
    "00",
    "0086",
    "00860",
    "86",
    "860",
    *IP_PREFIXES,
    *(p + q for p in IP_PREFIXES for q in ("0", "00", "0086", "86")),
)
# Every way of writing a domestic mobile that must come out as the bare mobile.
MOBILE_PREFIXES = (
    "+86",
    "+860",
    "0",
    "0086",
    "00860",
    "86",
    "860",
    *IP_PREFIXES,
    *(p + q for p in IP_PREFIXES for q in ("0", "0086", "86", "860")),
)
SEPARATORS = ("", "", "", " ", "-", ".", "(", ")")

mobiles = st.builds(
    lambda second, rest: "1" + second + rest,
    st.sampled_from("3456789"),
    st.text(DIGITS, min_size=9, max_size=9),
)
# Digit strings behind zero to three prefixes: doubled prefixes are where idempotence breaks.
prefixed = st.builds(
    lambda prefixes, body: "".join(prefixes) + body,
    st.lists(st.sampled_from(PREFIXES), max_size=3),
    st.text(DIGITS, max_size=MAX_NUMBER_DIGITS + 3),
)


def spaced(data: st.DataObject, number: str) -> str:
    """``number`` with separators drawn between its characters (a leading '+' stays first)."""
    head, body = ("+", number[1:]) if number.startswith("+") else ("", number)
    parts = [head]
    for ch in body:
        parts.append(data.draw(st.sampled_from(SEPARATORS)))
        parts.append(ch)
    return " " + "".join(parts) + data.draw(st.sampled_from(SEPARATORS)) + "\n"


@given(st.one_of(st.text(), st.text(alphabet=DIGITS + "+-(). \t"), prefixed))
def test_normalise_is_total_and_well_formed(raw: str) -> None:
    result = normalise(raw, CHINA)
    assert result is None or OUTPUT.fullmatch(result)
    classify(raw, CHINA)  # total as well
    is_emergency(raw, CHINA)


@given(st.one_of(st.text(DIGITS, max_size=MAX_NUMBER_DIGITS + 3), prefixed))
def test_normalise_is_idempotent(raw: str) -> None:
    once = normalise(raw, CHINA)
    if once is not None:
        assert OUTPUT.fullmatch(once)
        assert normalise(once, CHINA) == once


@given(mobiles, st.sampled_from(MOBILE_PREFIXES))
def test_mobile_variants_normalise_to_the_mobile(mobile: str, prefix: str) -> None:
    assert normalise(mobile, CHINA) == mobile
    assert normalise(prefix + mobile, CHINA) == mobile
    assert classify(mobile, CHINA) in (NumberClass.MOBILE, NumberClass.MVNO)


@given(st.data(), mobiles, st.sampled_from(("", *MOBILE_PREFIXES)))
def test_separators_do_not_matter(data: st.DataObject, mobile: str, prefix: str) -> None:
    assert normalise(spaced(data, prefix + mobile), CHINA) == mobile


@given(st.data(), st.one_of(st.text(DIGITS, max_size=MAX_NUMBER_DIGITS + 1), prefixed))
def test_separators_never_change_the_result(data: st.DataObject, raw: str) -> None:
    assert normalise(spaced(data, raw), CHINA) == normalise(raw, CHINA)


@given(
    st.sampled_from("123456789"),
    st.text(DIGITS, min_size=2, max_size=MAX_NUMBER_DIGITS - 1),
)
def test_international_plus_and_00_agree(first: str, rest: str) -> None:
    number = first + rest
    if number.startswith("86"):
        return
    assert normalise("+" + number, CHINA) == normalise("00" + number, CHINA) == "00" + number
    assert classify("00" + number, CHINA) is NumberClass.INTERNATIONAL


@given(st.sampled_from(["10", "20", "21", "29"]), st.text(DIGITS, min_size=8, max_size=8))
def test_two_digit_area_codes_are_fixed(area: str, local: str) -> None:
    for raw in ("0" + area + local, "+86" + area + local, "+860" + area + local):
        assert normalise(raw, CHINA) == area + local
    assert classify(area + local, CHINA) is NumberClass.FIXED
