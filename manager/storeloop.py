"""The loop every leader component runs: watch the store, batch what changed, act in passes.

The allocator, orchestrator, scheduler and task reaper differ in what an event means and what a
pass does; how they wait is the same, and lives here:

* ``run()`` starts a watch, calls ``_start(view)`` once, then alternates ``_pass()`` and waiting.
  It runs until cancelled and closes its watch in ``finally``.
* Waiting: while ``_has_work()`` is false it feeds events from ``_next_event()`` to ``_note()``;
  after the first one that made work it sleeps ``window`` seconds and drains whatever arrived
  meanwhile, so a burst of changes is handled in one pass. A component with timers says when it
  next wants a pass in ``_wake_at()``; the wait then ends at that time (looking at the clock at
  least every ``recheck`` seconds, so a fake or stepped clock is noticed) even without an event.
* A watch that overflows (``WatchClosed``) is replaced and ``_resync(view)`` rebuilds the
  component's notion of what is dirty from the store.
* ``_propose(fn, what)`` writes through ``store.update(fn, allow_split=True)``: a conflict or a
  failed proposal is logged and returns ``(False, None)`` (after a failure the next wait first
  backs off ``ERROR_BACKOFF``), so callers only decide what to look at again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from manager import stats
from manager.state import Kind, ReadView, StoreError, VersionConflict, WatchClosed

log = logging.getLogger(__name__)

ERROR_BACKOFF = 0.5     # after a proposal failed (no quorum, lost leadership)


class StoreLoop:
    """Base class of the leader's store-driven components (see the module docstring)."""

    name = "component"
    watched: tuple[Kind, ...] = ()
    window = 0.02
    recheck = 0.1

    def __init__(self, store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._backoff = 0.0

    # -- what subclasses provide -------------------------------------------------------------
    async def _start(self, view: ReadView, watch) -> None:
        """Once, before the first pass (default: resync from ``view``)."""
        self._resync(view)

    def _resync(self, view: ReadView) -> None:
        """Mark everything in ``view`` that may need work (start, and after a watch overflow)."""

    def _has_work(self) -> bool:
        raise NotImplementedError

    def _note(self, event) -> None:
        """Record what ``event`` means for the next pass."""
        raise NotImplementedError

    async def _pass(self) -> None:
        raise NotImplementedError

    def _wake_at(self) -> float | None:
        """When (on ``clock``) a pass is wanted even if no event comes; None: only on events."""
        return None

    async def _next_event(self, watch):
        """The next event, or None once ``_wake_at()`` may have come."""
        wake_at = self._wake_at()
        if wake_at is None:
            return await watch.get()
        remaining = wake_at - self._clock()
        if remaining <= 0:
            return None
        # Not asyncio.wait_for: on 3.11 it can swallow a cancellation racing with the result.
        getter = asyncio.ensure_future(watch.get())
        getter.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            done, _ = await asyncio.wait({getter}, timeout=min(remaining, self.recheck))
        finally:
            if not getter.done():
                getter.cancel()
        return getter.result() if done else None

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        view, watch = self._store.view_and_watch(kinds=self.watched)
        log.info("%s started", self.name)
        try:
            await self._start(view, watch)
            while True:
                started = time.perf_counter()
                await self._pass()
                stats.PASS_SECONDS[self.name].observe(time.perf_counter() - started)
                watch = await self._wait(watch)
        finally:
            watch.close()
            log.info("%s stopped", self.name)

    async def _wait(self, watch):
        """Sleep until there is something to do; returns the watch (a new one after overflow)."""
        if self._backoff:
            await asyncio.sleep(self._backoff)
            self._backoff = 0.0
        try:
            while not self._has_work():
                event = await self._next_event(watch)
                if event is None:
                    break
                self._note(event)
            await asyncio.sleep(self.window)
            while (event := watch.get_nowait()) is not None:
                self._note(event)
        except WatchClosed as closed:
            log.warning("%s watch closed (%s); starting over from the store", self.name, closed)
            watch.close()
            await asyncio.sleep(self.window)
            view, watch = self._store.view_and_watch(kinds=self.watched)
            self._resync(view)
        return watch

    async def _propose(self, fn: Callable[[Any], Any], what: str) -> tuple[bool, Any]:
        """Apply ``fn`` in a (possibly split) store change: ``(True, fn's result)`` once
        committed, ``(False, None)`` after a conflict or a failed proposal (logged)."""
        try:
            return True, await self._store.update(fn, allow_split=True)
        except VersionConflict as conflict:
            log.debug("%s: writing %s conflicted (%s); looking again", self.name, what, conflict)
        except StoreError as err:
            log.warning("%s could not write %s: %s", self.name, what, err)
            self._backoff = ERROR_BACKOFF
        return False, None
