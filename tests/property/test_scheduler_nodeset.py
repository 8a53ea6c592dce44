"""Hypothesis: the scheduler's NodeSet, kept from task and node events, always equals the node
infos rebuilt from scratch (``build_node_infos``) from the same nodes and tasks, at any time, and
holds exactly the PENDING tasks; and
``schedule_on`` its snapshot plans exactly what ``schedule`` plans from the nodes and tasks,
without changing the snapshot.

The events are what a store watch delivers (created, updated with the old object, deleted), for
random changes of random tasks (state, desired state, node, service, reservations, host ports,
generic resources assigned or only reserved, attachments, failure times) and nodes (created,
relabelled, resized, drained, removed, and tasks naming nodes that do not exist)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from common import genericresource
from manager.scheduler import NodeSet, Strategy, build_node_infos, schedule, schedule_on
from manager.scheduler.nodeinfo import NodeInfo
from manager.scheduler.testing import make_node
from manager.state import Kind, ObjectCreated, ObjectDeleted, ObjectUpdated
from proto import objects_pb2

NOW = 10_000.0
TASK_IDS = [f"t{i}" for i in range(8)]
NODE_IDS = ["n1", "n2", "n3"]
STATES = [objects_pb2.NEW, objects_pb2.PENDING, objects_pb2.ASSIGNED, objects_pb2.ACCEPTED,
          objects_pb2.PREPARING, objects_pb2.STARTING, objects_pb2.RUNNING, objects_pb2.COMPLETE,
          objects_pb2.SHUTDOWN, objects_pb2.FAILED, objects_pb2.REJECTED, objects_pb2.ORPHANED]
DESIRED = [objects_pb2.READY, objects_pb2.RUNNING, objects_pb2.SHUTDOWN, objects_pb2.REMOVE]

task_st = st.fixed_dictionaries({
    "node": st.sampled_from(["", "n1", "n2", "n3", "gone"]),
    "state": st.sampled_from(STATES),
    "desired": st.sampled_from(DESIRED),
    "service": st.sampled_from(["s1", "s2"]),
    "version": st.sampled_from([1, 2]),
    "cpus": st.sampled_from([0, 250_000_000, 10**9]),
    "mem": st.sampled_from([0, 1 << 20, 1 << 30]),
    "ports": st.sampled_from([(), (80,), (80, 443)]),
    "ports_allocated": st.booleans(),
    "generic": st.sampled_from(["", "assigned-named", "assigned-discrete", "reserved"]),
    "attachment": st.sampled_from([False, False, False, True]),
    "age": st.sampled_from([0.0, 100.0, 299.0, 301.0, 1000.0]),
})
node_st = st.fixed_dictionaries({
    "cpus": st.sampled_from([0, 1, 4]),
    "zone": st.sampled_from(["a", "b", None]),
    "state": st.sampled_from(["ready", "ready", "down"]),
    "availability": st.sampled_from(["active", "active", "drain"]),
    "gpus": st.sampled_from([(), ("gpu0",), ("gpu0", "gpu1")]),
})


def make_task(task_id: str, spec: dict, version: int) -> objects_pb2.Task:
    task = objects_pb2.Task(id=task_id, node_id=spec["node"], service_id=spec["service"],
                            spec_version=spec["version"], desired_state=spec["desired"])
    task.meta.version = version
    task.status.state = spec["state"]
    task.status.timestamp = NOW - spec["age"]
    reservations = task.spec.resources.reservations
    reservations.nano_cpus = spec["cpus"]
    reservations.memory_bytes = spec["mem"]
    ports = task.endpoint.ports if spec["ports_allocated"] else task.endpoint.spec.ports
    for port in spec["ports"]:
        ports.add(target_port=port, published_port=port, publish_mode=objects_pb2.PortConfig.HOST)
    if spec["generic"] == "assigned-named":
        task.assigned_generic_resources.append(genericresource.named("gpu", "gpu0"))
        reservations.generic.append(genericresource.discrete("gpu", 1))
    elif spec["generic"] == "assigned-discrete":
        task.assigned_generic_resources.append(genericresource.discrete("gpu", 1))
        reservations.generic.append(genericresource.discrete("gpu", 1))
    elif spec["generic"] == "reserved":
        reservations.generic.append(genericresource.discrete("gpu", 1))
    if spec["attachment"]:
        task.spec.attachment.container_id = "c1"
    return task


def build_node(node_id: str, spec: dict, version: int) -> objects_pb2.Node:
    node = make_node(node_id, cpus=spec["cpus"], mem="4G", state=spec["state"],
                     availability=spec["availability"],
                     labels={"zone": spec["zone"]} if spec["zone"] else {})
    node.meta.version = version
    for gpu in spec["gpus"]:
        node.description.resources.generic.append(genericresource.named("gpu", gpu))
    return node


def pool_state(pool: genericresource.Pool) -> tuple:
    return (+pool.discrete, {k: v for k, v in pool.named.items() if v}, +pool.used_discrete,
            {k: v for k, v in pool.used_named.items() if v})


def info_state(info: NodeInfo) -> tuple:
    return (info.node.id, info.node.meta.version, info.reserved_nano_cpus, info.reserved_memory_bytes,
            info.active_tasks, +info.tasks_by_service, set(info.used_host_ports), +info.recent_failures,
            pool_state(info.generic))


def infos_state(infos: dict) -> dict:
    return {node_id: info_state(info) for node_id, info in infos.items()}


class NodeSetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[str, objects_pb2.Node] = {}
        self.tasks: dict[str, objects_pb2.Task] = {}
        self.version = 0
        self.nodeset = NodeSet()

    def _next(self) -> int:
        self.version += 1
        return self.version

    @rule(task_id=st.sampled_from(TASK_IDS), spec=task_st)
    def write_task(self, task_id, spec) -> None:
        new = make_task(task_id, spec, self._next())
        old = self.tasks.get(task_id)
        self.tasks[task_id] = new
        self.nodeset.apply(ObjectCreated(Kind.TASK, new) if old is None else ObjectUpdated(Kind.TASK, new, old))

    @rule(task_id=st.sampled_from(TASK_IDS), state=st.sampled_from(STATES),
          desired=st.sampled_from(DESIRED))
    def move_task(self, task_id, state, desired) -> None:
        """A status report or a desired-state change: only the state fields change."""
        old = self.tasks.get(task_id)
        if old is None:
            return
        new = objects_pb2.Task()
        new.CopyFrom(old)
        new.meta.version = self._next()
        new.status.state = state
        new.desired_state = desired
        self.tasks[task_id] = new
        self.nodeset.apply(ObjectUpdated(Kind.TASK, new, old))

    @rule(task_id=st.sampled_from(TASK_IDS))
    def remove_task(self, task_id) -> None:
        old = self.tasks.pop(task_id, None)
        if old is not None:
            self.nodeset.apply(ObjectDeleted(Kind.TASK, old))

    @rule(node_id=st.sampled_from(NODE_IDS), spec=node_st)
    def write_node(self, node_id, spec) -> None:
        new = build_node(node_id, spec, self._next())
        old = self.nodes.get(node_id)
        self.nodes[node_id] = new
        self.nodeset.apply(ObjectCreated(Kind.NODE, new) if old is None else ObjectUpdated(Kind.NODE, new, old))

    @rule(node_id=st.sampled_from(NODE_IDS))
    def remove_node(self, node_id) -> None:
        old = self.nodes.pop(node_id, None)
        if old is not None:
            self.nodeset.apply(ObjectDeleted(Kind.NODE, old))

    @rule()
    def rebuild(self) -> None:
        """What a watch overflow does: start over from the store."""
        self.nodeset = NodeSet.build(self.nodes.values(), self.tasks.values())

    @invariant()
    def equals_a_rebuild(self) -> None:
        for now in (NOW, NOW + 1.0, NOW + 250.0, NOW + 5000.0):   # NOW + 1: a failure exactly 300 s old
            expected = infos_state(build_node_infos(self.nodes.values(), self.tasks.values(), now))
            assert infos_state(self.nodeset.snapshot(now)) == expected

    @invariant()
    def pending_tasks(self) -> None:
        assert self.nodeset.pending() == {t.id: t for t in self.tasks.values()
                                          if t.status.state == objects_pb2.PENDING}

    @invariant()
    def plans_alike_and_leaves_the_snapshot(self) -> None:
        pending = []
        for i, (service, version) in enumerate([("s1", 1), ("s1", 1), ("s2", 2), ("s3", 1)]):
            task = make_task(f"p{i}", {"node": "", "state": objects_pb2.PENDING,
                                       "desired": objects_pb2.RUNNING, "service": service,
                                       "version": version, "cpus": 10**9, "mem": 0, "ports": (80,),
                                       "ports_allocated": False,
                                       "generic": "reserved" if service == "s3" else "",
                                       "attachment": False, "age": 0.0}, 1)
            pending.append(task)
        pending.append(make_task("p-global", {"node": "n2", "state": objects_pb2.PENDING,
                                              "desired": objects_pb2.RUNNING, "service": "s2",
                                              "version": 2, "cpus": 0, "mem": 0, "ports": (443,),
                                              "ports_allocated": False, "generic": "",
                                              "attachment": False, "age": 0.0}, 1))
        for strategy in Strategy:
            snapshot = self.nodeset.snapshot(NOW)
            before = infos_state(snapshot)
            plan = schedule_on(snapshot, pending, NOW, strategy=strategy)
            assert plan == schedule(self.nodes.values(), self.tasks.values(), pending, NOW, strategy=strategy)
            assert infos_state(snapshot) == before, "schedule_on changed the NodeSet's infos"
            assert infos_state(self.nodeset.snapshot(NOW)) == before


NodeSetMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=30, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
TestNodeSet = NodeSetMachine.TestCase

