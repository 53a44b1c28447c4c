"""Numbering plans as data: the shipped CN and GB plans, loading and validating plan files, and
properties every plan must have (normalise total and idempotent, classify total)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from config.numbering import (
    CHINA,
    MAX_NUMBER_DIGITS,
    PLANS_DIR,
    ClassRule,
    NumberClass,
    NumberingPlan,
    builtin_plan,
    builtin_plan_names,
    classify,
    is_emergency,
    load_plan,
    normalise,
    parse_plan,
)

ROOT = Path(__file__).resolve().parents[2]
CN_TOML = PLANS_DIR / "cn.toml"
GB_TOML = PLANS_DIR / "gb.toml"
GB = load_plan(GB_TOML)
OUTPUT = re.compile(r"(00)?[0-9]{3,20}")


# --- the shipped plans ---


def test_cn_toml_is_the_built_in_china_plan() -> None:
    assert load_plan(CN_TOML) == CHINA
    assert load_plan(str(CN_TOML)) == CHINA
    assert builtin_plan("cn") == CHINA


def test_builtin_plans() -> None:
    assert {"cn", "gb"} <= set(builtin_plan_names())
    assert builtin_plan("gb") == GB
    assert GB.name == "gb"
    assert GB.country_code == "44"


@pytest.mark.parametrize("name", ["fr", "", "../cn", "cn.toml", "CN", "/etc/passwd"])
def test_builtin_plan_rejects_unknown_names(name: str) -> None:
    with pytest.raises(ValueError, match="unknown numbering plan"):
        builtin_plan(name)


def test_plan_files_ship_as_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["config.numbering"]
    shipped = {p for g in globs for p in (ROOT / "config" / "numbering").glob(g)}
    assert {CN_TOML, GB_TOML} <= shipped


def test_plans_are_hashable_values() -> None:
    assert hash(load_plan(CN_TOML)) == hash(CHINA)
    assert CHINA != GB
    assert "_class_re" not in repr(CHINA)


# --- the UK plan ---

GB_NORMALISE = [
    # mobiles: 07xxx xxxxxx, national significant number without the trunk 0
    ("+44 7700 900123", "7700900123"),
    ("+44 (0)7700 900123", "7700900123"),
    ("07700 900123", "7700900123"),
    ("07700-900-123", "7700900123"),
    ("0044 7700 900123", "7700900123"),
    ("447700900123", "7700900123"),
    ("7700900123", "7700900123"),
    # geographic and 03
    ("020 7946 0018", "2079460018"),
    ("+44 20 7946 0018", "2079460018"),
    ("+44 (0)20 7946 0018", "2079460018"),
    ("0044 20 7946 0018", "2079460018"),
    ("01632 960123", "1632960123"),
    ("0141 496 0000", "1414960000"),
    ("01470 123456", "1470123456"),
    ("0300 123 4567", "3001234567"),
    # freephone, premium, revenue-sharing
    ("0800 123 4567", "8001234567"),
    ("0808 157 0000", "8081570000"),
    ("0800 1111", "8001111"),
    ("0909 879 0000", "9098790000"),
    ("0845 464 7000", "8454647000"),
    # short codes and local numbers
    ("999", "999"),
    ("112", "112"),
    ("101", "101"),
    ("1471", "1471"),
    ("116 123", "116123"),
    ("118 118", "118118"),
    ("7946 0018", "79460018"),
    # dialling prefixes in front of a full number
    ("141 020 7946 0018", "2079460018"),
    ("1470 07700 900123", "7700900123"),
    ("18001 0800 123 4567", "8001234567"),
    ("141 0141 496 0000", "1414960000"),
    ("141 +44", None),  # '+' not leading
    ("1410044 20 7946 0018", "2079460018"),
    ("141 0086 138 0013 8000", "008613800138000"),
    ("141", "141"),
    ("141 999", "141999"),
    # other countries: "00" + country code + number
    ("+86 138 0013 8000", "008613800138000"),
    ("0086 138 0013 8000", "008613800138000"),
    ("+1 (212) 555-0100", "0012125550100"),
    ("+353 1 234 5678", "0035312345678"),
    # a bare 86 is not a country code in the UK
    ("8613800138000", "8613800138000"),
]


@pytest.mark.parametrize(("raw", "expected"), GB_NORMALISE)
def test_gb_normalise(raw: str, expected: str | None) -> None:
    assert normalise(raw, GB) == expected
    if expected is not None:
        assert normalise(expected, GB) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "+",
        "12",
        "+44",
        "0044",
        "+44 12",
        "020",
        "0",
        "00",
        "07700 900123x",
        "1" * (MAX_NUMBER_DIGITS + 1),
        # a prefix left over after the one allowed strip
        "+44 44 7700 900123",
        "0 44 7700 900123",
        "+44 0 07700 900123",
        "+44 00 86 138 0013 8000",
        "141 141 020 7946 0018",
        "+44 141 020 7946 0018",
        "0 141 020 7946 0018",
    ],
)
def test_gb_normalise_rejects(raw: str) -> None:
    assert normalise(raw, GB) is None


GB_CLASSIFY = [
    ("7700900123", NumberClass.MOBILE),
    ("7123456789", NumberClass.MOBILE),
    ("7912345678", NumberClass.MOBILE),
    ("7624123456", NumberClass.MOBILE),  # Isle of Man
    ("7012345678", NumberClass.UNKNOWN),  # 070 personal numbering
    ("7612345678", NumberClass.UNKNOWN),  # 076 paging
    ("770090012", NumberClass.UNKNOWN),  # too short for a mobile
    ("77009001234", NumberClass.UNKNOWN),  # too long
    ("2079460018", NumberClass.FIXED),
    ("1632960123", NumberClass.FIXED),
    ("169772345", NumberClass.FIXED),  # 9-digit geographic
    ("3001234567", NumberClass.FIXED),
    ("8001234567", NumberClass.HOTLINE),
    ("800123456", NumberClass.HOTLINE),
    ("8081570000", NumberClass.HOTLINE),
    ("8001111", NumberClass.HOTLINE),
    ("9098790000", NumberClass.SERVICE),
    ("8454647000", NumberClass.SERVICE),
    ("8701234567", NumberClass.SERVICE),
    ("118118", NumberClass.SERVICE),
    ("116123", NumberClass.SHORT),
    ("999", NumberClass.SHORT),
    ("112", NumberClass.SHORT),
    ("101", NumberClass.SHORT),
    ("1471", NumberClass.SHORT),
    ("12345", NumberClass.SHORT),
    ("79460018", NumberClass.LOCAL),
    ("496000", NumberClass.LOCAL),
    ("008613800138000", NumberClass.INTERNATIONAL),
    ("00447700900123", NumberClass.INTERNATIONAL),
    ("5612345678", NumberClass.UNKNOWN),  # 056 VoIP
    ("4123456789", NumberClass.UNKNOWN),  # 04 unused
    ("8201234567", NumberClass.UNKNOWN),  # 082 unused
    ("123456", NumberClass.UNKNOWN),
    ("13800138000", NumberClass.UNKNOWN),  # a Chinese mobile without its country code
    ("12", NumberClass.UNKNOWN),
    ("", NumberClass.UNKNOWN),
    ("+447700900123", NumberClass.UNKNOWN),
    ("07700 900123", NumberClass.UNKNOWN),
]


@pytest.mark.parametrize(("number", "expected"), GB_CLASSIFY)
def test_gb_classify(number: str, expected: NumberClass) -> None:
    assert classify(number, GB) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+44 7700 900123", NumberClass.MOBILE),
        ("020 7946 0018", NumberClass.FIXED),
        ("0800 123 4567", NumberClass.HOTLINE),
        ("0909 879 0000", NumberClass.SERVICE),
        ("070 1234 5678", NumberClass.UNKNOWN),
        ("+86 138 0013 8000", NumberClass.INTERNATIONAL),
        ("999", NumberClass.SHORT),
    ],
)
def test_gb_classify_normalised(raw: str, expected: NumberClass) -> None:
    number = normalise(raw, GB)
    assert number is not None
    assert classify(number, GB) is expected


@pytest.mark.parametrize(
    ("number", "expected"),
    [("999", True), ("112", True), ("110", False), ("119", False), ("9999", False), ("", False)],
)
def test_gb_emergency(number: str, expected: bool) -> None:
    assert is_emergency(number, GB) is expected


@pytest.mark.parametrize(
    ("raw", "cn", "gb"),
    [
        ("+44 7700 900123", "00447700900123", "7700900123"),
        ("+86 138 0013 8000", "13800138000", "008613800138000"),
        ("020 7946 0018", "2079460018", "2079460018"),
        ("8613800138000", "13800138000", "8613800138000"),
        ("447700900123", "447700900123", "7700900123"),
        ("1795113800138000", "13800138000", "1795113800138000"),
    ],
)
def test_the_plan_decides(raw: str, cn: str, gb: str) -> None:
    assert normalise(raw, CHINA) == cn
    assert normalise(raw, GB) == gb


# --- plans built in code ---


def test_class_rule_accepts_the_class_value() -> None:
    assert ClassRule("mobile", "1[0-9]{10}").number_class is NumberClass.MOBILE  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ClassRule("mobil", "1")  # type: ignore[arg-type]


def test_a_minimal_plan() -> None:
    plan = NumberingPlan(
        name="xx",
        country_code="999",
        class_rules=(ClassRule(NumberClass.INTERNATIONAL, "00[0-9]*"),),
    )
    assert normalise("0123456", plan) == "123456"
    assert normalise("+999 0123456", plan) == "123456"
    assert normalise("999123456", plan) == "999123456"  # bare country code never stripped
    assert classify("123456", plan) is NumberClass.UNKNOWN
    assert classify("0044123", plan) is NumberClass.INTERNATIONAL
    assert not is_emergency("112", plan)


def test_no_trunk_prefix_and_kept_numbers() -> None:
    plan = NumberingPlan(
        name="xx",
        country_code="39",
        trunk_prefix="",
        bare_country_code_min_digits=9,
        keep_as_dialled=("39",),
        class_rules=(ClassRule(NumberClass.FIXED, "0[0-9]+"),),
    )
    assert normalise("06 1234 5678", plan) == "0612345678"  # the 0 is part of the number
    assert normalise("+39 06 1234 5678", plan) == "0612345678"
    assert normalise("390612345678", plan) == "390612345678"  # kept as dialled
    assert classify("0612345678", plan) is NumberClass.FIXED


# --- validation of plan files ---


def _cn_raw() -> dict[str, Any]:
    return tomllib.loads(CN_TOML.read_text())


def _rules(*pairs: tuple[object, object]) -> list[dict[str, object]]:
    return [{"class": c, "pattern": p} for c, p in pairs]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"country_code": None}, r"country_code: missing"),
        ({"name": None}, r"name: missing"),
        ({"class_rules": None}, r"class_rules: missing"),
        ({"country_code": 44}, r"country_code: must be a string of digits"),
        ({"country_code": "+44"}, r"country_code: '\+44' must be 1 to 3 digits"),
        ({"country_code": "044"}, r"country_code: '044' must be 1 to 3 digits"),
        ({"country_code": "1234"}, r"country_code: '1234' must be 1 to 3 digits"),
        ({"name": ""}, r"name: must be a non-empty string"),
        ({"countrycode": "44"}, r"unknown field 'countrycode'"),
        ({"class_rules": []}, r"class_rules: must be a non-empty array"),
        ({"class_rules": {"class": "mobile"}}, r"class_rules: must be a non-empty array"),
        ({"class_rules": ["mobile"]}, r"class_rules\[0\]: must be a table"),
        (
            {"class_rules": _rules(("mobile", "1[0-9]{10}"), ("mobil", "2"))},
            r"class_rules\[1\]\.class: unknown number class 'mobil'; known: mobile, mvno,",
        ),
        ({"class_rules": _rules(("trunk", "1"))}, r"class_rules\[0\]\.class: unknown"),
        ({"class_rules": _rules((3, "1"))}, r"class_rules\[0\]\.class: unknown number class 3"),
        (
            {"class_rules": _rules(("mobile", "1[0-9"))},
            r"class_rules\[0\]\.pattern: invalid regular expression '1\[0-9'",
        ),
        (
            {"class_rules": _rules(("mobile", ""))},
            r"class_rules\[0\]\.pattern: must be a non-empty",
        ),
        ({"class_rules": _rules(("mobile", 13))}, r"class_rules\[0\]\.pattern: must be a string"),
        (
            {"class_rules": _rules(("mobile", "1(3|5)[0-9]{9}"))},
            r"class_rules\[0\]\.pattern: .* capturing group",
        ),
        (
            {"class_rules": _rules(("mobile", "1[0-9]{10}"), ("fixed", "(?i)2"))},
            r"class_rules: patterns cannot be combined",
        ),
        ({"class_rules": [{"class": "mobile"}]}, r"class_rules\[0\]\.pattern: missing"),
        (
            {"class_rules": [{"class": "mobile", "pattern": "1", "note": "x"}]},
            r"class_rules\[0\]: unknown field 'note'",
        ),
        ({"international_prefixes": ["011"]}, r"international_prefixes: must include '00'"),
        ({"international_prefixes": "00"}, r"international_prefixes: must be a list"),
        ({"international_prefixes": [0]}, r"international_prefixes\[0\]: must be a string"),
        (
            {"international_prefixes": ["00", "001"]},
            r"international_prefixes: '00' is a prefix of '001'",
        ),
        ({"international_prefixes": ["00", "00"]}, r"international_prefixes: duplicate"),
        ({"carrier_prefixes": ["17951", "1795"]}, r"carrier_prefixes: '1795' is a prefix"),
        ({"carrier_prefixes": ["0017"]}, r"carrier_prefixes\[0\]: '0017' overlaps"),
        ({"carrier_prefixes": ["17-951"]}, r"carrier_prefixes\[0\]: '17-951' is not a non-empty"),
        ({"carrier_prefixes": [""]}, r"carrier_prefixes\[0\]: '' is not a non-empty"),
        ({"carrier_prefix_min_digits": 0}, r"carrier_prefix_min_digits: must be an integer >= 1"),
        ({"carrier_prefix_min_digits": True}, r"carrier_prefix_min_digits: must be an integer"),
        ({"carrier_prefix_min_digits": 7.5}, r"carrier_prefix_min_digits: must be an integer"),
        ({"bare_country_code_min_digits": -1}, r"bare_country_code_min_digits: must be an"),
        ({"trunk_prefix": 0}, r"trunk_prefix: must be a string"),
        ({"trunk_prefix": "O"}, r"trunk_prefix: 'O' must be a string of digits"),
        ({"keep_as_dialled": ["9[56]"]}, r"keep_as_dialled\[0\]: '9\[56\]' is not a non-empty"),
        ({"emergency_numbers": [110]}, r"emergency_numbers\[0\]: must be a string of digits"),
        ({"emergency_numbers": ["1-1-0"]}, r"emergency_numbers: '1-1-0' is not a string"),
    ],
)
def test_parse_plan_errors_name_the_source_and_field(
    change: dict[str, object], message: str
) -> None:
    raw = _cn_raw()
    for key, value in change.items():
        if value is None:
            del raw[key]
        else:
            raw[key] = value
    with pytest.raises(ValueError, match=r"^plans/xx\.toml: " + message):
        parse_plan(raw, source="plans/xx.toml")


def test_parse_plan_rejects_a_non_table() -> None:
    with pytest.raises(ValueError, match="must be a table"):
        parse_plan(["name"], source="x")  # type: ignore[arg-type]


def test_load_plan_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\ncountry_code = "44"\n[[class_rules]]\nclass = "mobile"\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}: class_rules[0].pattern: missing")):
        load_plan(path)
    path.write_text('name = "bad\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}: not valid TOML")):
        load_plan(path)
    with pytest.raises(FileNotFoundError):
        load_plan(tmp_path / "missing.toml")


def test_parse_plan_defaults() -> None:
    plan = parse_plan(
        {"name": "min", "country_code": "7", "class_rules": _rules(("mobile", "9[0-9]{9}"))}
    )
    assert plan.international_prefixes == ("00",)
    assert plan.trunk_prefix == "0"
    assert plan.carrier_prefixes == ()
    assert plan.bare_country_code_min_digits is None
    assert plan.emergency_numbers == frozenset()
    assert normalise("8 912 345 6789", plan) == "89123456789"
    assert normalise("+7 912 345 6789", plan) == "9123456789"


# --- properties of the shipped plans ---

PLANS = {"cn": CHINA, "gb": GB}
DIGITS = "0123456789"


def _prefix_pieces(plan: NumberingPlan) -> tuple[str, ...]:
    cc = plan.country_code
    pieces = ["", "+", "+" + cc, "+" + cc + "0", "0", "00", "00" + cc, cc, cc + "0"]
    pieces += plan.carrier_prefixes
    pieces += [p + q for p in plan.carrier_prefixes for q in ("0", "00", "00" + cc, cc)]
    return tuple(pieces)


def prefixed(plan: NumberingPlan) -> st.SearchStrategy[str]:
    """Digit strings behind zero to three of the plan's prefixes, separators sprinkled in."""
    return st.builds(
        lambda prefixes, body, sep: sep.join(prefixes) + sep + body,
        st.lists(st.sampled_from(_prefix_pieces(plan)), max_size=3),
        st.text(DIGITS, max_size=MAX_NUMBER_DIGITS + 3),
        st.sampled_from(["", "", " ", "-"]),
    )


