"""NodeSet: every node and what its tasks hold, and the PENDING tasks, kept up to date from
store events.

The scheduler used to rebuild every node's view (``build_node_infos``: reservations, tasks per
service for spread and max-replicas, host ports, generic resources, recent failures) from every
task in the store on each pass: O(all tasks) per pass. A NodeSet is built once from the store
(at start and after a watch overflow) and then kept from task and node events: a task event marks
the task changed, and before the next pass reads the set each changed task's old contribution to
its node is taken away and its new one added, so a pass costs the tasks changed since the last
one plus one NodeInfo per node. SwarmKit's scheduler does the same (nodeSet / nodeInfo
updated from its event loop); the code here is Shoal's own.

What a task contributes is exactly what ``build_node_infos`` counts (tests/property/
test_scheduler_nodeset.py checks ``snapshot()`` equals it after random sequences of events):

* from ASSIGNED to RUNNING on a node (``holds_node_resources``): its reservations, host ports and
  generic resources; and, while its desired state is at most RUNNING, one task of its service;
* FAILED or REJECTED on a node: a failure of its (service, spec version) at its status time; the
  five-minute window is applied when a snapshot is taken, since it depends on the time;
* a network attachment (a one-off container's) holds nothing.

What a task holds is kept per node id whether or not the node exists (a task may name a node
that left, or one not seen yet); a snapshot has an info for every node that exists.

Not thread-safe; used from the store's loop. No I/O.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from manager.state import Kind, ObjectDeleted
from proto import objects_pb2

from .nodeinfo import FAULTY_WINDOW, NodeInfo, generic_entry, generic_pool, host_ports

_PENDING = objects_pb2.PENDING
_ASSIGNED = objects_pb2.ASSIGNED
_RUNNING = objects_pb2.RUNNING
_FAILED_STATES = (objects_pb2.FAILED, objects_pb2.REJECTED)


class _Load:
    """What the tasks on one node id hold (the node itself may not exist)."""

    __slots__ = ("nano_cpus", "memory_bytes", "active", "by_service", "ports", "port_set",
                 "generic", "failures", "shares")

    def __init__(self) -> None:
        self.nano_cpus = 0
        self.memory_bytes = 0
        self.active = 0                         # tasks counting for spread
        self.by_service: Counter = Counter()    # service id -> tasks counting for spread (no zeros)
        self.ports: Counter = Counter()         # (protocol, port) -> tasks publishing it
        self.port_set: set = set()              # the keys of ports
        self.generic: dict[str, tuple] = {}     # task id -> (True, resources held) | (False, requests)
        self.failures: dict[str, tuple] = {}    # task id -> ((service id, spec version), time)
        self.shares = 0                         # tasks counted here


# What one task contributes to its node: (node id, cpus, memory, service id if it counts for
# spread else None, host ports, generic entry or None, failure or None). None: nothing.
_Share = tuple


def _share_of(task: objects_pb2.Task) -> _Share | None:
    node_id = task.node_id
    if not node_id:
        return None
    state = task.status.state
    if _ASSIGNED <= state <= _RUNNING:
        spec = task.spec
        if spec.HasField("attachment"):
            return None     # a one-off container's network attachment holds nothing here
        reservations = spec.resources.reservations
        return (node_id, reservations.nano_cpus, reservations.memory_bytes,
                task.service_id if task.desired_state <= _RUNNING else None,
                host_ports(task), generic_entry(task), None)
    if state in _FAILED_STATES:
        if task.spec.HasField("attachment"):
            return None
        return (node_id, 0, 0, None, (), None, ((task.service_id, task.spec_version), task.status.timestamp))
    return None


class NodeSet:
    """Nodes and their loads, from ``build`` then ``apply(event)``; ``snapshot(now)`` for a pass.

    A task event only notes the task as changed (its latest state, or None once deleted); the
    changed tasks are settled when a snapshot is taken: each one's contribution as last counted
    (kept per task that contributes) is taken away and its current one added. A task that went
    PENDING -> ASSIGNED -> RUNNING between two passes is looked at once."""

    def __init__(self) -> None:
        self._nodes: dict[str, objects_pb2.Node] = {}
        self._loads: dict[str, _Load] = {}
        self._shares: dict[str, _Share] = {}                        # task id -> what it counts for
        self._changed: dict[str, objects_pb2.Task | None] = {}      # task id -> latest, None: deleted
        self._pending: dict[str, objects_pb2.Task] = {}             # task id -> PENDING task

    @classmethod
    def build(cls, nodes: Iterable[objects_pb2.Node], tasks: Iterable[objects_pb2.Task]) -> NodeSet:
        """From the store's nodes and tasks (at start, after a watch overflow)."""
        nodeset = cls()
        for node in nodes:
            nodeset._nodes[node.id] = node
        for task in tasks:
            if task.status.state == _PENDING:
                nodeset._pending[task.id] = task
            share = _share_of(task)
            if share is not None:
                nodeset._shares[task.id] = share
                nodeset._count(task.id, share, 1)
        return nodeset

    def __len__(self) -> int:
        return len(self._nodes)

    # -- events ------------------------------------------------------------------------------

    def apply(self, event) -> None:
        """Take one store event about a task or a node into account (others are ignored)."""
        kind = event.kind
        if kind is Kind.TASK:
            task = event.obj
            self._changed[task.id] = None if isinstance(event, ObjectDeleted) else task
        elif kind is Kind.NODE:
            if isinstance(event, ObjectDeleted):
                self._nodes.pop(event.obj.id, None)
            else:
                self._nodes[event.obj.id] = event.obj

    def _settle(self) -> None:
        shares, pending = self._shares, self._pending
        for task_id, task in self._changed.items():
            if task is not None and task.status.state == _PENDING:
                pending[task_id] = task
            else:
                pending.pop(task_id, None)
            new = _share_of(task) if task is not None else None
            old = shares.get(task_id)
            if new == old:
                continue
            if old is not None:
                self._count(task_id, old, -1)
            if new is None:
                del shares[task_id]
            else:
                shares[task_id] = new
                self._count(task_id, new, 1)
        self._changed.clear()

    def _count(self, task_id: str, share: _Share, sign: int) -> None:
        node_id, nano_cpus, memory_bytes, service_id, ports, generic, failure = share
        load = self._loads.get(node_id)
        if load is None:
            load = self._loads[node_id] = _Load()
        load.shares += sign
        if failure is not None:
            if sign > 0:
                load.failures[task_id] = failure
            else:
                del load.failures[task_id]
        else:
            load.nano_cpus += sign * nano_cpus
            load.memory_bytes += sign * memory_bytes
            if service_id is not None:
                load.active += sign
                count = load.by_service[service_id] + sign
                if count:
                    load.by_service[service_id] = count
                else:
                    del load.by_service[service_id]
            for port in ports:
                count = load.ports[port] + sign
                if count > 0:
                    if count == 1:
                        load.port_set.add(port)
                    load.ports[port] = count
                else:
                    del load.ports[port]
                    load.port_set.discard(port)
            if generic is not None:
                if sign > 0:
                    load.generic[task_id] = generic
                else:
                    del load.generic[task_id]
        if not load.shares:
            del self._loads[node_id]

    # -- reading ----------------------------------------------------------------------------

    def pending(self) -> dict[str, objects_pb2.Task]:
        """The PENDING tasks by id (the store's objects: read only), as of the last event;
        valid until the next ``apply``."""
        self._settle()
        return self._pending

    def snapshot(self, now: float) -> dict[str, NodeInfo]:
        """A NodeInfo for every node, equal to ``build_node_infos(nodes, tasks, now)``. The infos
        are marked shared and use this set's counters: valid until the next ``apply``, and to be
        copied before changing (``schedule_on`` does)."""
        self._settle()
        since = now - FAULTY_WINDOW
        infos = {}
        for node_id, node in self._nodes.items():
            load = self._loads.get(node_id)
            if load is None:
                infos[node_id] = NodeInfo(node, shared=True)
                continue
            failures: Counter = Counter()
            for key, timestamp in load.failures.values():
                if timestamp >= since:
                    failures[key] += 1
            pool = None
            if load.generic:
                pool = generic_pool(node, load.generic)
            infos[node_id] = NodeInfo(node, load.nano_cpus, load.memory_bytes, load.active,
                                      load.by_service, load.port_set, failures, pool, shared=True)
        return infos
