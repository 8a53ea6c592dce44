"""One stream of container events from shoal-runtimed, routed to the task managers by task ID.

The worker holds exactly one ``GET /events`` stream (``ContainerEvents.run``), however many tasks the
node runs: no per-container connection, nothing per container but a dict entry. Each event is
applied to an index in O(1): ``by_container`` (container ID -> ``Observed``) and ``by_task`` (task
ID, from the container's task label -> container ID); the task's watcher (its TaskManager) is then
called with the container's new ``Observed``.

Resynchronisation: the stream is opened first, then containers are listed, and the list replaces
the index (containers missing from it are reported ``removed``). Events queued between the
subscription and the list are applied after it; ``Observed.merge`` keeps them from moving a
container's state backwards, so late or out-of-order events are harmless. The same happens after
any lost stream (runtimed restarted, cut off for falling behind): reconnect with backoff, list,
carry on. ``connected`` is set while the index is in sync; ``error`` says why it is not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import Callable

from agent_runtime.api import ATTACHMENT_LABEL, TASK_LABEL, ContainerInfo, ShoalRuntimeError
from common.backoff import Backoff

log = logging.getLogger(__name__)

CREATED, RUNNING, EXITED, REMOVED = "created", "running", "exited", "removed"
_RANK = {CREATED: 0, RUNNING: 1, EXITED: 2, REMOVED: 3}
RECONNECT = (0.1, 2.0)  # backoff between stream attempts: first, max


@dataclass(frozen=True)
class Observed:
    """What the runtime last said about one container of a task."""

    container_id: str
    task_id: str = ""
    status: str = CREATED  # created | running | exited | removed
    exit_code: int = 0
    oom_killed: bool = False
    pid: int = 0
    error: str = ""
    health: str = ""  # while running with a health check: starting | healthy | unhealthy
    attachment_id: str = ""  # a one-off container's swarm network attachments (ATTACHMENT_LABEL, comma-separated)

    def attachment_ids(self) -> list[str]:
        return [a for a in self.attachment_id.split(",") if a]

    def merge(self, newer: "Observed") -> "Observed":
        """``newer`` unless it would move the container backwards (a late event): a task's
        container goes created -> running -> exited -> removed and is never started twice."""
        if _RANK[newer.status] < _RANK[self.status]:
            return self
        if newer.status == self.status == RUNNING:
            # an event carries no pid, a start event no health: keep what the list/start said
            return replace(newer, pid=newer.pid or self.pid, health=newer.health or self.health)
        return newer

    @classmethod
    def from_info(cls, info: ContainerInfo) -> "Observed":
        st = info.state
        status = st.status if st.status in _RANK else (REMOVED if st.status == "removing" else CREATED)
        return cls(container_id=info.id, task_id=info.config.labels.get(TASK_LABEL, ""), status=status,
                   attachment_id=info.config.labels.get(ATTACHMENT_LABEL, ""),
                   exit_code=st.exit_code, oom_killed=st.oom_killed, pid=st.pid, error=st.error,
                   health=st.health.status if st.health is not None and status == RUNNING else "")


def observed_from_event(ev: dict) -> Observed | None:
    """The container state an event says, or None for an event that changes none (kill, oom...)."""
    if ev.get("Type") != "container":
        return None
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    base = Observed(container_id=actor.get("ID", ""), task_id=attrs.get(TASK_LABEL, ""),
                    attachment_id=attrs.get(ATTACHMENT_LABEL, ""))
    action = ev.get("Action", "")
    if action == "create":
        return base
    if action == "start":
        return replace(base, status=RUNNING)
    if action == "die":
        code = attrs.get("exitCode", "0")
        return replace(base, status=EXITED, exit_code=int(code) if code.lstrip("-").isdigit() else -1,
                       oom_killed=attrs.get("oomKilled") == "true")
    if action == "destroy":
        return replace(base, status=REMOVED)
    if action.startswith("health_status: "):
        return replace(base, status=RUNNING, health=action.removeprefix("health_status: "))
    return None


Watcher = Callable[[Observed], None]


class ContainerEvents:
    """The worker's view of its containers, kept current by one event stream."""

    def __init__(self, runtime, reconnect: tuple[float, float] = RECONNECT) -> None:
        self._runtime = runtime
        self._reconnect = reconnect
        self.by_container: dict[str, Observed] = {}
        self.by_task: dict[str, str] = {}
        self._watchers: dict[str, Watcher] = {}
        self._on_resync: list[Callable[[], None]] = []
        self._on_unclaimed: list[Watcher] = []
        self._on_removed: list[Watcher] = []
        self.connected = asyncio.Event()
        self.error = ""  # why the runtime is not reachable ("" while connected)
        self.resyncs = 0
        self.events = 0

    # -- the index -------------------------------------------------------------------------
    def observed(self, task_id: str) -> Observed | None:
        cid = self.by_task.get(task_id)
        return self.by_container.get(cid) if cid else None

    def watch(self, task_id: str, watcher: Watcher) -> None:
        self._watchers[task_id] = watcher

    def unwatch(self, task_id: str) -> None:
        self._watchers.pop(task_id, None)

    def on_resync(self, callback: Callable[[], None]) -> None:
        """``callback()`` after every resync (the index then lists exactly runtimed's containers)."""
        self._on_resync.append(callback)

    def on_unclaimed(self, callback: Watcher) -> None:
        """``callback(observed)`` for a change of a task's container that no watcher claims."""
        self._on_unclaimed.append(callback)

    def on_removed(self, callback: Watcher) -> None:
        """``callback(observed)`` when any container leaves the index (removed, or gone at a resync)."""
        self._on_removed.append(callback)

    def attached(self, attachment_id: str) -> bool:
        """Whether a container of this network attachment exists."""
        return any(attachment_id in o.attachment_ids() for o in self.by_container.values())

    def apply(self, new: Observed) -> Observed:
        """Fold one observation into the index and tell the task's watcher; returns the result."""
        old = self.by_container.get(new.container_id)
        if old is not None:
            merged = old.merge(replace(new, task_id=new.task_id or old.task_id,
                                       attachment_id=new.attachment_id or old.attachment_id))
        else:
            merged = new
        if merged.status == REMOVED:
            if self.by_container.pop(merged.container_id, None) is not None:
                for callback in self._on_removed:
                    callback(merged)
            if merged.task_id and self.by_task.get(merged.task_id) == merged.container_id:
                del self.by_task[merged.task_id]
        else:
            self.by_container[merged.container_id] = merged
            if merged.task_id:
                self.by_task[merged.task_id] = merged.container_id
        if merged != old and merged.task_id:
            watcher = self._watchers.get(merged.task_id)
            if watcher is not None:
                watcher(merged)
            else:
                for callback in self._on_unclaimed:
                    callback(merged)
        return merged

    def apply_event(self, ev: dict) -> None:
        self.events += 1
        new = observed_from_event(ev)
        if new is not None and new.container_id:
            self.apply(new)

    def resync(self, containers: list[ContainerInfo]) -> None:
        """Replace the index with a full list: what is not in it has been removed."""
        listed = {info.id: Observed.from_info(info) for info in containers}
        for cid in list(self.by_container):
            if cid not in listed:
                self.apply(replace(self.by_container[cid], status=REMOVED))
        for obs in listed.values():
            old = self.by_container.get(obs.container_id)
            # The list is the truth at this moment, even where it contradicts an earlier event.
            if old is not None and _RANK[obs.status] < _RANK[old.status]:
                self.by_container[obs.container_id] = obs
            self.apply(obs)
        self.resyncs += 1
        for callback in list(self._on_resync):
            callback()

    # -- the stream ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Hold the stream until cancelled; reconnect and resync whenever it is lost."""
        backoff = Backoff(*self._reconnect, jitter=0.2)
        while True:
            started = time.monotonic()
            stream = None
            try:
                stream = await self._runtime.events_stream()
                containers = await self._runtime.list(all=True)
                # In sync from here: the resync's callbacks (the worker's sweep, the attachments'
                # reconcile) act only on a connected index. Set after them, a complete assignment
                # set that came before the stream left the leaked attachments for good.
                self.connected.set()
                self.resync(containers)
                if self.error:
                    log.warning("shoal-runtimed is reachable again; %d containers resynchronised",
                                len(self.by_container))
                self.error = ""
                async for ev in stream:
                    self.apply_event(ev)
                reason = "shoal-runtimed ended the event stream"
            except ShoalRuntimeError as err:
                reason = str(err)
            except (OSError, ValueError) as err:
                reason = f"event stream: {err!r}"
            finally:
                if stream is not None:
                    stream.close()
            self.connected.clear()
            if reason != self.error:
                log.warning("container events: %s; reconnecting", reason)
            self.error = reason
            if time.monotonic() - started > 10:
                backoff.reset()   # it held for a while: this is a new outage
            await asyncio.sleep(backoff.next())
