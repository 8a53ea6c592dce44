"""What each node already carries: reserved resources, tasks per service, host ports in use and
recent failures. Built from the store's tasks (``build_node_infos``, from scratch) or handed out by
the scheduler's event-driven ``NodeSet`` (nodeset.py), then grown by the scheduler's own placements
so that later decisions in the same plan see earlier ones.

Pure bookkeeping, no I/O. An info marked ``shared`` belongs to someone else (a NodeSet): the
scheduler copies it (``copy()``) before adding a placement to it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from common import genericresource
from proto import objects_pb2

TaskState = objects_pb2.TaskState

# A node where a service version failed this often within FAULTY_WINDOW sorts last (SwarmKit).
FAULTY_FAILURES = 5
FAULTY_WINDOW = 300.0

_FAILED_STATES = (objects_pb2.FAILED, objects_pb2.REJECTED)

HostPort = tuple[int, int]  # (protocol, published port)
_NO_PORTS: frozenset[HostPort] = frozenset()


def holds_node_resources(task: objects_pb2.Task) -> bool:
    """A task uses its node's resources and host ports from ASSIGNED until it stops running."""
    return bool(task.node_id) and objects_pb2.ASSIGNED <= task.status.state <= objects_pb2.RUNNING


def counts_for_spread(task: objects_pb2.Task) -> bool:
    """A task counts towards spread and max-replicas while it holds its node and is meant to run."""
    return holds_node_resources(task) and task.desired_state <= objects_pb2.RUNNING


def host_ports(task: objects_pb2.Task) -> frozenset[HostPort]:
    """Host-mode published ports of a task: from its allocated endpoint, else from its spec."""
    endpoint = task.endpoint
    ports = endpoint.ports or endpoint.spec.ports
    if not ports:
        return _NO_PORTS
    return frozenset(
        (p.protocol, p.published_port)
        for p in ports
        if p.publish_mode == objects_pb2.PortConfig.HOST and p.published_port
    )


@dataclass(slots=True)
class NodeInfo:
    """One node and what is placed on it. ``available_*`` may go negative if the store already
    holds an over-committed node (a shrunken node, say); the resource filter then rejects it."""

    node: objects_pb2.Node
    reserved_nano_cpus: int = 0
    reserved_memory_bytes: int = 0
    active_tasks: int = 0
    tasks_by_service: Counter = field(default_factory=Counter)
    used_host_ports: set = field(default_factory=set)
    recent_failures: Counter = field(default_factory=Counter)  # (service_id, spec_version) -> n
    _generic: genericresource.Pool | None = None
    shared: bool = False        # owned by a NodeSet: copy before changing (schedule does)

    def copy(self) -> NodeInfo:
        """A private copy to add placements to (recent failures are only read, and shared)."""
        return NodeInfo(self.node, self.reserved_nano_cpus, self.reserved_memory_bytes, self.active_tasks,
                        Counter(self.tasks_by_service), set(self.used_host_ports), self.recent_failures,
                        self._generic.copy() if self._generic is not None else None)

    @property
    def generic(self) -> genericresource.Pool:
        """The node's generic resources and what its tasks hold (built on first use)."""
        if self._generic is None:
            self._generic = genericresource.Pool(self.node.description.resources.generic)
        return self._generic

    @property
    def id(self) -> str:
        return self.node.id

    @property
    def available_nano_cpus(self) -> int:
        return self.node.description.resources.nano_cpus - self.reserved_nano_cpus

    @property
    def available_memory_bytes(self) -> int:
        return self.node.description.resources.memory_bytes - self.reserved_memory_bytes

    def add(self, task: objects_pb2.Task, *, spread: bool = True) -> list[objects_pb2.GenericResource]:
        """Account for ``task`` running here (its reservations, ports, and counts if ``spread``);
        returns the generic resources it holds: those assigned to it, else claimed now."""
        reservations = task.spec.resources.reservations
        self.reserved_nano_cpus += reservations.nano_cpus
        self.reserved_memory_bytes += reservations.memory_bytes
        assigned: list[objects_pb2.GenericResource] = list(task.assigned_generic_resources)
        if assigned:
            self.generic.hold(assigned)
        elif reservations.generic:
            assigned = self.generic.claim(genericresource.requests(reservations.generic))
        self.used_host_ports.update(host_ports(task))
        if spread:
            self.active_tasks += 1
            self.tasks_by_service[task.service_id] += 1
        return assigned

    def place(self, task: objects_pb2.Task, request) -> list[objects_pb2.GenericResource]:
        """``add(task)`` for a pending task of a group whose shared ``request`` (filters.Request)
        already holds what the group's tasks reserve and publish: the same accounting, without
        reading each task's spec and endpoint again."""
        if task.assigned_generic_resources:
            return self.add(task)
        self.reserved_nano_cpus += request.nano_cpus
        self.reserved_memory_bytes += request.memory_bytes
        if request.host_ports:
            self.used_host_ports.update(request.host_ports)
        self.active_tasks += 1
        self.tasks_by_service[request.service_id] += 1
        return self.generic.claim(request.generic) if request.generic else []

    def free_fraction(self) -> float:
        """Sum of free CPU and free memory fractions (0 = full); binpack prefers the lowest."""
        resources = self.node.description.resources
        total = 0.0
        if resources.nano_cpus > 0:
            total += max(self.available_nano_cpus, 0) / resources.nano_cpus
        if resources.memory_bytes > 0:
            total += max(self.available_memory_bytes, 0) / resources.memory_bytes
        return total


