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

And what it marks ORPHANED (``tasks_to_orphan``, pure; Docker's state for "the node this task
was on has been unavailable"): a task no longer wanted (desired state SHUTDOWN or REMOVE) that
never reported an end (ASSIGNED to RUNNING) on a node that is DOWN or gone. Nobody would ever
report for it, so without this it stays in the store for good, in no slot's prunable history,
holding its overlay addresses (a full subnet after enough node failures). Once ORPHANED it has
ended: the allocator frees its addresses and history pruning deletes it like any ended task. A
node that comes back stops and removes its container (desired SHUTDOWN, or no longer assigned);
a later status report cannot move the task back (status only moves forward).

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
from collections import Counter, defaultdict
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


def tasks_to_orphan(tasks: Iterable[objects_pb2.Task], nodes: Iterable[objects_pb2.Node]
                    ) -> list[tuple[objects_pb2.Task, str]]:
    """Unwanted tasks stuck between ASSIGNED and RUNNING on a DOWN or removed node, and why, in
    a stable order (see the module docstring). Pure."""
    states = {n.id: n.status.state for n in nodes}
    out = []
    for task in tasks:
        if task.desired_state <= objects_pb2.RUNNING or task.spec.HasField("attachment"):
            continue
        if not (objects_pb2.ASSIGNED <= task.status.state <= objects_pb2.RUNNING) or not task.node_id:
            continue
        state = states.get(task.node_id)
        if state is None:
            out.append((task, f"node {task.node_id} was removed"))
        elif state == objects_pb2.NodeStatus.DOWN:
            out.append((task, f"node {task.node_id} is down"))
    return sorted(out, key=lambda pair: pair[0].id)


def orphaned(task: objects_pb2.Task, why: str, now: float) -> objects_pb2.Task:
    """A copy of ``task`` with status ORPHANED (the message says why)."""
    new = objects_pb2.Task()
    new.CopyFrom(task)
    new.status.state = objects_pb2.ORPHANED
    new.status.message = f"task orphaned: {why}"
    new.status.err = ""
    new.status.timestamp = now
    return new


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
        self.orphaned = 0       # tasks marked ORPHANED so far
        # tasks per slot and the history limit, kept from events: a created task makes a pass due
        # only when its slot now holds more than the limit (a replacement beyond the history),
        # not for every task of a scale-up, each of which cost a pass over every task.
        self._slots: Counter[tuple] = Counter()
        self._retention = 0

    def _resync(self, view) -> None:
        self._due = True
        self._slots = Counter(slot_key(t) for t in view.tasks())
        self._retention = history_retention(view.cluster())

    def _has_work(self) -> bool:
        return self._due

    def _note(self, event) -> None:
        if event.kind is Kind.TASK:
            obj = event.obj
            if isinstance(event, ObjectCreated):
                key = slot_key(obj)
                self._slots[key] += 1
                self._due = self._due or self._slots[key] > max(self._retention, 1) or self._homeless(obj)
                return
            if isinstance(event, ObjectDeleted):
                self._forget(slot_key(obj))
                return
            before, after = slot_key(event.old), slot_key(obj)
            if before != after:         # a global task placed: its slot is its node
                self._forget(before)
                self._slots[after] += 1
                self._due = self._due or self._slots[after] > max(self._retention, 1)
        elif event.kind is Kind.CLUSTER:
            self._retention = history_retention(event.obj)
        self._due = self._due or event_matters(event)

    def _homeless(self, task: objects_pb2.Task) -> bool:
        """A task created for a service, or (an attachment) on a node, that is already gone."""
        view = self._store.view()
        if task.service_id:
            return view.get(Kind.SERVICE, task.service_id) is None
        return bool(task.node_id) and view.get(Kind.NODE, task.node_id) is None

    def _forget(self, key: tuple) -> None:
        count = self._slots[key] - 1
        if count > 0:
            self._slots[key] = count
        else:
            del self._slots[key]

    async def _pass(self) -> None:
        if not self._due:
            return
        self._due = False
        view: ReadView = self._store.view()
        tasks, nodes = view.tasks(), view.nodes()
        doomed = tasks_to_reap(tasks, view.ids(Kind.SERVICE), nodes, history_retention(view.cluster()))
        doomed_ids = {task.id for task, _ in doomed}
        stuck = [(t, why) for t, why in tasks_to_orphan(tasks, nodes) if t.id not in doomed_ids]
        if not doomed and not stuck:
            return
        now = self._clock()

        def fn(tx):
            deleted, marked = [], []
            for task, why in doomed:
                current = tx.get(Kind.TASK, task.id)
                if current is None or current.meta.version != task.meta.version:
                    continue
                tx.delete(task)
                deleted.append((task, why))
            for task, why in stuck:
                current = tx.get(Kind.TASK, task.id)
                if current is None or current.meta.version != task.meta.version:
                    continue
                tx.update(orphaned(task, why, now))
                marked.append((task, why))
            return deleted, marked

        written, result = await self._propose(
            fn, f"the deletion of {len(doomed)} and orphaning of {len(stuck)} task(s)")
        if not written:
            self._due = True
            return
        deleted, marked = result
        self.deleted += len(deleted)
        self.orphaned += len(marked)
        for task, why in deleted:
            log.info("deleted task %s (%s): %s", task.id, task.annotations.name or task.service_id, why)
        for task, why in marked:
            log.info("task %s (%s) orphaned: %s", task.id, task.annotations.name or task.service_id, why)
        if len(deleted) < len(doomed) or len(marked) < len(stuck):
            self._due = True
