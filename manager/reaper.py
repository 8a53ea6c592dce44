"""The task reaper (leader only): deletes tasks nobody needs any more, SwarmKit's taskreaper.

What it deletes (``tasks_to_reap``, pure):

* a task whose desired state is REMOVE, or whose service no longer exists, once no worker runs
  it: its status is COMPLETE or later (the worker reported it stopped), or it was never placed,
  or its node is DOWN or gone;
* a network attachment task (a one-off container's, no service) only once its node is gone
  (DetachNetwork deletes the others);
* in each slot of a live service (a replica number, or the node of a global task), the oldest
  finished tasks beyond the cluster's task history limit
  (``cluster.spec.orchestration.task_history_retention_limit``, default 5) — never a slot's
  newest task, never one that may still run.

It never deletes a task that may still be running. The orchestrator's plans do the same work
as they go (they prune history and delete removed tasks once stopped); the reaper catches what
they leave: tasks of services removed while no orchestrator ran, a history limit lowered,
tasks whose node went away. So that it does not race the orchestrator for the same deletions
it looks only ``REAP_INTERVAL`` after a relevant change (SwarmKit's 250 ms).

Deletes are compare-and-set on the version read, batched in changes of at most 200 actions.
Runs on the store's loop; ``run()`` until cancelled, closing its watch in ``finally``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Callable, Iterable

from manager.orchestrator import history_retention, prune_history
from manager.orchestrator.task import is_alive, is_runnable
from manager.state import Kind, ObjectCreated, ObjectDeleted, ObjectUpdated, ReadView
from manager.storeloop import StoreLoop
from proto import objects_pb2

log = logging.getLogger(__name__)

REAP_INTERVAL = 0.25
WATCHED = (Kind.TASK, Kind.SERVICE, Kind.NODE, Kind.CLUSTER)


def has_stopped(task: objects_pb2.Task, nodes: dict[str, objects_pb2.Node]) -> bool:
    """No worker runs ``task``: it reported a final state, was never placed, or its node is
    DOWN or gone."""
    return task.status.state >= objects_pb2.COMPLETE or not is_alive(task, nodes)


def slot_key(task: objects_pb2.Task) -> tuple[str, int, str]:
    """A task's slot: its service and replica number, or its node for global tasks."""
    return (task.service_id, task.slot, "" if task.slot else task.node_id)


def tasks_to_reap(tasks: Iterable[objects_pb2.Task], service_ids: frozenset[str] | set[str],
                  nodes: Iterable[objects_pb2.Node], retention: int) -> list[tuple[objects_pb2.Task, str]]:
    """The tasks to delete and why (see the module docstring), in a stable order. Pure."""
    nodes_by_id = {n.id: n for n in nodes}
    doomed: dict[str, tuple[objects_pb2.Task, str]] = {}
    slots: dict[tuple, list[objects_pb2.Task]] = defaultdict(list)
    for task in tasks:
        if task.spec.HasField("attachment"):
            # A one-off container's network attachment: DetachNetwork deletes it; the reaper
            # only clears those whose node left the cluster.
            if task.node_id not in nodes_by_id:
                doomed[task.id] = (task, "its node was removed")
            continue
        orphan = task.service_id not in service_ids
        if (orphan or task.desired_state == objects_pb2.REMOVE) and has_stopped(task, nodes_by_id):
            why = "its service was removed" if orphan else "it was removed and has stopped"
            doomed[task.id] = (task, why)
        elif not orphan:
            slots[slot_key(task)].append(task)
    for key, members in slots.items():
        if len(members) <= retention:
            continue
        for task in prune_history(members, retention, nodes_by_id):
            if not is_runnable(task):
                doomed.setdefault(task.id, (task, f"task history of its slot beyond {retention}"))
    return [doomed[k] for k in sorted(doomed)]


def event_matters(event) -> bool:
    """Whether an event may make a task reapable (the reaper's own deletions do not)."""
    kind, obj = event.kind, event.obj
    if kind is Kind.TASK:
        if isinstance(event, ObjectDeleted):
            return False
        if isinstance(event, ObjectCreated):
            return True         # a slot's history grew
        old = event.old
        return (obj.status.state >= objects_pb2.COMPLETE > old.status.state
                or obj.desired_state != old.desired_state)
    if kind is Kind.SERVICE:
        return isinstance(event, ObjectDeleted)
    if kind is Kind.NODE:
        return isinstance(event, ObjectDeleted) or (
            isinstance(event, ObjectUpdated) and obj.status.state != event.old.status.state)
    if kind is Kind.CLUSTER:
        return not isinstance(event, ObjectUpdated) or \
            obj.spec.orchestration != event.old.spec.orchestration
    return False


class TaskReaper(StoreLoop):
    """Deletes finished tasks nobody needs. See the module docstring."""

    name = "task reaper"
    watched = WATCHED
    window = REAP_INTERVAL

    def __init__(self, store, clock: Callable[[], float] = time.time) -> None:
        super().__init__(store, clock)
        self._due = True
        self.deleted = 0        # tasks deleted so far (for tests and metrics)

    def _resync(self, view) -> None:
        self._due = True

    def _has_work(self) -> bool:
        return self._due

    def _note(self, event) -> None:
        self._due = self._due or event_matters(event)

    async def _pass(self) -> None:
        if not self._due:
            return
        self._due = False
        view: ReadView = self._store.view()
        doomed = tasks_to_reap(view.tasks(), view.ids(Kind.SERVICE), view.nodes(),
                               history_retention(view.cluster()))
        if not doomed:
            return

        def fn(tx):
            deleted = []
            for task, why in doomed:
                current = tx.get(Kind.TASK, task.id)
                if current is None or current.meta.version != task.meta.version:
                    continue
                tx.delete(task)
                deleted.append((task, why))
            return deleted

        written, deleted = await self._propose(fn, f"the deletion of {len(doomed)} task(s)")
        if not written:
            self._due = True
            return
        self.deleted += len(deleted)
        for task, why in deleted:
            log.info("deleted task %s (%s): %s", task.id, task.annotations.name or task.service_id, why)
        if len(deleted) < len(doomed):
            self._due = True
