"""The worker and shoal-runtimed's network sync: a fake runtime records every call.

What must hold: a task's container is created only after a sync that names its networks; a task
being stopped leaves the backends (a sync) before its container stops, and a service task keeps
running for the drain delay meanwhile; identical states are pushed once; failures are logged
and retried, never raised into the session.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from agent_runtime.api import Backend, Network, NetworkState, Service, VirtualIP
from manager.dispatcher.netstate import encode, network_state_for
from manager.state import LocalProposer, MemoryStore, Store
from proto import cluster_pb2, objects_pb2
from worker import testing
from worker.network import NetworkAgent
from worker.worker import Worker

FRONT = Network(id="front", name="front", vni=4097, subnet="198.18.1.0/24", host_gateway_ip="198.18.1.241")
BACK = Network(id="back", name="back", vni=4098, subnet="198.18.2.0/24", host_gateway_ip="198.18.2.241")


def state_bytes(networks=(FRONT,), backends=("t1",)) -> bytes:
    services = [Service(id="web", name="web", virtual_ips=[VirtualIP("front", "198.18.1.2/24")],
                        backends=[Backend(t, "192.0.2.11", {"front": "198.18.1.11"}) for t in backends])]
    state = NetworkState(underlay_ip="192.0.2.11", networks=list(networks),
                         services=services if FRONT in networks else [])
    return json.dumps(state.to_json(), sort_keys=True).encode()


class FakeRuntime(testing.FakeRuntime):
    """worker.testing's FakeRuntime (it refuses, like shoal-runtimed, a container whose networks the
    last accepted sync does not name), with containers numbered c1, c2..."""

    def __init__(self) -> None:
        super().__init__(images=("shoal/busybox:latest",))
        self._ids = itertools.count(1)

    def new_id(self) -> str:
        return f"c{next(self._ids)}"


class Reports:
    def __init__(self) -> None:
        self.states: dict[str, list[int]] = {}

    def report(self, task_id: str, status: objects_pb2.TaskStatus) -> None:
        self.states.setdefault(task_id, []).append(status.state)

    def last(self, task_id: str) -> int | None:
        return (self.states.get(task_id) or [None])[-1]


async def wait_for(predicate, what: str, timeout: float = 5.0) -> None:
    """Yield to the loop until ``predicate()`` holds; fail naming ``what`` if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def make_task(task_id: str, networks: dict[str, str], desired=objects_pb2.RUNNING) -> objects_pb2.Task:
    task = objects_pb2.Task(id=task_id, node_id="n1", service_id="web", slot=1, desired_state=desired)
    task.meta.version = 1
    task.annotations.name = "web"
    task.status.state = objects_pb2.ASSIGNED
    task.spec.container.image = "shoal/busybox:latest"
    for net, addr in networks.items():
        task.networks.add(network_id=net, addresses=[addr], aliases=["api"])
    return task


def message(*tasks, network_state: bytes = b"", complete=False) -> cluster_pb2.AssignmentsMessage:
    kind = cluster_pb2.AssignmentsMessage.COMPLETE if complete else cluster_pb2.AssignmentsMessage.INCREMENTAL
    changes = [cluster_pb2.AssignmentChange(action=cluster_pb2.AssignmentChange.UPDATE,
                                            assignment=cluster_pb2.Assignment(task=t)) for t in tasks]
    return cluster_pb2.AssignmentsMessage(type=kind, changes=changes, network_state=network_state)


@pytest.fixture
async def worker_and_runtime():
    runtime, reports = FakeRuntime(), Reports()
    worker = Worker(runtime, reports, drain_delay=0.01)
    try:
        yield worker, runtime, reports
    finally:
        await worker.close()


async def test_the_sync_naming_a_tasks_networks_comes_before_its_container(worker_and_runtime):
    worker, runtime, reports = worker_and_runtime
    await worker.apply(message(make_task("t1", {"front": "198.18.1.11/24"}), network_state=state_bytes(),
                               complete=True))
    await wait_for(lambda: reports.last("t1") == objects_pb2.RUNNING, "t1 RUNNING")
    [create] = runtime.named("create")
    assert runtime.index(("network_sync", ("front",), ("t1",))) < runtime.index(create)
    spec = runtime.containers["c1"].config
    assert [(n.network_id, n.address, n.mac_address, n.aliases) for n in spec.networks] == [
        ("front", "198.18.1.11/24", "", ["api"])]


async def test_a_container_waits_for_a_later_sync_that_names_its_network(worker_and_runtime):
    worker, runtime, reports = worker_and_runtime
    # The task arrives while this node's state does not carry "back" yet (its gateway IP is pending).
    await worker.apply(message(make_task("t1", {"back": "198.18.2.11/24"}), network_state=state_bytes()))
    await wait_for(lambda: objects_pb2.PREPARING in reports.states.get("t1", []), "t1 PREPARING")
    for _ in range(20):
        await asyncio.sleep(0)
    assert runtime.named("create") == []
    await worker.apply(message(network_state=state_bytes(networks=(FRONT, BACK))))
    await wait_for(lambda: reports.last("t1") == objects_pb2.RUNNING, "t1 RUNNING")
    assert runtime.index(("network_sync", ("back", "front"), ("t1",))) < runtime.index(("create", "web.1.t1", ("back",)))


