"""The bounded graceful stop: a stopping agent's actors cancelled again, its diagnostics (the
await chain of a stuck task, down to the line it waits on), and a revocation's bounded wait
for a partition's lock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streams.runtime import acquire_within
from streams.shutdown import await_chain, cancel_stragglers, log_unfinished


async def innermost(event: asyncio.Event) -> None:
    await event.wait()


async def middle(event: asyncio.Event) -> None:
    await innermost(event)


async def outer(event: asyncio.Event) -> None:
    await middle(event)


async def test_the_chain_names_every_coroutine_down_to_the_wait() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(outer(event))
    await asyncio.sleep(0)
    names = [line.rsplit(" ", 1)[1] for line in await_chain(task.get_coro())]
    assert names[:3] == ["outer", "middle", "innermost"]
    assert names[3] == "wait"  # asyncio.Event.wait, where it really hangs
    event.set()
    await task


async def test_a_finished_coroutine_has_an_empty_chain() -> None:
    coro = outer(asyncio.Event())
    coro.close()
    assert await_chain(coro) == []


async def test_unfinished_tasks_are_logged_with_their_chains(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event = asyncio.Event()
    task = asyncio.create_task(outer(event), name="stuck-agent")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="dialwatch.worker"):
        log_unfinished(asyncio.get_running_loop())
    stuck = [r.getMessage() for r in caplog.records if "stuck-agent" in r.getMessage()]
    assert len(stuck) == 1 and "innermost" in stuck[0]
    event.set()
    await task


async def test_acquire_within_gives_up_and_leaves_the_lock_free() -> None:
    lock = asyncio.Lock()
    await lock.acquire()
    assert not await acquire_within(lock, 0.05)
    lock.release()
    assert not lock.locked()  # the abandoned attempt did not take it afterwards
    assert await acquire_within(lock, 0.05)
    assert lock.locked()


async def test_a_cancelled_acquire_within_never_holds_the_lock() -> None:
    lock = asyncio.Lock()
    await lock.acquire()
    waiter = asyncio.create_task(acquire_within(lock, 10))
    await asyncio.sleep(0.01)
    lock.release()  # the attempt may now take it ...
    waiter.cancel()  # ... just as its caller is cancelled
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0)
    assert not lock.locked()


class Actor:
    def __init__(self, task: asyncio.Task[None] | None) -> None:
        self.actor_task = task


class Agent:
    def __init__(self, name: str, should_stop: bool, *tasks: asyncio.Task[None] | None) -> None:
        self.name, self.should_stop = name, should_stop
        self._actors = [Actor(t) for t in tasks]


@pytest.mark.parametrize(
    ("stopping", "running", "cancelled"),
    [
        (True, True, True),  # restarted after the stop's one cancel: cancelled again
        (False, True, False),  # not stopping: a cancel would be taken for a rebalance
        (True, False, False),  # finished: nothing to do
    ],
)
async def test_only_a_stopping_agents_running_actors_are_cancelled(
    stopping: bool, running: bool, cancelled: bool
) -> None:
    event = asyncio.Event()
    task = asyncio.create_task(outer(event))
    if not running:
        event.set()
        await task
    names = cancel_stragglers([Agent("stage2", stopping, task, None)])
    assert names == (["stage2"] if cancelled else [])
    await asyncio.sleep(0)
    assert task.cancelled() is cancelled
    event.set()
    if not task.done():
        await task
