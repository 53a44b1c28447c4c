"""A bounded graceful stop: after SIGTERM or SIGINT the worker has ``stop_timeout_s`` to leave
its group and flush; if it is still running then, it logs what every unfinished task is
waiting on (the whole await chain, which asyncio's own stack dump cuts at the first frame) and
exits with status 1 (SIGUSR2 logs the same chains at any time). Leaving at that point is safe:
a batch is acknowledged only after its fenced state write and its sends, so the next owner
re-applies whatever was in flight. An actor still running 5 s into the stop is cancelled again
(``cancel_stragglers``: Faust restarts an actor a rebalance cancelled, and the stop then waits
for the restarted one, which it never cancels)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import Iterable
from types import CoroutineType, FrameType
from typing import Any

import faust

log = logging.getLogger("dialwatch.worker")
STALLED_EXIT = 1
RECANCEL_AFTER_S = 5.0  # into the stop, an actor still running is cancelled again ...
RECANCEL_EVERY_S = 2.0  # ... and again until the stop ends


def cancel_stragglers(agents: Iterable[Any]) -> list[str]:
    """Cancel the actor tasks still running of every agent that has begun to stop; return the
    agents' names. Faust cancels an agent's actors once, when it stops the agent; an actor
    that a rebalance had cancelled just before (Faust's "Restarting on rebalance") is started
    again by the supervisor and, started after that one cancel, is never cancelled: the agent's
    stop then waits for it for ever inside ``take_events``. An agent not yet stopping is left
    alone: Faust would take the cancel for a rebalance and restart it."""
    names: list[str] = []
    for agent in agents:
        if not agent.should_stop:
            continue
        for aref in list(getattr(agent, "_actors", ())):
            task = getattr(aref, "actor_task", None)
            if task is not None and not task.done():
                task.cancel()
                names.append(str(getattr(agent, "name", agent)))
    return names


def await_chain(coro: Any) -> list[str]:
    """``file:line function`` of each coroutine or generator in ``coro``'s await chain."""
    chain: list[str] = []
    while coro is not None and len(chain) < 64:
        frame: FrameType | None = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "ag_frame", None)
            or getattr(coro, "gi_frame", None)
        )
        if frame is not None:
            chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "ag_await", None)
            or getattr(coro, "gi_yieldfrom", None)
        )
    return chain


def log_unfinished(loop: asyncio.AbstractEventLoop) -> None:
    """Every unfinished task's await chain, then every suspended coroutine of dialwatch's own
    (a chain breaks where a library awaits through an object with no frame, e.g. Faust's
    actor; these show where dialwatch's code waits below such a break)."""
    for task in asyncio.all_tasks(loop):
        coro = task.get_coro()
        if isinstance(coro, CoroutineType) or hasattr(coro, "cr_frame"):
            log.error("unfinished task %s:\n  %s", task.get_name(), "\n  ".join(await_chain(coro)))
    for obj in gc.get_objects():
        if (
            isinstance(obj, CoroutineType)
            and obj.cr_frame is not None
            and not obj.cr_running
            and os.sep + "streams" + os.sep in obj.cr_code.co_filename
        ):
            log.error("suspended coroutine:\n  %s", "\n  ".join(await_chain(obj)))


class Worker(faust.Worker):
    """``faust.Worker`` with a deadline on the graceful stop. (Nothing of dialwatch may raise
    CancelledError itself to hurry the stop: Faust takes that, from an agent it has not begun
    to stop, for a rebalance and restarts the agent, which then holds the stop up.)"""

    def __init__(self, *args: Any, stop_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_timeout_s = stop_timeout_s

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if not self._signal_stop_time:
            self.loop.call_later(self.stop_timeout_s, self._stalled)
            self.loop.call_later(RECANCEL_AFTER_S, self._recancel)
        super()._schedule_shutdown(signal)

    def _recancel(self) -> None:
        stragglers = cancel_stragglers(self.app.agents.values())
        if stragglers:
            log.warning(
                "stop: %d actor(s) of a stopping agent still running (%s); cancelled again",
                len(stragglers),
                ", ".join(sorted(set(stragglers))),
            )
        self.loop.call_later(RECANCEL_EVERY_S, self._recancel)

    def _on_sigusr2(self) -> None:
        # mode enters pdb on SIGUSR2, which would stop a worker with no terminal: log the await
        # chains instead (SIGUSR1 keeps mode's own dump of the task stacks).
        log.warning("SIGUSR2: the await chain of every unfinished task follows")
        log_unfinished(self.loop)

    def _stalled(self) -> None:
        log.error(
            "the graceful stop did not finish within %.0f s (DIALWATCH_STOP_TIMEOUT_S); "
            "exiting: the next owner re-applies what was in flight",
            self.stop_timeout_s,
        )
        log_unfinished(self.loop)
        logging.shutdown()
        os._exit(STALLED_EXIT)
