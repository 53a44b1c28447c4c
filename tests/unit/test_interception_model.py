"""The interception list's pure decisions: mode per number class, expiry, what an alert asks."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from config.numbering import CHINA, NumberClass, classify
from detectors.pseudonym import pseudonym
from streams.interception.model import (
    DEFAULT_MODES,
    Mode,
    Timing,
    breaker_open,
    decide,
    parse_modes,
)
from streams.interception.step import victims_of

NOW = 1_800_000_000_000
TIMING = Timing(open_max_s=7 * 86_400, after_clear_s=86_400)


def alert(number: str = "13800138000", **over: Any) -> dict[str, Any]:
    base = {
        "alert_id": "a1",
        "episode_id": "e1",
        "number": number,
        "number_class": str(classify(number, CHINA)),
        "subject": "number",
        "detector": "bulk_dialling",
        "state": "raised",
        "severity": "critical",
        "action": "intercept",
        "reasons": ["22 calls in 5m >= 18"],
        "allowlisted": False,
    }
    return {**base, **over}


@pytest.mark.parametrize(
    ("number", "number_class", "mode"),
    [
        ("13800138000", NumberClass.MOBILE, Mode.AUTO),
        ("17033628018", NumberClass.MVNO, Mode.AUTO),
        ("1012345678", NumberClass.FIXED, Mode.AUTO),
        ("00447700900123", NumberClass.INTERNATIONAL, Mode.AUTO),
        ("95105888", NumberClass.CALL_CENTRE, Mode.AUTO),
        ("96123456", NumberClass.CALL_CENTRE, Mode.AUTO),
        ("95588", NumberClass.SERVICE, Mode.APPROVE),
        ("961234", NumberClass.SERVICE, Mode.APPROVE),
        ("4001234567", NumberClass.HOTLINE, Mode.APPROVE),
        ("12345", NumberClass.SHORT, Mode.SHADOW),
    ],
)
def test_default_mode_per_number_class(number: str, number_class: NumberClass, mode: Mode) -> None:
    assert classify(number, CHINA) is number_class
    assert DEFAULT_MODES[number_class] is mode
    intent = decide(alert(number), DEFAULT_MODES, CHINA, TIMING, NOW)
    if mode is Mode.SHADOW:
        assert intent is None
    else:
        assert intent is not None and intent.op == "list" and intent.mode is mode


@pytest.mark.parametrize(
    ("over", "op"),
    [
        ({}, "list"),
        ({"state": "escalated"}, "list"),
        ({"action": "monitor"}, None),
        ({"allowlisted": True, "action": "monitor"}, None),
        ({"allowlisted": True}, None),
        ({"subject": "trunk", "number": "intl-gw1"}, None),
        ({"subject": "block", "number": "1380013800xx", "action": "monitor"}, None),
        ({"number": "110"}, None),  # emergency: never listed
        ({"number": "112"}, None),
        ({"state": "cleared", "action": "monitor"}, "clear"),
        ({"subject": "callee", "number": "ps:00aa", "action": "protect"}, "protect"),
        ({"subject": "callee", "number": "ps:00aa", "state": "cleared"}, "clear"),
        ({"subject": "trunk", "number": "gw", "state": "cleared"}, None),
    ],
)
def test_what_an_alert_asks(over: dict[str, Any], op: str | None) -> None:
    intent = decide(alert(**over), DEFAULT_MODES, CHINA, TIMING, NOW)
    assert (intent.op if intent else None) == op


@pytest.mark.parametrize(
    ("state", "expires"),
    [("raised", NOW + 7 * 86_400_000), ("escalated", NOW + 7 * 86_400_000),
     ("cleared", NOW + 86_400_000)],
)  # fmt: skip
def test_expiry_while_open_and_after_clear(state: str, expires: int) -> None:
    intent = decide(alert(state=state), DEFAULT_MODES, CHINA, TIMING, NOW)
    assert intent is not None and intent.expires_at_ms == expires
    assert intent.escalated == (state == "escalated")


def test_intent_carries_the_alert() -> None:
    intent = decide(alert(), DEFAULT_MODES, CHINA, TIMING, NOW)
    assert intent is not None
    assert (intent.alert_id, intent.episode_id, intent.detector) == ("a1", "e1", "bulk_dialling")
    assert intent.reason == "22 calls in 5m >= 18" and intent.number_class == "mobile"


@pytest.mark.parametrize(
    ("text", "changed"),
    [
        ("", {}),
        ("mobile=approve", {"mobile": Mode.APPROVE}),
        (
            " service = auto , hotline_400=shadow ",
            {"service": Mode.AUTO, "hotline_400": Mode.SHADOW},
        ),
    ],
)
def test_parse_modes(text: str, changed: dict[str, Mode]) -> None:
    modes = parse_modes(text)
    assert modes == {**{str(k): v for k, v in DEFAULT_MODES.items()}, **changed}


@pytest.mark.parametrize(
    ("text", "message"),
    [("mobile", "expected class=mode"), ("pager=auto", "expected class=mode"),
     ("mobile=block", "shadow, approve or auto")],
)  # fmt: skip
def test_parse_modes_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_modes(text)


def test_shadow_override_lists_nothing() -> None:
    modes = parse_modes("mobile=shadow")
    assert decide(alert(), modes, CHINA, TIMING, NOW) is None


@pytest.mark.parametrize(("recent", "limit", "open_"), [(0, 1, False), (4, 5, False),
                                                        (5, 5, True), (9, 5, True)])  # fmt: skip
def test_breaker(recent: int, limit: int, open_: bool) -> None:
    assert breaker_open(recent, limit) is open_


KEY = b"test-key"
VICTIM, OTHER = "13500135000", "13500135999"


class A(NamedTuple):
    alert_id: str
    subject: str
    number: str
    event_ms: int


class Ob(NamedTuple):
    kind: str
    subject: str
    start_ms: int
    other: str


CALLS = [
    (1, Ob("callee", VICTIM, 1000, "13600136001")),
    (2, Ob("callee", VICTIM, 2000, "13600136002")),
    (3, Ob("callee", OTHER, 2000, "13600136003")),
    (4, Ob("number", "13600136001", 1000, VICTIM)),
]


@pytest.mark.parametrize(
    ("alert", "victim"),
    [
        pytest.param(A("v", "callee", pseudonym(VICTIM, KEY), 1000), VICTIM, id="victim"),
        pytest.param(A("v", "callee", pseudonym("13000000000", KEY), 1000), None, id="unknown"),
        pytest.param(A("m", "number", "13600136001", 1000), VICTIM, id="member-one-callee"),
        # Two callees called at that time: the one the member called decides.
        pytest.param(A("m", "number", "13600136003", 2000), OTHER, id="member-called-it"),
        pytest.param(A("m", "number", "13600136009", 2000), None, id="member-ambiguous"),
        pytest.param(A("m", "number", "13600136001", 9000), None, id="member-no-call"),
    ],
)
def test_victims_of_a_stage_2_batch(alert: A, victim: str | None) -> None:
    via, shown = victims_of([alert], CALLS, KEY)
    assert via.get(alert.alert_id) == victim
    if alert.subject == "callee" and victim is not None:
        assert shown == {alert.number: victim}


@pytest.mark.parametrize(
    ("detector", "tied"),
    [("call_bombing", True), ("debt_collection", True), ("bulk_dialling", False)],
)
def test_a_harassing_caller_is_tied_to_its_victims_protection(detector: str, tied: bool) -> None:
    """A bombing member's or a debt collector's intercept also asks for a member entry (the
    caller added to its victim's protection); other detectors' intercepts only list."""
    from config.settings import Settings
    from streams.interception.step import Interception

    step = Interception(None, Settings(), CHINA)  # type: ignore[arg-type]  # intents: no store
    member = alert("13600136001", detector=detector, subject="number", action="intercept")
    ops = [it.op for it in step.intents([member], NOW)]
    assert ops == (["list", "member"] if tied else ["list"])
    if tied:
        [entry] = [it for it in step.intents([member], NOW) if it.op == "member"]
        assert (entry.detector, entry.caller) == (detector, "13600136001")
