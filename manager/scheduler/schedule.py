"""``schedule``: place pending tasks on nodes. A pure function of the nodes, the tasks already in
the store, the pending tasks and the time; it returns a plan and touches nothing.

How a node is chosen (SwarmKit's algorithm, plus binpack as an option):

1. Pending tasks are grouped by (service, spec version) — identical tasks — and groups are taken
   in sorted order, tasks within a group by slot and id, so the same input gives the same plan
   whatever order it came in.
2. For each group the static filters (ready, availability, constraints) run once per node.
3. The nodes that pass are arranged in a tree by the service's placement preferences
   (``spread=node.labels.zone`` and so on, outermost first; nodes without the label form their
   own branch). Each task walks down the tree taking the branch holding the fewest tasks of its
   service, then picks a node in that branch: with SPREAD the one with the fewest tasks of the
   service, then the fewest tasks overall; with BINPACK the fullest one that fits. Nodes where
   this service version failed 5 times in the last 5 minutes come last either way.
4. The chosen node must pass the dynamic filters (resources, host ports, max replicas) given
   everything placed so far, including earlier placements of this very plan; a node that fails
   one is dropped for the rest of the group (what is placed only grows).
5. A task that fits nowhere stays pending with SwarmKit's explanation: every node is charged to
   the first filter it failed.

Tasks that already name a node (global services) are only checked against that node; network
attachment tasks (a one-off container's, ``spec.attachment``) are assigned to theirs unchecked.
A pending task whose desired state is already past RUNNING is not placed but shut down.
"""

from __future__ import annotations

import enum
import heapq
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from proto import objects_pb2

from manager.constraints import InvalidConstraint
from .filters import (
    DYNAMIC_FILTERS, PIPELINE, STATIC_FILTERS, Request, explain, first_failure,
)
from .nodeinfo import FAULTY_FAILURES, NodeInfo, build_node_infos

log = logging.getLogger(__name__)

ASSIGNED_MESSAGE = "scheduler assigned task to node"
SHUTDOWN_MESSAGE = "shut down before it was scheduled"
LABEL_PREFIX = "node.labels."


class Strategy(enum.Enum):
    SPREAD = "spread"
    BINPACK = "binpack"


@dataclass
class SchedulePlan:
    """The decisions of one ``schedule`` call.

    ``assignments``: (task_id, node_id) in decision order. ``unplaced``: task_id -> the message
    explaining why it fits nowhere. ``shutdown``: pending tasks no longer wanted (desired state
    past RUNNING), to be moved to SHUTDOWN without being placed.
    """

    assignments: list[tuple[str, str]] = field(default_factory=list)
    unplaced: dict[str, str] = field(default_factory=dict)
    shutdown: list[str] = field(default_factory=list)
    generic: dict[str, list] = field(default_factory=dict)   # task_id -> generic resources claimed for it

    def __bool__(self) -> bool:
        return bool(self.assignments or self.unplaced or self.shutdown)


def schedule(
    nodes: Iterable[objects_pb2.Node],
    tasks: Iterable[objects_pb2.Task],
    pending: Iterable[objects_pb2.Task],
    now: float,
    *,
    strategy: Strategy = Strategy.SPREAD,
) -> SchedulePlan:
    """Decide a node for every task in ``pending`` whose state is PENDING (others are ignored).

    ``tasks`` is every task in the store (pending ones included or not); they tell what each node
    already carries. Never places on a node that is not READY and ACTIVE, never reserves more
    than a node has, and is deterministic. Pure: no I/O, no clock; call from any thread.
    """
    return schedule_on(build_node_infos(nodes, tasks, now), pending, now, strategy=strategy)


