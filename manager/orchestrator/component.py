"""The orchestrator component (leader only): keeps every service's tasks reconciled with the
pure ``reconcile()`` and applies the resulting Plans to the store.

Shape (SwarmKit's, with Nomad's pure reconciler):

* It watches services, tasks, nodes and the cluster object. Each event marks the services it
  affects *dirty*: a service event its service, a task event the task's service, a node change
  that matters (appeared, removed, state, availability, labels, role, description) or a change
  of the cluster's orchestration settings every service.
* Events are coalesced: after the first one it waits ``BATCH_WINDOW`` and drains the rest, then
  runs one pass over the dirty services, so a burst of events costs one pass per service and a
  busy cluster gets a pass at least every ~50 ms.
* A pass reconciles each dirty service (``reconcile_removed`` for a service that no longer
  exists but still has tasks) against one view, then writes the plans in batched store changes
  of at most 200 actions (split further by the store if they are large). Every update and delete
  is a compare-and-set on the version reconcile read; a plan whose objects moved on is skipped
  and its service reconciled again from fresh state on the next pass, as is every service of a
  change the store rejected.
* ``Plan.wake_at`` becomes a per-service timer (restart delays, update delays and monitor
  periods); a due timer marks its service dirty. Timers are measured on the injected clock and
  re-checked at least every ``TIMER_RECHECK`` seconds, so a fake clock that jumps is noticed.

Task creation times: a plan stamps each new task strictly after the newest task of its slot (the
slot's order depends on it); ``Tx.create`` restamps ``created_at`` from the store's clock, so the
plan's value is put back on the copy the transaction writes.

Runs on the store's loop; ``run()`` until cancelled, closing its watch in ``finally``.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from manager.ids import new_id
from manager.state import MAX_ACTIONS_PER_CHANGE, Kind, ObjectUpdated, ReadView
from manager.storeloop import StoreLoop
from proto import objects_pb2

from .plan import Plan
from .reconcile import history_retention, reconcile, reconcile_removed
from .task import why_node_unfit
from .update import ACTIVE_STATES

log = logging.getLogger(__name__)

BATCH_WINDOW = 0.02        # seconds to gather more events after the first one
TIMER_RECHECK = 0.1        # longest real sleep while a timer is pending (fake clocks jump)
WATCHED = (Kind.SERVICE, Kind.TASK, Kind.NODE, Kind.CLUSTER)


def node_fingerprint(node: objects_pb2.Node) -> tuple:
    """What of a node the orchestrators decide on (not its attachments, message or address)."""
    return (node.spec.SerializeToString(deterministic=True), node.status.state, node.role,
            node.description.SerializeToString(deterministic=True))


def task_change_matters(old: objects_pb2.Task, new: objects_pb2.Task,
                        service: objects_pb2.Service | None,
                        node_of: Callable[[str], objects_pb2.Node | None] | None = None) -> bool:
    """Whether a task update can change what ``reconcile`` decides for its service.

    Not: a task the orchestrator still wants running (desired state unchanged, at most RUNNING)
    moving forward between NEW and RUNNING on the same node and spec (the allocator's PENDING,
    every status a worker reports on the way to RUNNING) while its service has no rolling update
    in progress: reconcile counts such a task as one runnable task of its slot whatever its state
    (SwarmKit's replicated orchestrator ignores these too). Everything else matters: an ended
    task (restart), a new desired state, a new node (a move, or a placement on a node that became
    unfit), a new spec, any change during an update (it waits for tasks to run).
    Without this filter every status report of a 50,000-task service reconciled all of it.

    The scheduler's placement (no node -> a node) matters only when that node cannot keep the
    task (``why_node_unfit`` on ``node_of``'s current node: it changed after the scheduler read
    it); a node change that makes it unfit later marks every service dirty anyway. Each
    placement commit (200 tasks) used to reconcile the whole service: 50 reconciles of every
    task of a 10,000-task service while it was being placed (bench/scale.py, 30 % of the
    leader's samples). Without ``node_of`` every placement matters.
    """
    if service is None or service.update_status.state in ACTIVE_STATES:
        return True
    if not (old.desired_state == new.desired_state <= objects_pb2.RUNNING
            and old.status.state <= objects_pb2.RUNNING and new.status.state <= objects_pb2.RUNNING
            and old.spec_version == new.spec_version):
        return True
    if old.node_id == new.node_id:
        return False
    if old.node_id or node_of is None:
        return True             # a task that moved between nodes (no component does that)
    node = node_of(new.node_id)
    return why_node_unfit(new, {node.id: node} if node is not None else {}) is not None


def plan_size(plan: Plan) -> int:
    """How many store actions applying ``plan`` takes."""
    return len(plan.create) + len(plan.updated) + len(plan.delete) + (plan.service is not None)


class Orchestrator(StoreLoop):
    """Services → tasks, for every service mode. See the module docstring.

    ``clock`` gives "now" for decisions and timers; ``ids`` makes task ids.
    """

    name = "orchestrator"
    watched = WATCHED
    window = BATCH_WINDOW
    recheck = TIMER_RECHECK

    def __init__(self, store, clock: Callable[[], float] = time.time,
                 ids: Callable[[], str] = new_id) -> None:
        super().__init__(store, clock)
        self._ids = ids
        self._dirty: set[str] = set()
        self._timers: dict[str, float] = {}     # service id -> when to reconcile it again
        self.passes = 0                         # completed passes (for tests and metrics)

    def _has_work(self) -> bool:
        return bool(self._dirty)

    def _wake_at(self) -> float | None:
        return min(self._timers.values(), default=None)

    # -- what events mean ---------------------------------------------------------------------
    def _resync(self, view: ReadView) -> None:
        self._dirty.update(view.ids(Kind.SERVICE))
        self._dirty.update(sid for sid in view.task_service_ids() if sid)     # the index: no task scan

    def _note(self, event) -> None:
        kind = event.kind
        if kind is Kind.SERVICE:
            self._dirty.add(event.obj.id)
        elif kind is Kind.TASK:
            service_id = event.obj.service_id
            if service_id and service_id not in self._dirty and (
                    not isinstance(event, ObjectUpdated)
                    or self._task_change_matters(event.old, event.obj, service_id)):
                self._dirty.add(service_id)
        elif kind is Kind.NODE:
            if not isinstance(event, ObjectUpdated) or \
                    node_fingerprint(event.obj) != node_fingerprint(event.old):
                self._resync(self._store.view())
        elif kind is Kind.CLUSTER:
            if not isinstance(event, ObjectUpdated) or \
                    event.obj.spec.orchestration != event.old.spec.orchestration:
                self._resync(self._store.view())

    def _task_change_matters(self, old: objects_pb2.Task, new: objects_pb2.Task, service_id: str) -> bool:
        view = self._store.view()
        return task_change_matters(old, new, view.get(Kind.SERVICE, service_id),
                                   lambda node_id: view.get(Kind.NODE, node_id))

    # -- one pass --------------------------------------------------------------------------------
    async def _pass(self) -> None:
        now = self._clock()
        due = {sid for sid, at in self._timers.items() if at <= now}
        todo, self._dirty = self._dirty | due, set()
        if not todo:
            return
        view = self._store.view()
        nodes = view.nodes()
        retention = history_retention(view.cluster())
        plans = []
        for service_id in sorted(todo):
            self._timers.pop(service_id, None)
            # the view's per-service index: a pass costs the dirty services' tasks, not all tasks
            plan = self._plan(view, service_id, view.tasks(service_id=service_id), nodes, now, retention)
            if plan is None:
                continue
            if plan.wake_at is not None:
                self._timers[service_id] = plan.wake_at
            if plan:
                plans.append(plan)
        await self._apply(plans, view)
        self.passes += 1

    def _plan(self, view: ReadView, service_id: str, tasks: list[objects_pb2.Task],
              nodes: list[objects_pb2.Node], now: float, retention: int) -> Plan | None:
        service = view.get(Kind.SERVICE, service_id)
        try:
            if service is not None:
                return reconcile(service, tasks, nodes, now, ids=self._ids, retention=retention)
            if tasks:
                return reconcile_removed(service_id, tasks, nodes, now)
        except Exception:  # a bug in one service's decisions must not stop every other service
            log.exception("reconciling service %s failed; it is retried on its next change", service_id)
        return None

    async def _apply(self, plans: list[Plan], view: ReadView) -> None:
        """Write ``plans`` in changes of at most MAX_ACTIONS_PER_CHANGE actions, plans kept whole
        where they fit."""
        batch: list[Plan] = []
        size = 0
        for plan in plans:
            n = plan_size(plan)
            if batch and size + n > MAX_ACTIONS_PER_CHANGE:
                await self._commit(batch, view)
                batch, size = [], 0
            batch.append(plan)
            size += n
        if batch:
            await self._commit(batch, view)

    async def _commit(self, batch: list[Plan], view: ReadView) -> None:
        def fn(tx):
            stale = []
            for plan in batch:
                if not _still_current(tx, plan, view):
                    stale.append(plan.service_id)
                    continue
                for task in plan.create:
                    written = tx.create(task)
                    written.meta.created_at = task.meta.created_at
                for task in plan.update:
                    tx.update(task)
                for task_id in plan.delete:
                    tx.delete(view.get(Kind.TASK, task_id))
                if plan.service is not None:
                    tx.update(plan.service)
            return stale

        written, stale = await self._propose(fn, f"{len(batch)} service plan(s)")
        if not written:
            self._dirty.update(p.service_id for p in batch)
            return
        self._dirty.update(stale)
        for plan in batch:
            if plan.service_id in stale:
                continue
            for decision in plan.decisions:
                log.info("service %s: %s", plan.service_id, decision)


def _still_current(tx, plan: Plan, view: ReadView) -> bool:
    """Whether every object ``plan`` was built from is unchanged in ``tx`` (and new ids are free)."""
    for task in plan.create:
        if tx.get(Kind.TASK, task.id) is not None:
            return False
    if not _same_versions(tx, Kind.TASK, ((t.id, t.meta.version) for t in plan.update)):
        return False
    read = [view.get(Kind.TASK, task_id) for task_id in plan.delete]
    if any(t is None for t in read):
        return False
    if not _same_versions(tx, Kind.TASK, ((t.id, t.meta.version) for t in read)):
        return False
    if plan.service is not None:
        return _same_versions(tx, Kind.SERVICE, [(plan.service.id, plan.service.meta.version)])
    return True


def _same_versions(tx, kind: Kind, pairs: Iterable[tuple[str, int]]) -> bool:
    for object_id, version in pairs:
        current = tx.get(kind, object_id)
        if current is None or current.meta.version != version:
            return False
    return True
