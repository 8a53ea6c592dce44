"""Shared task vocabulary of the orchestrators: making a task from a service, which tasks are
runnable, alive, dirty, and whether a node may keep or receive a service's task.

A task is a one-shot (SwarmKit's model): a restart or an update always makes a new task in the
same slot; old ones stay as history until pruned.
"""

from __future__ import annotations

from typing import Callable

from manager.constraints import InvalidConstraint, constraints_of, matches
from proto import objects_pb2

IdFactory = Callable[[], str]
CREATION_STEP = 1e-6

RUNNING = objects_pb2.RUNNING
ASSIGNED = objects_pb2.ASSIGNED
NodeStatus = objects_pb2.NodeStatus
NodeSpec = objects_pb2.NodeSpec


def new_task(service: objects_pb2.Service, *, slot: int = 0, node_id: str = "", now: float,
             ids: IdFactory, desired_state: int = RUNNING, restart_at: float = 0.0,
             restarts: tuple[float, ...] = (), after: float = 0.0) -> objects_pb2.Task:
    """A NEW task carrying the service's current spec, for ``slot`` (replicated) or ``node_id``
    (global). The allocator moves it to PENDING, the scheduler to ASSIGNED.

    ``after``: the creation time of the slot's newest task; the new one is stamped strictly
    later, so creation order within a slot is well defined even when the clock did not move."""
    task = objects_pb2.Task(id=ids(), service_id=service.id, slot=slot, node_id=node_id,
                            spec_version=service.spec_version, desired_state=desired_state,
                            restart_at=restart_at)
    task.meta.created_at = max(now, after + CREATION_STEP) if after else now
    task.meta.updated_at = now
    task.spec.CopyFrom(service.spec.task)
    task.service_annotations.CopyFrom(service.spec.annotations)
    name = service.spec.annotations.name or service.id
    task.annotations.name = f"{name}.{slot}" if slot else f"{name}.{node_id}"
    if service.HasField("endpoint"):
        task.endpoint.CopyFrom(service.endpoint)
    if service.spec.HasField("endpoint"):
        task.endpoint.spec.CopyFrom(service.spec.endpoint)
    task.restarts.extend(restarts)
    task.status.state = objects_pb2.NEW
    task.status.timestamp = now
    task.status.message = "created"
    return task


def is_runnable(task: objects_pb2.Task) -> bool:
    """The orchestrator still wants this task to run (desired state READY or RUNNING)."""
    return task.desired_state <= RUNNING


def has_ended(task: objects_pb2.Task) -> bool:
    """The task's process is gone for good (COMPLETE, SHUTDOWN, FAILED, REJECTED, ORPHANED...)."""
    return task.status.state > RUNNING


def is_alive(task: objects_pb2.Task, nodes: dict[str, objects_pb2.Node]) -> bool:
    """The task may still be running somewhere: placed, not ended, on a node that is not DOWN."""
    if not task.node_id or not (ASSIGNED <= task.status.state <= RUNNING):
        return False
    node = nodes.get(task.node_id)
    return node is not None and node.status.state != NodeStatus.DOWN


def is_reapable(task: objects_pb2.Task, nodes: dict[str, objects_pb2.Node]) -> bool:
    """A task no longer wanted that no worker runs any more: safe to delete."""
    if is_runnable(task):
        return False
    return has_ended(task) or not is_alive(task, nodes)


def created_at(task: objects_pb2.Task) -> tuple[float, str]:
    """Sort key: creation order (ties broken by id)."""
    return (task.meta.created_at, task.id)


def is_dirty(service: objects_pb2.Service, task: objects_pb2.Task,
             nodes: dict[str, objects_pb2.Node]) -> bool:
    """Whether ``task`` runs an outdated spec and must be replaced by an update.

    Same spec version: clean. Otherwise compare content: a scale-only change is not an update.
    A change of placement alone leaves a task clean if its node satisfies the new constraints.
    """
    if task.spec_version == service.spec_version:
        return False
    if service.spec.endpoint != task.endpoint.spec:
        return True
    if service.spec.task == task.spec:
        return False
    if service.spec.task.placement == task.spec.placement:
        return True
    wanted = objects_pb2.TaskSpec()
    wanted.CopyFrom(service.spec.task)
    wanted.ClearField("placement")
    actual = objects_pb2.TaskSpec()
    actual.CopyFrom(task.spec)
    actual.ClearField("placement")
    if wanted != actual:
        return True
    node = nodes.get(task.node_id)
    return node is None or not satisfies_constraints(service.spec.task, node)


def satisfies_constraints(spec: objects_pb2.TaskSpec, node: objects_pb2.Node) -> bool:
    """Whether ``node`` meets the spec's placement constraints (a spec whose constraints do not
    parse fits no node)."""
    try:
        return matches(constraints_of(spec.placement), node)
    except InvalidConstraint:
        return False


def why_node_unfit(task: objects_pb2.Task, nodes: dict[str, objects_pb2.Node]) -> str | None:
    """Why a task's node can no longer keep it (removed, down, drained, constraints no longer
    met), or None if it can. Unknown and disconnected nodes keep their tasks: only the
    dispatcher's heartbeat timeout turns a node DOWN."""
    node = nodes.get(task.node_id)
    if node is None:
        return f"node {task.node_id} was removed"
    if node.status.state == NodeStatus.DOWN:
        return f"node {task.node_id} is down"
    if node.spec.availability == NodeSpec.DRAIN:
        return f"node {task.node_id} was drained"
    if not satisfies_constraints(task.spec, node):
        return f"node {task.node_id} no longer satisfies the placement constraints"
    return None


def accepts_new_tasks(node: objects_pb2.Node | None) -> bool:
    """A node may receive a new task: READY and ACTIVE."""
    return (node is not None and node.status.state == NodeStatus.READY
            and node.spec.availability == NodeSpec.ACTIVE)


def has_host_ports(service: objects_pb2.Service) -> bool:
    return any(p.publish_mode == objects_pb2.PortConfig.HOST and p.published_port
               for p in service.spec.endpoint.ports)