def schedule_on(
    infos: Mapping[str, NodeInfo],
    pending: Iterable[objects_pb2.Task],
    now: float,
    *,
    strategy: Strategy = Strategy.SPREAD,
) -> SchedulePlan:
    """``schedule`` given every node's info (node id -> NodeInfo: what ``build_node_infos`` or a
    ``NodeSet.snapshot`` gives) instead of the nodes and tasks. Pure: an info marked shared is
    copied before a placement is added to it, so ``infos`` is left as it was."""
    working = _Working(infos)
    plan = SchedulePlan()
    groups: dict[tuple[str, int], list[objects_pb2.Task]] = defaultdict(list)
    preassigned: list[objects_pb2.Task] = []
    for task in pending:
        if task.status.state != objects_pb2.PENDING:
            continue
        if task.desired_state > objects_pb2.RUNNING:
            plan.shutdown.append(task.id)
        elif task.node_id:
            preassigned.append(task)
        else:
            groups[(task.service_id, task.spec_version)].append(task)
    plan.shutdown.sort()
    for task in sorted(preassigned, key=lambda t: (t.node_id, t.service_id, t.id)):
        _place_preassigned(task, working, plan)
    order = sorted(working)
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda t: (t.slot, t.id))
        _place_group(group, [working[node_id] for node_id in order], working, plan, strategy)
    return plan


class _Working(dict):
    """The plan's node infos: a shared one is replaced by a private copy before it changes."""

    def own(self, info: NodeInfo) -> NodeInfo:
        if info.shared:
            info = self[info.id] = info.copy()
        return info


def _place_preassigned(task: objects_pb2.Task, infos: _Working, plan: SchedulePlan) -> None:
    info = infos.get(task.node_id)
    if info is None:
        plan.unplaced[task.id] = f"no suitable node (node {task.node_id} is not in the cluster)"
        return
    if task.spec.HasField("attachment"):
        # A one-off container's network attachment: the container already runs there (or is
        # about to); it needs no resources and no filter may move it.
        plan.assignments.append((task.id, info.id))
        return
    try:
        request = Request.of(task)
    except InvalidConstraint as exc:
        plan.unplaced[task.id] = str(exc)
        return
    failure = first_failure(PIPELINE, info, request)
    if failure is not None:
        plan.unplaced[task.id] = explain({failure[0].name: 1}) + f": {failure[1].reason}"
        return
    info = infos.own(info)
    _claimed(plan, task, info.add(task))
    plan.assignments.append((task.id, info.id))


def _claimed(plan: SchedulePlan, task: objects_pb2.Task, assigned: list) -> None:
    if assigned and list(task.assigned_generic_resources) != assigned:
        plan.generic[task.id] = assigned


# ---- spread tree ---------------------------------------------------------------------------


@dataclass
class _Branch:
    """A subtree of eligible nodes sharing the same preference label values."""

    service_tasks: int = 0
    live: int = 0                      # candidate nodes still usable below this branch
    children: dict[str, _Branch] = field(default_factory=dict)
    heap: list = field(default_factory=list)  # leaves only: (sort key, node id, NodeInfo)


def _descriptor_label(descriptor: str) -> str | None:
    if descriptor.lower().startswith(LABEL_PREFIX):
        return descriptor[len(LABEL_PREFIX):]
    return None


def _node_key(info: NodeInfo, request: Request, strategy: Strategy) -> tuple:
    faulty = info.recent_failures[(request.service_id, request.spec_version)] >= FAULTY_FAILURES
    if strategy is Strategy.BINPACK:
        return (faulty, info.free_fraction(), -info.active_tasks, info.id)
    return (faulty, info.tasks_by_service[request.service_id], info.active_tasks, info.id)


def _build_tree(eligible: list[NodeInfo], request: Request, labels: Sequence[str | None],
                strategy: Strategy) -> _Branch:
    root = _Branch()
    for info in eligible:
        count = info.tasks_by_service[request.service_id]
        branch = root
        branch.service_tasks += count
        branch.live += 1
        for label in labels:
            value = info.node.spec.annotations.labels.get(label, "") if label is not None else ""
            branch = branch.children.setdefault(value, _Branch())
            branch.service_tasks += count
            branch.live += 1
        branch.heap.append((_node_key(info, request, strategy), info.id, info))
    for leaf in _leaves(root):
        heapq.heapify(leaf.heap)
    return root


def _leaves(branch: _Branch):
    if not branch.children:
        yield branch
    for child in branch.children.values():
        yield from _leaves(child)