def any_input(plan: NumberingPlan) -> st.SearchStrategy[str]:
    return st.one_of(st.text(), st.text(alphabet=DIGITS + "+-(). \t"), prefixed(plan))


@pytest.mark.parametrize("name", PLANS)
@given(data=st.data())
def test_normalise_is_total_well_formed_and_idempotent(name: str, data: st.DataObject) -> None:
    plan = PLANS[name]
    raw = data.draw(any_input(plan))
    once = normalise(raw, plan)
    if once is not None:
        assert OUTPUT.fullmatch(once)
        assert normalise(once, plan) == once
    assert isinstance(classify(raw, plan), NumberClass)
    assert isinstance(is_emergency(raw, plan), bool)


@pytest.mark.parametrize("name", PLANS)
@given(data=st.data())
def test_classify_is_total(name: str, data: st.DataObject) -> None:
    plan = PLANS[name]
    number = data.draw(st.one_of(st.text(), st.text(DIGITS, max_size=25)))
    assert isinstance(classify(number, plan), NumberClass)


@given(st.one_of(st.text(), prefixed(CHINA)))
def test_the_default_plan_is_china(raw: str) -> None:
    loaded = load_plan(CN_TOML)
    assert normalise(raw, CHINA) == normalise(raw, loaded)
    assert classify(raw, CHINA) is classify(raw, loaded)


