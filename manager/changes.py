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
        try:
            await asyncio.wait_for(self._watch.get(), timeout)
        except asyncio.TimeoutError:
            return False
        except WatchClosed:
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
