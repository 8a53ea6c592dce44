"""Waiting for "something changed" on a store watch, for components that re-read the
view on every wake-up rather than processing events one by one."""

from __future__ import annotations

import asyncio

from manager.state import Kind, WatchClosed


class ChangeSignal:
    """Wakes its owner when objects of ``kinds`` change; survives watch overflow.

    ``await signal.wait(timeout)`` returns True on a change (all pending events are
    consumed at once), False on timeout. Use from the store's loop; ``close()`` in finally.
    """

    def __init__(self, store, kinds: list[Kind]):
        self._store = store
        self._kinds = kinds
        self._watch = store.watch(kinds=kinds)

    async def wait(self, timeout: float) -> bool:
        # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that races with
        # the result, which would keep a cancelled component running.
        getter = asyncio.ensure_future(self._watch.get())
        getter.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "unretrieved"
        try:
            done, _ = await asyncio.wait({getter}, timeout=timeout)
        finally:
            if not getter.done():
                getter.cancel()
        if not done:
            return False
        if getter.exception() is not None:
            if not isinstance(getter.exception(), WatchClosed):
                raise getter.exception()
            self._watch.close()
            self._watch = self._store.watch(kinds=self._kinds)
            return True
        try:
            while self._watch.get_nowait() is not None:
                pass
        except WatchClosed:
            self._watch.close()
            self._watch = self._store.watch(kinds=self._kinds)
        return True

    def close(self) -> None:
        self._watch.close()