gb_mobiles = st.builds(
    lambda second, rest: "7" + second + rest,
    st.sampled_from("1234579"),
    st.text(DIGITS, min_size=8, max_size=8),
)
GB_MOBILE_PREFIXES = ("+44", "+440", "0", "0044", "00440", "44", "440", "141", "1410", "18001")


@given(gb_mobiles, st.sampled_from(GB_MOBILE_PREFIXES))
def test_gb_mobile_variants(mobile: str, prefix: str) -> None:
    assert normalise(mobile, GB) == mobile
    assert normalise(prefix + mobile, GB) == mobile
    assert normalise(prefix + " " + mobile[:4] + " " + mobile[4:], GB) == mobile
    assert classify(mobile, GB) is NumberClass.MOBILE


@given(st.sampled_from("123456789"), st.text(DIGITS, min_size=2, max_size=MAX_NUMBER_DIGITS - 1))
def test_gb_international_plus_and_00_agree(first: str, rest: str) -> None:
    number = first + rest
    if number.startswith("44"):
        return
    assert normalise("+" + number, GB) == normalise("00" + number, GB) == "00" + number
    assert classify("00" + number, GB) is NumberClass.INTERNATIONAL


# --- any valid plan: normalise stays total and idempotent ---


@st.composite
def plans(draw: st.DrawFn) -> NumberingPlan:
    try:
        return NumberingPlan(
            name="random",
            country_code=draw(st.from_regex(r"[1-9][0-9]{0,2}", fullmatch=True)),
            trunk_prefix=draw(st.sampled_from(["", "0", "1", "8", "01"])),
            international_prefixes=(
                "00",
                *draw(st.lists(st.sampled_from(["011", "010", "9"]), max_size=2, unique=True)),
            ),
            carrier_prefixes=tuple(
                draw(
                    st.lists(
                        st.sampled_from(["17951", "12593", "141", "1470", "9", "86", "10", "0123"]),
                        max_size=3,
                        unique=True,
                    )
                )
            ),
            carrier_prefix_min_digits=draw(st.integers(1, 12)),
            bare_country_code_min_digits=draw(st.none() | st.integers(1, 12)),
            keep_as_dialled=tuple(
                draw(
                    st.lists(
                        st.sampled_from(["95", "0800", "1", "86", "4", "00"]),
                        max_size=2,
                        unique=True,
                    )
                )
            ),
            class_rules=CHINA.class_rules,
        )
    except ValueError:
        assume(False)
        raise