async def test_a_stopping_task_leaves_the_backends_before_its_container_stops(worker_and_runtime):
    worker, runtime, reports = worker_and_runtime
    task = make_task("t1", {"front": "198.18.1.11/24"})
    await worker.apply(message(task, network_state=state_bytes(), complete=True))
    await wait_for(lambda: reports.last("t1") == objects_pb2.RUNNING, "t1 RUNNING")
    stopping = objects_pb2.Task()
    stopping.CopyFrom(task)
    stopping.desired_state = objects_pb2.SHUTDOWN
    stopping.meta.version = 2
    await worker.apply(message(stopping, network_state=state_bytes(backends=())))
    await wait_for(lambda: reports.last("t1") == objects_pb2.SHUTDOWN, "t1 SHUTDOWN")
    assert runtime.index(("network_sync", ("front",), ())) < runtime.index(("stop", "c1"))


async def test_identical_states_are_pushed_once_and_a_complete_set_is_pushed_again(worker_and_runtime):
    worker, runtime, _ = worker_and_runtime
    await worker.apply(message(network_state=state_bytes()))
    await worker.apply(message(network_state=state_bytes()))
    await worker.apply(message())  # empty: unchanged
    assert len(runtime.named("network_sync")) == 1
    await worker.apply(message(network_state=state_bytes(backends=())))
    assert len(runtime.named("network_sync")) == 2
    await worker.apply(message(network_state=state_bytes(backends=()), complete=True))  # a new session
    assert len(runtime.named("network_sync")) == 3


async def test_a_failed_sync_is_logged_not_raised_and_retried(caplog):
    runtime = FakeRuntime()
    runtime.fail_syncs = 1
    agent = NetworkAgent(runtime, resync_period=3600, retry_delay=0.01)
    try:
        assert await agent.apply(state_bytes()) is False
        assert "nft refused" in caplog.text
        await wait_for(lambda: agent.in_sync, "the retry")
        assert len(runtime.named("network_sync")) == 2 and agent.synced_networks == {"front"}
    finally:
        await agent.close()


async def test_the_latest_state_is_pushed_again_periodically():
    runtime = FakeRuntime()
    agent = NetworkAgent(runtime, resync_period=0.01)
    try:
        await agent.apply(state_bytes())
        await wait_for(lambda: len(runtime.named("network_sync")) >= 3, "two resyncs")
        assert set(runtime.named("network_sync")) == {("network_sync", ("front",), ("t1",))}
    finally:
        await agent.close()


async def test_a_malformed_state_is_refused_without_ending_the_session(caplog):
    runtime = FakeRuntime()
    agent = NetworkAgent(runtime, resync_period=3600)
    try:
        assert await agent.apply(b'{"UnderlayIP": "192.0.2.11", "Netwerks": []}') is False
        assert await agent.apply(b"not json") is False
        assert runtime.named("network_sync") == [] and "unusable" in caplog.text
        assert await agent.wait_for_networks(["front"], timeout=0.01) is False
    finally:
        await agent.close()


async def test_a_state_the_manager_computes_is_accepted_by_the_worker():
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    node = objects_pb2.Node(id="n1")
    node.status.state = objects_pb2.NodeStatus.READY
    node.status.addr = "192.0.2.11"
    node.attachments.add(network_id="front", addresses=["198.18.1.241/24"])
    network = objects_pb2.Network(id="front", vni=4097)
    network.spec.annotations.name = "front"
    network.ipam.add(subnet="198.18.1.0/24", gateway="198.18.1.1")
    task = make_task("t1", {"front": "198.18.1.11/24"})

    def fill(tx):
        for obj in (node, network, task):
            fresh = type(obj)()
            fresh.CopyFrom(obj)
            fresh.ClearField("meta")
            tx.create(fresh)
    await store.update(fill)
    runtime = FakeRuntime()
    agent = NetworkAgent(runtime, resync_period=3600)
    try:
        assert await agent.apply(encode(network_state_for(store.view(), "n1"))) is True
        assert agent.synced_networks == {"front"}
    finally:
        await agent.close()


async def test_a_service_task_keeps_running_while_the_other_nodes_drop_it():
    """Docker's gossip-converge delay: a task that got traffic through its overlay address (a VIP or
    the routing mesh) leaves the backends, here at once and on the other nodes when their runtimed
    has converged, and its container runs on for the drain delay. Stopped at once, the requests
    other nodes still sent it failed (a rolling update with a client on a node holding 30
    containers: 308 failed). A task without an address stops at once."""
    runtime, reports = FakeRuntime(), Reports()
    worker = Worker(runtime, reports, drain_delay=3600)
    try:
        backend, plain = make_task("t1", {"front": "198.18.1.11/24"}), make_task("t2", {})
        await worker.apply(message(backend, plain, network_state=state_bytes(), complete=True))
        await wait_for(lambda: reports.last("t1") == reports.last("t2") == objects_pb2.RUNNING, "both RUNNING")
        stopping = []
        for task in (backend, plain):
            copy = objects_pb2.Task()
            copy.CopyFrom(task)
            copy.desired_state, copy.meta.version = objects_pb2.SHUTDOWN, 2
            stopping.append(copy)
        await worker.apply(message(*stopping, network_state=state_bytes(backends=())))
        await wait_for(lambda: reports.last("t2") == objects_pb2.SHUTDOWN, "t2 SHUTDOWN")
        [stopped] = runtime.named("stop")
        assert runtime.containers[stopped[1]].config.name.endswith(".t2")
        assert reports.last("t1") == objects_pb2.RUNNING
        assert [c.state.status for c in runtime.containers.values() if c.config.name.endswith(".t1")] == ["running"]
    finally:
        await worker.close()
