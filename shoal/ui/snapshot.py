"""What the page shows, as JSON: built from the ControlAPI's answers (pure; no I/O, no root).

``cluster`` is the board: every node (hostname, role, status, availability, leader) with the
current tasks placed on it, plus services with their replica counts. A task is *current* when its
desired state is at most running (what `shoal service ps -f desired-state=running` lists): history
(shut down, failed, replaced) is left out so a card is a task that runs or is about to. Tasks not
yet placed on a node are listed under ``unassigned``. ``service_page`` adds a service's full task
list (history too, newest first) and its recent events.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from proto import objects_pb2

RUNNING = objects_pb2.RUNNING


def _lower(enum: Any, value: int) -> str:
    try:
        return str(enum.Name(value)).lower()
    except ValueError:
        return str(value)


def state_name(value: int) -> str:
    return _lower(objects_pb2.TaskState, value)


def node_json(node: objects_pb2.Node) -> dict[str, Any]:
    manager = node.HasField("manager_status")
    return {
        "id": node.id,
        "hostname": node.description.hostname,
        "role": _lower(objects_pb2.NodeRole, node.role),
        "status": _lower(objects_pb2.NodeStatus.State, node.status.state),
        "availability": _lower(objects_pb2.NodeSpec.Availability, node.spec.availability),
        "addr": node.status.addr,
        "leader": bool(manager and node.manager_status.leader),
        "reachability": _lower(objects_pb2.ManagerStatus.Reachability, node.manager_status.reachability)
        if manager else "",
    }


def service_mode(service: objects_pb2.Service) -> str:
    return _lower(objects_pb2.ServiceSpec.Mode, service.spec.mode).replace("_", "-")


def service_json(service: objects_pb2.Service, status: Any | None) -> dict[str, Any]:
    return {
        "id": service.id,
        "name": service.spec.annotations.name,
        "image": service.spec.task.container.image,
        "mode": service_mode(service),
        "running": int(status.running_tasks) if status is not None else 0,
        "desired": int(status.desired_tasks) if status is not None else 0,
    }


def task_json(task: objects_pb2.Task, services: Mapping[str, objects_pb2.Service]) -> dict[str, Any]:
    service = services.get(task.service_id)
    name = service.spec.annotations.name if service is not None else task.service_id
    if service is not None and service.spec.mode in (objects_pb2.ServiceSpec.GLOBAL,
                                                     objects_pb2.ServiceSpec.GLOBAL_JOB):
        label = f"{name}.{task.node_id[:12]}"   # global tasks have no slot: Docker names them by node
    else:
        label = f"{name}.{task.slot}"
    return {
        "id": task.id,
        "name": label,
        "service": name,
        "service_id": task.service_id,
        "slot": int(task.slot),
        "node_id": task.node_id,
        "state": state_name(task.status.state),
        "desired": state_name(task.desired_state),
        "message": task.status.message,
        "error": task.status.err,
        "image": task.spec.container.image,
        "timestamp": task.status.timestamp,
    }


def is_current(task: objects_pb2.Task) -> bool:
    return task.desired_state <= RUNNING and not task.spec.HasField("attachment")


def _by_id(services: Iterable[objects_pb2.Service]) -> dict[str, objects_pb2.Service]:
    return {s.id: s for s in services}


def cluster(nodes: Sequence[objects_pb2.Node], services: Sequence[objects_pb2.Service],
            statuses: Sequence[Any], tasks: Sequence[objects_pb2.Task]) -> dict[str, Any]:
    """The board: nodes (sorted by role, managers first, then hostname) with their current tasks."""
    by_service = _by_id(services)
    status_of = {s.service_id: s for s in statuses}
    cards: dict[str, list[dict[str, Any]]] = {}
    unassigned: list[dict[str, Any]] = []
    for task in tasks:
        if not is_current(task):
            continue
        card = task_json(task, by_service)
        (cards.setdefault(task.node_id, []) if task.node_id else unassigned).append(card)
    order = sorted(nodes, key=lambda n: (n.role != objects_pb2.MANAGER, n.description.hostname, n.id))
    node_list = []
    for node in order:
        entry = node_json(node)
        entry["tasks"] = sorted(cards.pop(node.id, []), key=lambda c: (c["service"], c["slot"], c["id"]))
        node_list.append(entry)
    for orphaned in cards.values():   # placed on a node the store no longer has
        unassigned.extend(orphaned)
    unassigned.sort(key=lambda c: (c["service"], c["slot"], c["id"]))
    return {
        "nodes": node_list,
        "unassigned": unassigned,
        "services": [service_json(s, status_of.get(s.id))
                     for s in sorted(services, key=lambda s: (s.spec.annotations.name, s.id))],
    }


def service_page(service: objects_pb2.Service, status: Any | None, tasks: Sequence[objects_pb2.Task],
                 nodes: Sequence[objects_pb2.Node], events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One service: its summary, all its tasks (current first, then newest), its recent events."""
    hostnames = {n.id: n.description.hostname for n in nodes}
    by_service = {service.id: service}
    rows = []
    for task in tasks:
        if task.service_id != service.id or task.spec.HasField("attachment"):
            continue
        row = task_json(task, by_service)
        row["node"] = hostnames.get(task.node_id, task.node_id)
        row["current"] = is_current(task)
        rows.append(row)
    rows.sort(key=lambda r: (not r["current"], r["slot"], -r["timestamp"], r["id"]))
    return {"service": service_json(service, status), "tasks": rows, "events": list(events)}


def service_events(events: Iterable[Mapping[str, Any]], service_id: str, limit: int = 100) -> list[Mapping[str, Any]]:
    """The newest ``limit`` events of the service and of its tasks, oldest first."""
    mine = [ev for ev in events
            if (ev.get("Type") == "service" and ev.get("Actor", {}).get("ID") == service_id)
            or (ev.get("Type") == "task" and ev.get("Actor", {}).get("Attributes", {}).get("service") == service_id)]
    return mine[-limit:]
