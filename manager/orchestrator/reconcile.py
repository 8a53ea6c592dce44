"""``reconcile``: one entry point for every service mode, and the clean-up of a deleted service."""

from __future__ import annotations

from manager.ids import new_id
from proto import objects_pb2

from .global_ import reconcile_global, reconcile_global_job
from .plan import Plan
from .replicated import reconcile_replicated, reconcile_replicated_job
from .restart import DEFAULT_HISTORY_RETENTION
from .slots import reap, remove_slot
from .task import IdFactory

Mode = objects_pb2.ServiceSpec

_BY_MODE = {
    Mode.REPLICATED: reconcile_replicated,
    Mode.GLOBAL: reconcile_global,
    Mode.REPLICATED_JOB: reconcile_replicated_job,
    Mode.GLOBAL_JOB: reconcile_global_job,
}


def reconcile(service: objects_pb2.Service, tasks: list[objects_pb2.Task],
              nodes: list[objects_pb2.Node], now: float, *, ids: IdFactory = new_id,
              retention: int = DEFAULT_HISTORY_RETENTION) -> Plan:
    """The plan for ``service`` whatever its mode (see the mode's own function). Pure."""
    return _BY_MODE[service.spec.mode](service, tasks, nodes, now, ids=ids, retention=retention)


def reconcile_removed(service_id: str, tasks: list[objects_pb2.Task],
                      nodes: list[objects_pb2.Node], now: float) -> Plan:
    """The plan for the tasks of a service that no longer exists: everything still running is
    marked REMOVE, everything stopped is deleted. Pure."""
    plan = Plan(service_id)
    nodes_by_id = {n.id: n for n in nodes}
    mine = [t for t in tasks if t.service_id == service_id]
    reap(plan, mine, nodes_by_id, why="service removed")
    remove_slot(plan, [t for t in mine if t.id not in plan.delete], nodes_by_id, "service removed")
    return plan


def history_retention(cluster: objects_pb2.Cluster | None) -> int:
    """The cluster's task history limit (``swarm update --task-history-limit``), default 5."""
    if cluster is None:
        return DEFAULT_HISTORY_RETENTION
    limit = cluster.spec.orchestration.task_history_retention_limit
    return limit if limit > 0 else DEFAULT_HISTORY_RETENTION