@given(data=st.data())
def test_any_valid_plan_normalises_idempotently(data: st.DataObject) -> None:
    plan = data.draw(plans())
    pieces = (*_prefix_pieces(plan), *plan.international_prefixes, plan.trunk_prefix)
    raw = data.draw(
        st.one_of(
            st.text(alphabet=DIGITS + "+ "),
            st.builds(
                lambda ps, body: "".join(ps) + body,
                st.lists(st.sampled_from(pieces), max_size=3),
                st.text(DIGITS, max_size=MAX_NUMBER_DIGITS + 2),
            ),
        )
    )
    once = normalise(raw, plan)
    if once is not None:
        assert OUTPUT.fullmatch(once), (plan, raw, once)
        assert normalise(once, plan) == once, (plan, raw, once)


def test_the_setting_picks_a_bundled_plan_or_a_file(tmp_path: Path) -> None:
    from config.numbering import plan_from_setting
    from config.settings import Settings
    from streams.factory import build_engine

    assert plan_from_setting("cn") == CHINA
    gb = plan_from_setting("gb")
    assert gb.country_code == "44"
    copy = tmp_path / "mine.toml"
    copy.write_text((PLANS_DIR / "gb.toml").read_text(encoding="utf-8"), encoding="utf-8")
    assert plan_from_setting(str(copy)) == gb
    engine = build_engine(Settings(numbering_plan="gb"))
    assert engine.numbering == gb
    assert engine.number_class("number", "7700900123") == "mobile"
    assert build_engine(Settings()).number_class("number", "7700900123") != "mobile"


