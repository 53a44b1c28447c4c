"""When a caller partition is told idle (streams.idle.idle_due): after progress_idle_s at the
end of its log while another partition of the worker receives input, after progress_stopped_s
when none does (the input stopped or paused for all)."""

from __future__ import annotations

import pytest

from config.settings import Settings
from streams.idle import Idle, idle_due

IDLE_S, STOPPED_S = 5.0, 20.0  # the two waits apart, to tell the cases apart


@pytest.mark.parametrize(
    ("quiet", "due"),
    [
        ({}, set()),  # no partition seen this round
        ({0: 0.0}, set()),  # receiving input
        ({0: 4.9, 1: 0.0}, set()),  # not quiet long enough yet
        ({0: 5.0, 1: 0.0}, {0}),  # quiet 5 s while 1 receives: idle
        ({0: 7.0, 1: 6.0, 2: 0.0}, {0, 1}),  # two quiet ones while 2 receives
        ({0: 5.0, 1: 4.0}, set()),  # 1 quiet too (not receiving now): nobody receives
        ({0: 19.9, 1: 6.0}, set()),  # every partition quiet: wait for progress_stopped_s
        ({0: 20.0, 1: 6.0}, {0}),  # stopped long enough: 0, not yet 1
        ({0: 25.0, 1: 21.0}, {0, 1}),
        ({0: 6.0}, set()),  # a lone partition has no other receiving: stopped_s
        ({0: 20.0}, {0}),
        ({0: 30.0, 1: 0.0}, {0}),  # input again on 1: the short wait applies again
    ],
)
def test_a_partition_is_told_idle_after_the_wait_its_workers_input_calls_for(
    quiet: dict[int, float], due: set[int]
) -> None:
    assert idle_due(quiet, IDLE_S, STOPPED_S) == due


def test_the_waits_are_the_settings_and_the_stop_wait_is_never_the_shorter() -> None:
    shipped = Settings()
    assert (shipped.progress_idle_s, shipped.progress_stopped_s) == (20.0, 20.0)
    env = {"DIALWATCH_PROGRESS_IDLE_S": "5", "DIALWATCH_PROGRESS_STOPPED_S": "7.5"}
    assert Settings.from_env(env).progress_stopped_s == 7.5
    with pytest.raises(ValueError, match="progress_stopped_s"):
        Settings(progress_idle_s=10.0, progress_stopped_s=5.0)
    with pytest.raises(ValueError, match="progress_stopped_s"):
        Settings(progress_stopped_s=0.0)


def test_forgetting_clears_what_was_seen_and_told() -> None:
    idle = Idle(caught={0: (10, 1.0)}, told={0: (10, 5)})
    idle.clear()
    assert idle.caught == {} and idle.told == {}
