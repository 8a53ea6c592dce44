"""The scheduler component (leader only): places PENDING tasks on nodes with the pure
``schedule()`` and writes ``planned_task_changes()`` to the store.

* It watches tasks and nodes. Every event also goes to what the pass reads, the NodeSet
  (nodeset.py: each node and what its tasks hold, and the PENDING tasks), built from the store
  once at start (and after a watch overflow) and then kept from events, so a pass costs the
  tasks changed since the last one, the pending ones and one info per node, not a read of
  every task. A pass is due when a task becomes (or stays) PENDING, when node
  resources may have been freed or taken (a task placed, stopped, deleted, or its desired state
  crossing RUNNING), or when a node appears, leaves or changes (state, availability, labels,
  resources). Unplaceable tasks are thereby retried exactly when the answer may change.
* Passes are coalesced: after the first relevant event it waits ``BATCH_WINDOW`` (20 ms) and
  drains the rest, so a burst of new tasks is placed in one pass and written in one change
  (several, in order, when more than 200 tasks move).
* Each write is a compare-and-set on the version the pass read: a task that moved on meanwhile
  (its desired state changed, say) is left out of the change and looked at again next pass; a
  change the store rejects makes the next pass start at once from fresh state.

A task that fits nowhere keeps status PENDING with the scheduler's explanation in
``status.message`` ("no suitable node (...)"), rewritten only when it changes.

Runs on the store's loop; ``run()`` until cancelled, closing its watch in ``finally``.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from manager.state import Kind, ObjectCreated, ObjectDeleted, ReadView
from manager.storeloop import StoreLoop
from proto import objects_pb2

from .nodeinfo import holds_node_resources
from .nodeset import NodeSet
from .schedule import planned_task_changes, schedule_on

log = logging.getLogger(__name__)

BATCH_WINDOW = 0.02
WATCHED = (Kind.TASK, Kind.NODE)
PENDING = objects_pb2.PENDING
ASSIGNED = objects_pb2.ASSIGNED
RUNNING = objects_pb2.RUNNING
_FAILED_STATES = (objects_pb2.FAILED, objects_pb2.REJECTED)


def task_event_matters(event) -> bool:
    """Whether a task event can change what ``schedule`` decides."""
    task = event.obj
    if isinstance(event, ObjectCreated):
        return task.status.state == PENDING
    if isinstance(event, ObjectDeleted):
        return task.status.state == PENDING or holds_node_resources(task)
    old = event.old
    state = task.status.state
    if state == PENDING:
        return True
    node_id = task.node_id
    if node_id != old.node_id:
        return True
    old_state = old.status.state
    if node_id:
        # holds_node_resources and counts_for_spread of both, on the same node (the most
        # common update, a status report, reads each field once)
        holds = ASSIGNED <= state <= RUNNING
        if holds != (ASSIGNED <= old_state <= RUNNING):
            return True
        if holds and (task.desired_state <= RUNNING) != (old.desired_state <= RUNNING):
            return True
    return state in _FAILED_STATES and old_state != state


def node_event_matters(event) -> bool:
    """Whether a node event can change placements (attachments and messages cannot)."""
    if isinstance(event, (ObjectCreated, ObjectDeleted)):
        return True
    node, old = event.obj, event.old
    return (node.spec != old.spec or node.status.state != old.status.state
            or node.description != old.description or node.role != old.role)


class Scheduler(StoreLoop):
    """Pending tasks × nodes → placements. See the module docstring."""

    name = "scheduler"
    watched = WATCHED
    window = BATCH_WINDOW

    def __init__(self, store, clock: Callable[[], float] = time.time) -> None:
        super().__init__(store, clock)
        self._due = True
        self._nodes = NodeSet()
        self.passes = 0     # passes that found pending tasks (for tests and metrics)

    def _resync(self, view: ReadView) -> None:
        self._nodes = NodeSet.build(view.nodes(), view.tasks())
        self._due = True

    def _has_work(self) -> bool:
        return self._due

    def _note(self, event) -> None:
        self._nodes.apply(event)
        if not self._due:
            self._due = task_event_matters(event) if event.kind is Kind.TASK else node_event_matters(event)

    async def _pass(self) -> None:
        if not self._due:
            return
        self._due = False
        pending = self._nodes.pending()
        if not pending:
            return
        self.passes += 1
        now = self._clock()
        plan = schedule_on(self._nodes.snapshot(now), list(pending.values()), now)
        changes = planned_task_changes(plan, pending, now)
        log.debug("scheduling pass: %d pending, %d assigned, %d unplaceable, %d shut down",
                  len(pending), len(plan.assignments), len(plan.unplaced), len(plan.shutdown))
        if not changes:
            return

        def fn(tx):
            skipped = 0
            for task in changes:
                current = tx.get(Kind.TASK, task.id)
                if current is None or current.meta.version != task.meta.version:
                    skipped += 1
                    continue
                tx.update(task)
            return skipped

        written, skipped = await self._propose(fn, f"{len(changes)} task change(s)")
        if not written or skipped:
            self._due = True
        if not written:
            return
        for task_id, node_id in plan.assignments:
            log.debug("task %s assigned to node %s", task_id, node_id)
        explained = [c for c in changes if c.id in plan.unplaced]
        if explained:
            log.info("%d task(s) cannot be placed: %s", len(explained), explained[0].status.message)
