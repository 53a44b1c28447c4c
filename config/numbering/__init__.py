"""Numbering plans: how a dialled number is normalised and classed (``plan``), and the bundled
and operator-supplied plan files that configure it (``loader``). The bottom of the house:
``config`` and ``detectors`` both import it, and it imports neither."""

from config.numbering.loader import (
    PLANS_DIR,
    builtin_plan,
    builtin_plan_names,
    load_plan,
    parse_plan,
    plan_from_setting,
)
from config.numbering.plan import (
    CANONICAL_INTERNATIONAL_PREFIX,
    CHINA,
    MAX_NUMBER_DIGITS,
    ClassRule,
    NumberClass,
    NumberingPlan,
    classify,
    is_emergency,
    normalise,
)

__all__ = [
    "CANONICAL_INTERNATIONAL_PREFIX",
    "CHINA",
    "MAX_NUMBER_DIGITS",
    "PLANS_DIR",
    "ClassRule",
    "NumberClass",
    "NumberingPlan",
    "builtin_plan",
    "builtin_plan_names",
    "classify",
    "is_emergency",
    "load_plan",
    "normalise",
    "parse_plan",
    "plan_from_setting",
]
