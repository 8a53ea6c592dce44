"""Watch: a bounded queue of store events consumed from one asyncio loop.

The store posts events from whatever thread commits (PySyncObj's tick thread, or the loop itself
with a LocalProposer), always after the commit and always in commit order; delivery hops onto the
watcher's loop with ``call_soon_threadsafe``. Posting never blocks: a watcher with more than
``maxsize`` undelivered commits is closed with WatchOverflow and must re-read the store.

The bound counts commits, not events: a commit's events travel as one batch, so one commit of any
size (a snapshot install of 50,000 objects, a change of 200 actions) is delivered whole, and a
component busy in its own pass of many changes (each at most 200 actions) falls behind by
commits. Counting events closed every leader component's watch when one pass wrote 20,000 tasks
(bench/schedule.py), and each then rescanned the whole store (docs/leader-scale.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable

from .errors import WatchClosed, WatchOverflow
from .events import ChangeCommitted, StoreEvent
from .kinds import Kind

log = logging.getLogger(__name__)

DEFAULT_WATCH_QUEUE = 1_000     # commits pending: at most 200,000 events of changes split by Store.update


class Watch:
    """An async iterator over store events (``async for event in watch``).

    Created by ``MemoryStore.watch``/``Store.watch`` on a running loop; iterate it on that loop.
    Iteration ends after ``close()``; it raises WatchOverflow (a WatchClosed) if the watcher fell
    behind. ``close()`` may be called from any thread.
    """

    def __init__(self, kinds: Iterable[Kind] | None, *, maxsize: int, commits: bool,
                 loop: asyncio.AbstractEventLoop, on_close: Callable[[Watch], None]) -> None:
        self.kinds = frozenset(kinds) if kinds is not None else None
        self.commits = commits
        self.maxsize = maxsize
        self._loop = loop
        self._on_close = on_close
        self._buffer: deque[list[StoreEvent]] = deque()     # one batch per commit
        self._head: list[StoreEvent] = []                    # the batch being taken, from _taken on
        self._taken = 0
        self._waiter: asyncio.Future[None] | None = None
        self._posted = 0      # commits; written only by the committing thread, under the store lock
        self._consumed = 0    # commits; written only by the loop thread
        self._closed = False
        self._error: WatchClosed | None = None
        self._detached = threading.Event()

    def __repr__(self) -> str:
        kinds = "all" if self.kinds is None else ",".join(sorted(k.field for k in self.kinds))
        return f"Watch(kinds={kinds}, pending={self.pending}, closed={self._closed})"

    @property
    def pending(self) -> int:
        """Commits posted whose events the consumer has not begun to take."""
        return self._posted - self._consumed

    @property
    def closed(self) -> bool:
        return self._closed

    def wants(self, kind: Kind) -> bool:
        """Whether events about ``kind`` go to this watch."""
        return self.kinds is None or kind in self.kinds

    # -- producer side (any thread, called with the store lock held) ------------------------

    def _post(self, events: list[StoreEvent], version: int, kinds: frozenset[Kind] | None = None) -> bool:
        """Queue this commit's matching events (``kinds``: the kinds among them, if known); False if
        the watch is gone and should be dropped."""
        if self._detached.is_set():
            return False
        if self.kinds is None or (kinds is not None and kinds <= self.kinds):
            # Every event is wanted: the commit's list itself, shared by such watches (nothing
            # changes a delivered batch), copied only to add the commit marker.
            batch = [*events, ChangeCommitted(version)] if self.commits else events
        else:
            if kinds is not None and self.kinds.isdisjoint(kinds):
                batch = []  # e.g. a node watch and a commit of 200 task updates: no event to look at
            else:
                batch = [e for e in events if e.kind in self.kinds]
            if self.commits:
                batch.append(ChangeCommitted(version))
        if not batch:
            return True
        self._posted += 1
        overflow = self.pending > self.maxsize
        try:
            if overflow:
                self._detached.set()
                self._loop.call_soon_threadsafe(
                    self._shut, WatchOverflow(f"store watch fell behind: more than {self.maxsize} "
                                              f"commits pending at store version {version}"))
                return False
            self._loop.call_soon_threadsafe(self._deliver, batch)
        except RuntimeError:  # the watcher's loop is closed: nobody will ever read this
            self._detached.set()
            self._closed = True
            return False
        return True

    # -- consumer side (the watcher's loop) ------------------------------------------------

    def _deliver(self, batch: list[StoreEvent]) -> None:
        if self._closed:
            return
        self._buffer.append(batch)
        self._wake()

    def _shut(self, error: WatchClosed | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._error = error
        self._buffer.clear()
        self._head = []
        self._taken = 0
        if error is not None:
            log.warning("%s", error)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> StoreEvent:
        """The next event. Once closed and drained: raises WatchOverflow or WatchClosed (the store
        closed it), or WatchClosed("store watch was closed") after the owner's ``close()``."""
        while self._taken >= len(self._head) and not self._buffer:
            if self._closed:
                raise self._error if self._error is not None else WatchClosed("store watch was closed")
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._take()

    def get_nowait(self) -> StoreEvent | None:
        """The next already-delivered event, or None; raises like ``get`` once closed and drained."""
        if self._taken < len(self._head) or self._buffer:
            return self._take()
        if self._closed and self._error is not None:
            raise self._error
        return None

    def _take(self) -> StoreEvent:
        if self._taken >= len(self._head):
            self._head = self._buffer.popleft()
            self._taken = 0
            self._consumed += 1
        event = self._head[self._taken]
        self._taken += 1
        return event

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> StoreEvent:
        try:
            return await self.get()
        except WatchClosed as exc:
            if self._error is None or exc is not self._error:
                raise StopAsyncIteration from None
            raise

    def close(self) -> None:
        """Stop delivery and end iteration. Idempotent; callable from any thread."""
        if self._detached.is_set() and self._closed:
            return
        self._detached.set()
        self._on_close(self)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._shut(None)
        else:
            try:
                self._loop.call_soon_threadsafe(self._shut, None)
            except RuntimeError:
                self._closed = True

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
