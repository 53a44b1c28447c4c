"""The detection benchmark in small: labelled scenarios on seeds the policy was not tuned on
(it was tuned on seed 1), through both stages of the scan engine. Any false intercept fails."""

from __future__ import annotations

from dataclasses import replace

import pytest

from config.settings import Settings
from streams.tools.evaluate import FAIL, BenchmarkSpec, run_seed
from streams.tools.simulate import default_start

SMALL = BenchmarkSpec(subscribers=3000, hours=10, scale=0.5)


@pytest.mark.parametrize("seed", [11, 12])
async def test_small_scenario_meets_every_target(seed: int) -> None:
    settings = Settings()
    report = await run_seed(settings, SMALL, seed, default_start(settings))
    assert report.false_intercepts == (), report.render()
    for pattern in report.patterns:
        assert pattern.labelled > 0, pattern  # every pattern is in the small scenario too
    failed = [t for t in report.targets if t.status == FAIL]
    assert failed == [], report.render()


# Issue 19's classes on a day the policy was not tuned on (tuned on 1, 6 and 7; docs/scenario.md):
# every debt collector intercepted within 30 min of its 10th attempt at its debtor, in both
# replay orders, the debtor protected, and no legitimate repetitive caller intercepted; line
# checks through a client's block get at most a monitor alert (sequential dialling with
# conversations). The day is a short one (about 10 s per order) with every new class at full
# strength.
ISSUE_19 = BenchmarkSpec(subscribers=2000, hours=8, scale=1.0)
NEW_LEGIT = ("line_check", "hospital_caller", "hotline_redialler", "worried_parent")


@pytest.mark.parametrize("order", ["sorted", "delivery"])
async def test_debt_collectors_meet_their_targets_and_repetitive_callers_are_spared(
    order: str,
) -> None:
    settings = Settings()
    spec = replace(ISSUE_19, order=order)
    report = await run_seed(settings, spec, 31, default_start(settings))
    collectors, debtors = report.pattern("debt_collector"), report.pattern("debtor")
    assert collectors is not None and debtors is not None
    assert collectors.labelled == collectors.detected == 4, report.render()
    assert max(collectors.ttd_min) <= 30.0, report.render()
    assert debtors.labelled == debtors.detected == 4, report.render()
    assert all(report.role_counts[role] == 3 for role in NEW_LEGIT)
    assert report.false_intercepts == (), report.render()
    failed = [t for t in report.targets if t.status == FAIL]
    assert failed == [], report.render()
