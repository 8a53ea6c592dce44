"""Container events: what happened to which container, published once and streamed to every subscriber.

The format is Docker's (``docker events --format '{{json .}}'``), one JSON object per line:

    {"Type": "container", "Action": "die", "scope": "local", "time": 1764748800,
     "timeNano": 1764748800123456789,
     "Actor": {"ID": "<64 hex>", "Attributes": {"name": "web.1.x", "image": "busybox", "exitCode": "137",
                                                "oomKilled": "true", "<label>": "<value>", ...}}}

Actions, in the order one container can produce them: ``create``, ``start``, ``health_status: healthy``
/ ``health_status: unhealthy`` (on each change; runtimed runs the checks), ``kill`` (attribute ``signal``), ``oom``,
``die`` (``exitCode``; ``oomKilled`` is Shoal's addition), ``stop``, ``destroy``. Every event carries the
container's ``name``, ``image`` and labels as attributes, so a subscriber can route it without asking.

Delivery: every subscriber has its own bounded queue. Events of one daemon are delivered in the order
they were published. A subscriber that falls ``MAX_BACKLOG`` events behind is cut off (its stream
ends) instead of holding memory: it reconnects and resynchronises from a container list, which it has
to do after any reconnect anyway (events are not kept for replay).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

log = logging.getLogger(__name__)

MAX_BACKLOG = 16384

CREATE, START, KILL, OOM, DIE, STOP, DESTROY = "create", "start", "kill", "oom", "die", "stop", "destroy"
HEALTH_STATUS = "health_status"  # Action is "health_status: <status>", as in Docker


def event(action: str, container_id: str, attributes: dict[str, str], when_ns: int | None = None) -> dict[str, Any]:
    """One container event in Docker's JSON form."""
    ns = time.time_ns() if when_ns is None else when_ns
    return {"Type": "container", "Action": action, "scope": "local", "time": ns // 10**9, "timeNano": ns,
            "Actor": {"ID": container_id, "Attributes": attributes}}


class _Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict | None] = asyncio.Queue()
        self.overflowed = False


class EventBus:
    """Fan-out of events to subscribers; use from one event loop."""

    def __init__(self, max_backlog: int = MAX_BACKLOG) -> None:
        self._subscribers: set[_Subscriber] = set()
        self._max_backlog = max_backlog
        self.published = 0
        self.counts: Counter[str] = Counter()   # events by action (agent_runtime.metrics)

    def publish(self, action: str, container_id: str, attributes: dict[str, str]) -> dict[str, Any]:
        ev = event(action, container_id, attributes)
        self.published += 1
        self.counts[action.split(":")[0]] += 1
        for sub in list(self._subscribers):
            if sub.queue.qsize() >= self._max_backlog:
                log.warning("event subscriber is %d events behind: ending its stream (it resynchronises)",
                            sub.queue.qsize())
                sub.overflowed = True
                self._subscribers.discard(sub)
                sub.queue.put_nowait(None)
            else:
                sub.queue.put_nowait(ev)
        return ev

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> _Subscriber:
        sub = _Subscriber()
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        self._subscribers.discard(sub)
