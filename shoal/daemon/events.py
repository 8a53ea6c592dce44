"""`shoal events` on a node: this manager's cluster events merged with the local runtime's container
events (as `docker events` shows swarm events on a manager and local container events everywhere).

Past events (``since``) come from the manager's EventLog (manager.events); the runtime keeps none,
so container events start when the stream opens. With ``until`` in the past the stream ends after
the replay; in the future it ends when that time comes. A source that ends (the runtime restarts)
is logged and the stream goes on with the others; if every source is gone the stream ends.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Callable

Item = tuple[str, Any]   # ("event", dict) | ("error", message) | ("ended", source)

from manager.events import EventLog, matches

log = logging.getLogger(__name__)


async def _pump_log(queue: asyncio.Queue[dict[str, Any] | None], after_ns: int, out: asyncio.Queue[Item]) -> None:
    """Forward a subscription opened before the replay, skipping what the replay already sent."""
    while True:
        ev = await queue.get()
        if ev is None:       # this reader fell too far behind: say so, end
            await out.put(("error", "the event stream fell behind and was cut off; run shoal events again"))
            return
        if ev["timeNano"] > after_ns:
            await out.put(("event", ev))


async def _pump_runtime(runtime: Any, out: asyncio.Queue[Item]) -> None:
    try:
        async for ev in runtime.events():
            await out.put(("event", ev))
    except asyncio.CancelledError:
        raise
    except Exception as err:  # the runtime went away: cluster events go on
        log.info("container events ended: %s", err)
    await out.put(("ended", "runtime"))


async def stream(manager_events: EventLog | None, runtime: Any, since_ns: int, until_ns: int,
                 filters: dict[str, set[str]], clock: Callable[[], int] = time.time_ns
                 ) -> AsyncIterator[dict[str, Any]]:
    """Events in time order for the replay, then live, filtered; see the module docstring."""
    now = clock()
    # Subscribe before reading the replay, so nothing committed in between is lost.
    queue = manager_events.subscribe() if manager_events is not None else None
    last = 0
    try:
        if manager_events is not None and since_ns:
            for ev in manager_events.since(since_ns, until_ns or None):
                last = max(last, ev["timeNano"])
                if matches(ev, filters):
                    yield ev
        if until_ns and until_ns <= now:
            return
        out: asyncio.Queue[Item] = asyncio.Queue()
        pumps = []
        if queue is not None:
            pumps.append(asyncio.create_task(_pump_log(queue, last, out), name="events-cluster"))
        if runtime is not None:
            pumps.append(asyncio.create_task(_pump_runtime(runtime, out), name="events-runtime"))
        async for ev in _merge(out, pumps, until_ns, filters, clock):
            yield ev
    finally:
        if queue is not None and manager_events is not None:
            manager_events.unsubscribe(queue)


async def _merge(out: asyncio.Queue[Item], pumps: list[asyncio.Task[None]], until_ns: int,
                 filters: dict[str, set[str]], clock: Callable[[], int]) -> AsyncIterator[dict[str, Any]]:
    live = len(pumps)
    try:
        while live:
            timeout = (until_ns - clock()) / 1e9 if until_ns else None
            if timeout is not None and timeout <= 0:
                return
            try:
                what, item = await asyncio.wait_for(out.get(), timeout)
            except asyncio.TimeoutError:
                return
            if what == "ended":
                live -= 1
            elif what == "error":
                raise RuntimeError(item)
            elif matches(item, filters) and (not until_ns or item.get("timeNano", 0) <= until_ns):
                yield item
    finally:
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


def encode(ev: dict[str, Any]) -> str:
    return json.dumps(ev, separators=(",", ":"), sort_keys=False)
