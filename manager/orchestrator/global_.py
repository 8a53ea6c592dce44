"""Global services and global jobs: one task per eligible node; the node is the slot.

``reconcile_global`` (mode GLOBAL):
  * a node that is READY, ACTIVE and meets the service's constraints gets a task (created with
    the node already set; the scheduler still checks resources and ports);
  * a node that is removed loses its tasks (REMOVE); one that is down, drained or no longer
    meets the constraints has its task shut down, and gets a new one when it is eligible again;
  * a paused node keeps its task but gets no new one, not even a restart, until it is active;
  * per node: restart policy, start gate, rolling update (the node is the slot) and history.

``reconcile_global_job`` (mode GLOBAL_JOB): one run to completion per eligible node, including
nodes that join later; a completed task is never restarted; a new spec version is a new run.
"""

from __future__ import annotations

from manager.ids import new_id
from proto import objects_pb2

from .plan import Plan
from .replicated import _require_mode, _shut_down_previous_runs
from .restart import DEFAULT_HISTORY_RETENTION
from .slots import SlotContext, group_by, prune, reap, remove_slot, tend_slot
from .task import (
    IdFactory, accepts_new_tasks, created_at, is_runnable, new_task, satisfies_constraints,
)
from .update import plan_update

Mode = objects_pb2.ServiceSpec
NodeStatus = objects_pb2.NodeStatus
NodeSpec = objects_pb2.NodeSpec
REMOVE = objects_pb2.REMOVE


def reconcile_global(service: objects_pb2.Service, tasks: list[objects_pb2.Task],
                     nodes: list[objects_pb2.Node], now: float, *, ids: IdFactory = new_id,
                     retention: int = DEFAULT_HISTORY_RETENTION) -> Plan:
    """The plan that gives every eligible node one running task of the service's current spec."""
    _require_mode(service, Mode.GLOBAL, "reconcile_global")
    return _reconcile_nodes(service, tasks, nodes, now, ids, retention, job=False)


def reconcile_global_job(service: objects_pb2.Service, tasks: list[objects_pb2.Task],
                         nodes: list[objects_pb2.Node], now: float, *, ids: IdFactory = new_id,
                         retention: int = DEFAULT_HISTORY_RETENTION) -> Plan:
    """The plan that runs the job once to completion on every eligible node."""
    _require_mode(service, Mode.GLOBAL_JOB, "reconcile_global_job")
    return _reconcile_nodes(service, tasks, nodes, now, ids, retention, job=True)


def _why_node_ineligible(service: objects_pb2.Service, node: objects_pb2.Node) -> str | None:
    if node.status.state == NodeStatus.DOWN:
        return f"node {node.id} is down"
    if node.spec.availability == NodeSpec.DRAIN:
        return f"node {node.id} was drained"
    if not satisfies_constraints(service.spec.task, node):
        return f"node {node.id} does not satisfy the placement constraints"
    return None


def _reconcile_nodes(service, tasks, nodes, now, ids, retention, *, job: bool) -> Plan:
    plan = Plan(service.id)
    nodes_by_id = {n.id: n for n in nodes}
    mine = [t for t in tasks if t.service_id == service.id]
    reap(plan, mine, nodes_by_id)
    every_run = group_by(mine, lambda t: t.node_id)
    if job:
        mine = _shut_down_previous_runs(service, mine, plan)
    by_node = group_by(mine, lambda t: t.node_id)

    def make(node_id, desired, restart_at=0.0, restarts=(), after=0.0):
        return new_task(service, node_id=node_id, now=now, ids=ids, desired_state=desired,
                        restart_at=restart_at, restarts=restarts, after=after)

    def can_place(node_id):
        node = nodes_by_id.get(node_id)
        return accepts_new_tasks(node) and satisfies_constraints(service.spec.task, node)

    ctx = SlotContext(service, nodes_by_id, now, plan, make, job=job, can_place=can_place)
    views = []
    for node_id in sorted(every_run):
        node = nodes_by_id.get(node_id)
        if node is None or not node_id:
            remove_slot(plan, every_run[node_id], nodes_by_id,
                        f"node {node_id} was removed" if node_id else "global task without a node")
            continue
        reason = _why_node_ineligible(service, node)
        if reason is not None:
            for task in by_node.get(node_id, ()):
                if is_runnable(task):
                    plan.set_desired(task, objects_pb2.SHUTDOWN, reason)
            continue
        live = [t for t in by_node.get(node_id, ()) if t.desired_state != REMOVE]
        if live:
            views.append(tend_slot(ctx, node_id, by_node[node_id]))
    served = {v.key for v in views}
    for node in sorted(nodes, key=lambda n: n.id):
        if node.id not in served and can_place(node.id):
            after = max((t.meta.created_at for t in every_run.get(node.id, ())), default=0.0)
            plan.add(make(node.id, objects_pb2.RUNNING, after=after), f"node {node.id} is eligible")
    if not job:
        plan_update(service, views, nodes_by_id, now, plan, make, can_place)
    for view in views:
        view.tasks = sorted({t.id: plan.current(t) for t in every_run[view.key] + view.tasks}.values(),
                            key=created_at)
    prune(plan, views, retention, nodes_by_id)
    return plan
