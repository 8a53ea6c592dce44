"""Dispatcher <-> agent over real gRPC with mutual TLS on loopback ports (no root).

The real Dispatcher (on a MemoryStore through a LocalProposer) and the real Agent and Reporter;
the worker side is a recorder of assignments with a status message. Heartbeat expiry runs on a
fake clock; waiting is on positive signals (the store or the agent changing), bounded only to
turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools

import grpc
import pytest

from manager.ca import (MANAGER_ROLE, WORKER_ROLE, RootCA, channel_credentials, channel_options,
                        make_node_key_and_csr, require_role, server_credentials)
from manager.dispatcher.dispatcher import GRACE_MULTIPLIER, Dispatcher
from manager.state import Kind, LocalProposer, MemoryStore, Store
from proto import cluster_pb2, cluster_pb2_grpc, objects_pb2 as pb
from proto.limits import MAX_STATUS_UPDATES
from proto.ports import MTLS_OFFSET
from worker.agent import Agent
from worker.reporter import Reporter

pytestmark = pytest.mark.timeout(60)

CLUSTER = "cluster-d"
PERIOD = 0.2  # heartbeat period the dispatcher hands out (seconds)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Leadership:
    def __init__(self, leader: bool, leader_addr: str | None = None) -> None:
        self.leader = leader
        self.addr = leader_addr

    def is_leader(self) -> bool:
        return self.leader

    def leader_addr(self) -> str | None:
        return self.addr


class RecordingWorker:
    """What the agent needs of a worker: apply assignments, say what is wrong with the node."""

    def __init__(self) -> None:
        self.messages: list[cluster_pb2.AssignmentsMessage] = []
        self.message = ""

    async def apply(self, message) -> None:
        self.messages.append(message)

    def status_message(self) -> str:
        return self.message


@pytest.fixture(scope="module")
def pki():
    now = dt.datetime.now(dt.timezone.utc)
    ca = RootCA.create(CLUSTER, now)

    def issue(node_id: str, role: str) -> tuple[bytes, bytes]:
        key, csr = make_node_key_and_csr()
        return ca.sign_node_csr(csr, node_id, role, now), key

    return ca, issue("mgr1", MANAGER_ROLE), issue("wrk1", WORKER_ROLE)


def new_store(clock) -> Store:
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory), clock=clock)
    return store


async def add_node(store: Store, node_id: str) -> None:
    def fn(tx):
        node = pb.Node(id=node_id, role=pb.WORKER)
        node.status.state = pb.NodeStatus.UNKNOWN
        tx.create(node)
    await store.update(fn)


class Manager:
    def __init__(self, pki, store: Store, leadership: Leadership, clock: Clock, cls=Dispatcher) -> None:
        self.ca, (self.cert, self.key), _ = pki
        self.store = store
        self.dispatcher = cls(store, leadership, functools.partial(require_role, cluster_id=CLUSTER),
                                     clock=clock)
        self.server = grpc.aio.server()
        cluster_pb2_grpc.add_DispatcherServicer_to_server(self.dispatcher, self.server)
        port = self.server.add_secure_port("127.0.0.1:0", server_credentials(self.cert, self.key,
                                                                              self.ca.cert_pem, True))
        self.addr = f"127.0.0.1:{port - MTLS_OFFSET}"  # agents dial mtls_addr(addr)

    async def __aenter__(self) -> "Manager":
        await self.server.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.server.stop(None)


def make_agent(pki, managers: list[str], worker=None, reporter=None) -> Agent:
    ca, _, (cert, key) = pki
    return Agent(managers, channel_credentials(ca.cert_pem, cert, key), channel_options(),
                 lambda: pb.NodeDescription(hostname="wrk1-host"), lambda message: asyncio.sleep(0),
                 worker=worker, reporter=reporter)


async def until(predicate, what: str, timeout: float = 20.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def node(store: Store, node_id: str = "wrk1") -> pb.Node:
    return store.view().get(Kind.NODE, node_id)


@pytest.fixture
async def cluster_period():
    """Hand out a short heartbeat period (the cluster object's dispatcher setting)."""
    def set_period(tx):
        cluster = pb.Cluster(id="c1")
        cluster.spec.dispatcher.heartbeat_period = PERIOD
        tx.create(cluster)
    return set_period


async def test_a_session_marks_the_node_ready_and_carries_its_status_message(pki, cluster_period):
    clock = Clock()
    store = new_store(clock)
    await store.update(cluster_period)
    await add_node(store, "wrk1")
    worker = RecordingWorker()
    async with Manager(pki, store, Leadership(True), clock) as manager:
        agent = make_agent(pki, [manager.addr], worker=worker, reporter=Reporter())
        runner = asyncio.create_task(agent.run())
        try:
            await until(lambda: node(store).status.state == pb.NodeStatus.READY, "the node READY")
            assert node(store).description.hostname == "wrk1-host"
            await until(lambda: worker.messages, "the first (complete) assignment set")
            assert worker.messages[0].type == cluster_pb2.AssignmentsMessage.COMPLETE
            worker.message = "shoal-runtimed is unreachable: cannot connect"
            await until(lambda: node(store).status.message == worker.message, "the status message in the store")
            worker.message = ""
            await until(lambda: node(store).status.message == "", "the status message cleared")
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


async def test_a_node_that_stops_heartbeating_is_marked_down(pki, cluster_period):
    clock = Clock()
    store = new_store(clock)
    await store.update(cluster_period)
    await add_node(store, "wrk1")
    async with Manager(pki, store, Leadership(True), clock) as manager:
        agent = make_agent(pki, [manager.addr])
        runner = asyncio.create_task(agent.run())
        await until(lambda: node(store).status.state == pb.NodeStatus.READY, "the node READY")
        await until(lambda: agent.session_id is not None, "a session")
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await manager.dispatcher._expire(PERIOD)
        assert node(store).status.state == pb.NodeStatus.READY  # within the grace: still up
        clock.now += GRACE_MULTIPLIER * PERIOD + 1
        await manager.dispatcher._expire(PERIOD)
        assert node(store).status.state == pb.NodeStatus.DOWN
        assert "heartbeat" in node(store).status.message


async def test_a_follower_redirects_the_agent_to_the_leader(pki, cluster_period):
    clock = Clock()
    store = new_store(clock)
    await store.update(cluster_period)
    await add_node(store, "wrk1")
    async with Manager(pki, store, Leadership(True), clock) as leader:
        async with Manager(pki, store, Leadership(False, leader.addr), clock) as follower:
            agent = make_agent(pki, [follower.addr])
            runner = asyncio.create_task(agent.run())
            try:
                await until(lambda: agent.connected.is_set(), "a session")
                assert "wrk1" in leader.dispatcher._sessions and not follower.dispatcher._sessions
                assert leader.addr in agent.managers
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)


