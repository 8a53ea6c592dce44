"""The scheduler's filters: may this task run on this node, and if not, why.

Each filter answers ``check(info, request) -> Verdict`` for one node, with a reason a person can
read ("insufficient memory: reserves 1GiB, 512MiB available"), and ``explain(count)`` for the
summary that goes into a pending task's status ("insufficient resources on 2 nodes"). Filters
run in PIPELINE order and a node is charged to the first one it fails, so the summary counts
each rejected node once.

``static`` filters depend only on the node and the task's spec; the scheduler evaluates them once
per group of identical tasks. The others depend on what is already placed on the node, which
only grows while a plan is built, so a node they reject stays rejected for the rest of the group.
"""

from __future__ import annotations

from dataclasses import dataclass

from common import genericresource
from proto import objects_pb2

from manager.constraints import Constraint, constraints_of, first_unmet
from .nodeinfo import HostPort, NodeInfo, host_ports


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""


PASS = Verdict(True)


@dataclass(frozen=True, slots=True)
class Request:
    """What a group of identical tasks asks of a node."""

    service_id: str
    spec_version: int
    nano_cpus: int
    memory_bytes: int
    constraints: tuple[Constraint, ...]
    host_ports: frozenset[HostPort]
    max_replicas: int
    generic: tuple[tuple[str, int], ...] = ()     # generic resources reserved: (kind, count)

    @classmethod
    def of(cls, task: objects_pb2.Task) -> Request:
        """The request of ``task``; InvalidConstraint if its constraints do not parse."""
        reservations = task.spec.resources.reservations
        return cls(
            service_id=task.service_id,
            spec_version=task.spec_version,
            nano_cpus=reservations.nano_cpus,
            memory_bytes=reservations.memory_bytes,
            constraints=constraints_of(task.spec.placement),
            host_ports=host_ports(task),
            max_replicas=task.spec.placement.max_replicas,
            generic=genericresource.requests(reservations.generic),
        )


def _nodes(count: int) -> str:
    return "1 node" if count == 1 else f"{count} nodes"


class Filter:
    name = "filter"
    static = False

    def check(self, info: NodeInfo, request: Request) -> Verdict:  # pragma: no cover - abstract
        raise NotImplementedError

    def explain(self, count: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class ReadyFilter(Filter):
    """The node's agent is connected and heartbeating (status READY)."""

    name = "ready"
    static = True

    def check(self, info: NodeInfo, request: Request) -> Verdict:
        state = info.node.status.state
        if state == objects_pb2.NodeStatus.READY:
            return PASS
        return Verdict(False, f"node is {objects_pb2.NodeStatus.State.Name(state).lower()}")

    def explain(self, count: int) -> str:
        return f"{_nodes(count)} not ready"


class AvailabilityFilter(Filter):
    """New tasks go only to ACTIVE nodes; PAUSE and DRAIN take none."""

    name = "availability"
    static = True

    def check(self, info: NodeInfo, request: Request) -> Verdict:
        availability = info.node.spec.availability
        if availability == objects_pb2.NodeSpec.ACTIVE:
            return PASS
        name = objects_pb2.NodeSpec.Availability.Name(availability).lower()
        return Verdict(False, f"node availability is {name}")

    def explain(self, count: int) -> str:
        return f"{_nodes(count)} not available for new tasks"


class ConstraintFilter(Filter):
    """Every placement constraint holds on the node."""

    name = "constraints"
    static = True

    def check(self, info: NodeInfo, request: Request) -> Verdict:
        unmet = first_unmet(request.constraints, info.node)
        if unmet is None:
            return PASS
        return Verdict(False, f"constraint {unmet.expression} not satisfied")

    def explain(self, count: int) -> str:
        return f"scheduling constraints not satisfied on {_nodes(count)}"


class ResourceFilter(Filter):
    """The task's reservations fit in what the node has left after the tasks placed there."""

    name = "resources"

    def check(self, info: NodeInfo, request: Request) -> Verdict:
        if request.nano_cpus > info.available_nano_cpus:
            return Verdict(False, f"insufficient CPU: reserves {format_cpus(request.nano_cpus)}, "
                                  f"{format_cpus(max(info.available_nano_cpus, 0))} available")
        if request.memory_bytes > info.available_memory_bytes:
            return Verdict(False, f"insufficient memory: reserves {format_bytes(request.memory_bytes)}, "
                                  f"{format_bytes(max(info.available_memory_bytes, 0))} available")
        if request.generic:
            short = info.generic.fits(request.generic)
            if short is not None:
                kind, wanted, available = short
                return Verdict(False, f"insufficient generic resource {kind}: reserves {wanted}, {available} available")
        return PASS

    def explain(self, count: int) -> str:
        return f"insufficient resources on {_nodes(count)}"


class HostPortFilter(Filter):
    """No host-mode published port of the task is already bound on the node."""

    name = "host-ports"

    def check(self, info: NodeInfo, request: Request) -> Verdict:
        clash = request.host_ports & info.used_host_ports
        if not clash:
            return PASS
        protocol, port = min(clash)
        name = objects_pb2.PortConfig.Protocol.Name(protocol).lower()
        return Verdict(False, f"host port {port}/{name} already in use")

    def explain(self, count: int) -> str:
        return f"host-mode port already in use on {_nodes(count)}"


class MaxReplicasFilter(Filter):
    """The node runs fewer than ``placement.max_replicas`` tasks of the service (0 = no limit)."""

    name = "max-replicas"

    def check(self, info: NodeInfo, request: Request) -> Verdict:
        if not request.max_replicas:
            return PASS
        running = info.tasks_by_service[request.service_id]
        if running < request.max_replicas:
            return PASS
        return Verdict(False, f"node already runs {running} of max {request.max_replicas} replicas")

    def explain(self, count: int) -> str:
        return f"max replicas per node limit exceeded on {_nodes(count)}"


PIPELINE: tuple[Filter, ...] = (
    ReadyFilter(), AvailabilityFilter(), ConstraintFilter(),
    ResourceFilter(), HostPortFilter(), MaxReplicasFilter(),
)
STATIC_FILTERS = tuple(f for f in PIPELINE if f.static)
DYNAMIC_FILTERS = tuple(f for f in PIPELINE if not f.static)


def first_failure(filters: tuple[Filter, ...], info: NodeInfo, request: Request) -> tuple[Filter, Verdict] | None:
    """The first filter ``info`` fails and its verdict, or None if it passes them all."""
    for f in filters:
        verdict = f.check(info, request)
        if not verdict.ok:
            return f, verdict
    return None


def explain(failures: dict[str, int]) -> str:
    """SwarmKit's pending message: "no suitable node (insufficient resources on 2 nodes; ...)".

    ``failures`` maps filter names to how many nodes each rejected; PIPELINE order is kept.
    """
    parts = [f.explain(failures[f.name]) for f in PIPELINE if failures.get(f.name)]
    return "no suitable node (" + "; ".join(parts) + ")" if parts else "no suitable node"


def format_bytes(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            amount = value / size
            return f"{amount:.0f}{unit}" if amount == int(amount) else f"{amount:.1f}{unit}"
    return f"{value}B"


def format_cpus(nano_cpus: int) -> str:
    cpus = nano_cpus / 1e9
    return f"{cpus:g} CPU" + ("" if cpus == 1 else "s")
