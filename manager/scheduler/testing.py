"""Builders for tests and benchmarks (Nomad keeps its harness beside the scheduler too):
``make_node(cpus=2, mem="1G", labels={...})``, ``make_service(...)``, ``make_task(...)``.

Every builder returns a fresh protobuf; ids default to readable counters ("node-1", "task-7").
"""

from __future__ import annotations

import itertools
import re
from typing import Iterable, Mapping

from proto import objects_pb2

_counter = itertools.count(1)
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def size(value: int | str) -> int:
    """Bytes from 512, "512M", "1G", "1.5GiB" (binary units, as Docker's --reserve-memory)."""
    if isinstance(value, int):
        return value
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"not a size: {value!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def nano(cpus: float) -> int:
    return int(round(cpus * 1e9))


def make_node(
    node_id: str | None = None,
    *,
    cpus: float = 2,
    mem: int | str = "4G",
    labels: Mapping[str, str] | None = None,
    hostname: str | None = None,
    role: str = "worker",
    state: str = "ready",
    availability: str = "active",
    os: str = "linux",
    arch: str = "x86_64",
) -> objects_pb2.Node:
    node_id = node_id or f"node-{next(_counter)}"
    node = objects_pb2.Node(id=node_id)
    node.meta.version = 1
    node.spec.annotations.labels.update(labels or {})
    node.spec.availability = objects_pb2.NodeSpec.Availability.Value(availability.upper())
    node.description.hostname = hostname or node_id
    node.description.platform.os = os
    node.description.platform.architecture = arch
    node.description.resources.nano_cpus = nano(cpus)
    node.description.resources.memory_bytes = size(mem)
    node.status.state = objects_pb2.NodeStatus.State.Value(state.upper())
    node.role = objects_pb2.MANAGER if role == "manager" else objects_pb2.WORKER
    return node


def make_service(
    service_id: str | None = None,
    *,
    name: str | None = None,
    mode: str = "replicated",
    replicas: int = 1,
    image: str = "busybox",
    reserve_cpus: float = 0,
    reserve_mem: int | str = 0,
    constraints: Iterable[str] = (),
    spread: Iterable[str] = (),
    max_replicas: int = 0,
    host_ports: Iterable[int] = (),
    restart: str | None = None,
    restart_delay: float = 0.0,
    max_attempts: int = 0,
    window: float = 0.0,
    spec_version: int = 1,
    parallelism: int = 1,
    update_delay: float = 0.0,
    failure_action: str = "pause",
    monitor: float = 5.0,
    max_failure_ratio: float = 0.0,
    order: str = "stop-first",
) -> objects_pb2.Service:
    service_id = service_id or f"svc-{next(_counter)}"
    service = objects_pb2.Service(id=service_id, spec_version=spec_version)
    service.meta.version = 1
    spec = service.spec
    spec.annotations.name = name or service_id
    spec.mode = objects_pb2.ServiceSpec.Mode.Value(mode.upper().replace("-", "_"))
    spec.replicas = replicas
    spec.task.container.image = image
    spec.task.resources.reservations.nano_cpus = nano(reserve_cpus)
    spec.task.resources.reservations.memory_bytes = size(reserve_mem)
    spec.task.placement.constraints.extend(constraints)
    for descriptor in spread:
        spec.task.placement.preferences.add(spread_descriptor=descriptor)
    spec.task.placement.max_replicas = max_replicas
    for port in host_ports:
        spec.endpoint.ports.add(target_port=port, published_port=port,
                                publish_mode=objects_pb2.PortConfig.HOST)
    if restart is not None:
        spec.task.restart.condition = objects_pb2.RestartPolicy.Condition.Value(
            restart.upper().replace("-", "_"))
        spec.task.restart.delay = restart_delay
        spec.task.restart.max_attempts = max_attempts
        spec.task.restart.window = window
    for config in (spec.update, spec.rollback):
        config.parallelism = parallelism
        config.delay = update_delay
        config.failure_action = objects_pb2.UpdateConfig.FailureAction.Value(failure_action.upper())
        config.monitor = monitor
        config.max_failure_ratio = max_failure_ratio
        config.order = objects_pb2.UpdateConfig.Order.Value(order.upper().replace("-", "_"))
    return service


def make_task(
    service: objects_pb2.Service | None = None,
    *,
    task_id: str | None = None,
    slot: int = 0,
    node: str = "",
    state: str = "running",
    desired: str = "running",
    created_at: float = 0.0,
    timestamp: float | None = None,
    exit_code: int = 0,
    reserve_cpus: float | None = None,
    reserve_mem: int | str | None = None,
    host_ports: Iterable[int] = (),
) -> objects_pb2.Task:
    """A task of ``service`` (its current spec and version) or of an anonymous service."""
    task = objects_pb2.Task(id=task_id or f"task-{next(_counter)}", slot=slot, node_id=node)
    task.meta.version = 1
    task.meta.created_at = created_at
    if service is not None:
        task.service_id = service.id
        task.spec.CopyFrom(service.spec.task)
        task.spec_version = service.spec_version
        task.endpoint.spec.CopyFrom(service.spec.endpoint)
    else:
        task.service_id = "svc-anon"
    if reserve_cpus is not None:
        task.spec.resources.reservations.nano_cpus = nano(reserve_cpus)
    if reserve_mem is not None:
        task.spec.resources.reservations.memory_bytes = size(reserve_mem)
    for port in host_ports:
        task.endpoint.spec.ports.add(target_port=port, published_port=port,
                                     publish_mode=objects_pb2.PortConfig.HOST)
    task.status.state = objects_pb2.TaskState.Value(state.upper())
    task.status.timestamp = created_at if timestamp is None else timestamp
    task.status.exit_code = exit_code
    task.desired_state = objects_pb2.TaskState.Value(desired.upper())
    return task


def pending(service: objects_pb2.Service | None = None, n: int = 1, **kwargs) -> list[objects_pb2.Task]:
    """``n`` PENDING tasks (slots 1..n) of ``service``, not yet on any node."""
    return [make_task(service, slot=i + 1, state="pending", **kwargs) for i in range(n)]