async def test_250_status_updates_arrive_in_bounded_batches(pki, cluster_period):
    """Issue 11 #1, worker side: a large backlog goes out in requests the dispatcher takes."""
    clock = Clock()
    store = new_store(clock)
    await store.update(cluster_period)
    await add_node(store, "wrk1")
    ids = [f"task{i:04d}" for i in range(250)]
    for chunk in range(0, 250, 50):
        def fn(tx, chunk=chunk):
            for task_id in ids[chunk:chunk + 50]:
                t = pb.Task(id=task_id, service_id="s", node_id="wrk1", desired_state=pb.RUNNING)
                t.status.state = pb.ASSIGNED
                tx.create(t)
        await store.update(fn)
    reporter = Reporter()
    for task_id in ids:
        reporter.report(task_id, pb.TaskStatus(state=pb.RUNNING, message="started"))
    sizes: list[int] = []

    class Recording(Dispatcher):
        async def UpdateTaskStatus(self, request, context):
            sizes.append(len(request.updates))
            return await super().UpdateTaskStatus(request, context)

    async with Manager(pki, store, Leadership(True), clock, Recording) as manager:
        agent = make_agent(pki, [manager.addr], worker=RecordingWorker(), reporter=reporter)
        runner = asyncio.create_task(agent.run())
        try:
            await until(lambda: all(store.view().get(Kind.TASK, i).status.state == pb.RUNNING for i in ids),
                        "every task RUNNING in the store")
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
    assert sum(sizes) >= 250 and max(sizes) <= MAX_STATUS_UPDATES