def _place_group(group: list[objects_pb2.Task], infos: list[NodeInfo], working: _Working,
                 plan: SchedulePlan, strategy: Strategy) -> None:
    first = group[0]
    try:
        request = Request.of(first)
    except InvalidConstraint as exc:
        for task in group:
            plan.unplaced[task.id] = str(exc)
        return
    failures: dict[str, int] = defaultdict(int)
    eligible = []
    for info in infos:
        failure = first_failure(STATIC_FILTERS, info, request)
        if failure is None:
            eligible.append(info)
        else:
            failures[failure[0].name] += 1
    labels = [_descriptor_label(p.spread_descriptor) for p in first.spec.placement.preferences
              if p.spread_descriptor]
    root = _build_tree(eligible, request, labels, strategy)
    for index, task in enumerate(group):
        info = _place(task, root, request, strategy, failures, working, plan)
        if info is None:
            message = explain(failures)
            for rest in group[index:]:
                plan.unplaced[rest.id] = message
            log.debug("service %s: %d task(s) unplaceable: %s", request.service_id,
                      len(group) - index, message)
            return
        plan.assignments.append((task.id, info.id))


def _place(task: objects_pb2.Task, root: _Branch, request: Request, strategy: Strategy,
           failures: dict[str, int], working: _Working, plan: SchedulePlan) -> NodeInfo | None:
    """Walk down to a leaf, take its best node that passes the dynamic filters and add ``task``
    to it, keeping branch counts and the leaf's heap order. None once no node is left anywhere;
    nodes dropped on the way are charged to their failing filter in ``failures``."""
    while root.live:
        path = [root]
        branch = root
        while branch.children:
            branch = min((c for c in branch.children.items() if c[1].live),
                         key=lambda item: (item[1].service_tasks, item[0]))[1]
            path.append(branch)
        while branch.heap:
            _, _, info = heapq.heappop(branch.heap)
            failure = first_failure(DYNAMIC_FILTERS, info, request)
            if failure is not None:
                failures[failure[0].name] += 1
                for b in path:
                    b.live -= 1
                continue
            info = working.own(info)
            _claimed(plan, task, info.place(task, request))
            for b in path:
                b.service_tasks += 1
            heapq.heappush(branch.heap, (_node_key(info, request, strategy), info.id, info))
            return info
    return None


# ---- turning a plan into task changes ----------------------------------------------------------


def planned_task_changes(plan: SchedulePlan, tasks_by_id: dict[str, objects_pb2.Task],
                         now: float) -> list[objects_pb2.Task]:
    """The task copies to write for ``plan``: assigned tasks (state ASSIGNED, node set), pending
    tasks whose explanation changed (an unchanged message is not rewritten, so an idle cluster
    does not churn the store) and unwanted pending tasks moved to SHUTDOWN. Tasks missing from
    ``tasks_by_id`` are skipped. Pure."""
    changes = []
    for task_id, node_id in plan.assignments:
        task = tasks_by_id.get(task_id)
        if task is None:
            continue
        updated = _copy(task)
        updated.node_id = node_id
        if task_id in plan.generic:
            del updated.assigned_generic_resources[:]
            updated.assigned_generic_resources.extend(plan.generic[task_id])
        _set_status(updated, objects_pb2.ASSIGNED, ASSIGNED_MESSAGE, now)
        changes.append(updated)
    for task_id, message in plan.unplaced.items():
        task = tasks_by_id.get(task_id)
        if task is None or (task.status.message == message and not task.status.err):
            continue
        updated = _copy(task)
        updated.status.message = message
        updated.status.err = ""
        updated.status.timestamp = now
        changes.append(updated)
    for task_id in plan.shutdown:
        task = tasks_by_id.get(task_id)
        if task is None:
            continue
        updated = _copy(task)
        _set_status(updated, objects_pb2.SHUTDOWN, SHUTDOWN_MESSAGE, now)
        changes.append(updated)
    return changes


def _copy(task: objects_pb2.Task) -> objects_pb2.Task:
    duplicate = objects_pb2.Task()
    duplicate.CopyFrom(task)
    return duplicate


def _set_status(task: objects_pb2.Task, state: int, message: str, now: float) -> None:
    task.status.state = state
    task.status.message = message
    task.status.err = ""
    task.status.timestamp = now