def build_node_infos(
    nodes: Iterable[objects_pb2.Node], tasks: Iterable[objects_pb2.Task], now: float
) -> dict[str, NodeInfo]:
    """NodeInfo for every node, keyed by node id, from the tasks the store holds."""
    infos = {n.id: NodeInfo(n) for n in nodes}
    since = now - FAULTY_WINDOW
    generic: dict[str, dict[str, tuple]] = {}
    for task in tasks:
        info = infos.get(task.node_id)
        if info is None:
            continue
        if task.spec.HasField("attachment"):
            continue            # a one-off container's network attachment holds nothing here
        if holds_node_resources(task):
            reservations = task.spec.resources.reservations
            info.reserved_nano_cpus += reservations.nano_cpus
            info.reserved_memory_bytes += reservations.memory_bytes
            info.used_host_ports.update(host_ports(task))
            if task.desired_state <= objects_pb2.RUNNING:
                info.active_tasks += 1
                info.tasks_by_service[task.service_id] += 1
            entry = generic_entry(task)
            if entry is not None:
                generic.setdefault(info.id, {})[task.id] = entry
        elif task.status.state in _FAILED_STATES and task.status.timestamp >= since:
            info.recent_failures[(task.service_id, task.spec_version)] += 1
    for node_id, held in generic.items():
        infos[node_id]._generic = generic_pool(infos[node_id].node, held)
    return infos


def generic_entry(task: objects_pb2.Task) -> tuple | None:
    """What a task that holds its node holds of its generic resources, as ``generic_pool`` takes
    it: (True, the resources assigned to it), (False, its (kind, count) requests when it was never
    given any), or None when it reserves none."""
    if task.assigned_generic_resources:
        return (True, tuple(task.assigned_generic_resources))
    generic = task.spec.resources.reservations.generic
    if generic:
        return (False, genericresource.requests(generic))
    return None


def generic_pool(node: objects_pb2.Node, held: dict[str, tuple]) -> genericresource.Pool:
    """The node's generic resources with what its tasks hold: ``held`` maps task ids to (True,
    resources assigned to the task) or (False, (kind, count) requests of a task that holds its node
    but was never given any, from before they were assigned). The assigned ones are held first,
    then the requests are claimed in task id order, so the result does not depend on the order
    the tasks come in."""
    pool = genericresource.Pool(node.description.resources.generic)
    for assigned, resources in held.values():
        if assigned:
            pool.hold(resources)
    for task_id in sorted(held):
        assigned, resources = held[task_id]
        if not assigned:
            pool.claim(resources)
    return pool