def test_allowlist_add_writes_the_callers_the_worker_reads_under_gb() -> None:
    """`dialwatch allowlist add` normalises under the configured plan, as the worker does: under
    GB, +44 7700 900123 is stored as 7700900123 (not the CN form 00447700900123), the caller
    the engine sees, so the entry matches (and `remove` removes it)."""
    import orjson

    from config.settings import Settings
    from streams.allowlist import Allowlist
    from streams.cdr import CDR, decode_message
    from streams.cli import allowlist_entries
    from streams.factory import build_engine
    from streams.observe import caller_obs

    settings = Settings(numbering_plan="gb")
    raw = ["+447700900123", "07700 900124", "00 44 20 7946 0018"]
    written = allowlist_entries(raw, settings)
    engine = build_engine(settings)
    calls = [
        {"cdr_id": f"c{i}", "caller": n, "callee": "07700900999", "start_time": 1_793_581_200}
        | {"duration_s": 0, "answered": False}
        for i, n in enumerate(raw)
    ]
    decoded = decode_message(orjson.dumps(calls), engine.numbering)
    cdrs = [c for c in decoded if isinstance(c, CDR)]
    assert len(cdrs) == len(raw), decoded
    seen = [caller_obs(c, settings.international_trunks, engine.numbering) for c in cdrs]
    subjects = [o.subject for o in seen if o is not None]
    assert written == subjects == ["7700900123", "7700900124", "2079460018"]
    shared = Allowlist(None, engine.numbering)
    shared.set_shared(written)
    assert all(s in shared for s in subjects)
    assert allowlist_entries(["+447700900123"], Settings()) == ["00447700900123"]  # CN differs
    assert allowlist_entries(["+447700900123", "not a number"], settings) is None
