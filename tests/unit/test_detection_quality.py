"""The detection benchmark in small: labelled scenarios on seeds the policy was not tuned on
(it was tuned on seed 1), through both stages of the scan engine. Any false intercept fails."""

from __future__ import annotations

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
