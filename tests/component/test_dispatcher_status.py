"""The dispatcher's UpdateTaskStatus against a real store: batches of any size are written (split
into changes under the store's limit), as a worker replaying every pending status after a
runtime restart sends them (issue 11: 250 statuses were refused with ChangeTooLarge, forever)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from manager.dispatcher import Dispatcher
from manager.state import MAX_ACTIONS_PER_CHANGE, Kind, LocalProposer, MemoryStore, ProposalTimeout, Store
from proto import cluster_pb2, objects_pb2
from tests.support.dispatcher import Context, Leader, NodeContext, authorize, authorize_node


async def store_with_tasks(count: int) -> Store:
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    node = objects_pb2.Node(id="n1")
    node.status.state = objects_pb2.NodeStatus.READY

    def fill(tx):
        tx.create(node)
        for i in range(count):
            task = objects_pb2.Task(id=f"t{i:04d}", node_id="n1", service_id="web", slot=i + 1,
                                    desired_state=objects_pb2.RUNNING)
            task.status.state = objects_pb2.ASSIGNED
            task.spec.container.image = "shoal/busybox:latest"
            tx.create(task)
    await store.update(fill, allow_split=True)
    return store


@pytest.mark.parametrize("count", [250, 3 * MAX_ACTIONS_PER_CHANGE + 1])
async def test_a_status_batch_larger_than_one_change_is_written_whole(count):
    store = await store_with_tasks(count)
    dispatcher = Dispatcher(store, Leader(), authorize)
    session = dispatcher.Session(cluster_pb2.SessionRequest(), Context())
    try:
        session_id = (await anext(session)).session_id
        version = store.view().version
        updates = [cluster_pb2.TaskStatusUpdate(task_id=f"t{i:04d}", status=objects_pb2.TaskStatus(
            state=objects_pb2.RUNNING, message="started")) for i in range(count)]
        request = cluster_pb2.UpdateTaskStatusRequest(session_id=session_id, updates=updates)
        await dispatcher.UpdateTaskStatus(request, Context())
        tasks = store.view().list(Kind.TASK)
        assert len(tasks) == count and all(t.status.state == objects_pb2.RUNNING for t in tasks)
        commits = store.view().version - version
        assert commits == -(-count // MAX_ACTIONS_PER_CHANGE), "split into changes under the limit"

        # the same batch again (a worker that did not see the answer) changes nothing
        await dispatcher.UpdateTaskStatus(request, Context())
        assert store.view().version == version + commits
    finally:
        await session.aclose()


async def test_reports_of_many_nodes_arriving_together_are_written_together():
    """Each UpdateTaskStatus was its own store change: one Raft round, one apply and one wake-up
    of every watcher per request, so 300 nodes reporting every 50 ms made the Raft log the
    leader's bottleneck (bench/scale.py). Requests that arrive while a batch is being written
    are written together, and each is answered once its statuses are committed."""
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    nodes = [f"n{i}" for i in range(20)]

    def fill(tx):
        for node_id in nodes:
            node = objects_pb2.Node(id=node_id)
            node.status.state = objects_pb2.NodeStatus.READY
            tx.create(node)
            task = objects_pb2.Task(id=f"t-{node_id}", node_id=node_id, service_id="web", slot=1,
                                    desired_state=objects_pb2.RUNNING)
            task.status.state = objects_pb2.ASSIGNED
            tx.create(task)
    await store.update(fill)
    dispatcher = Dispatcher(store, Leader(), authorize_node)
    contexts = {node_id: NodeContext(node_id) for node_id in nodes}
    sessions = [dispatcher.Session(cluster_pb2.SessionRequest(), contexts[n]) for n in nodes]
    try:
        ids = [(await anext(session)).session_id for session in sessions]
        version = store.view().version
        await asyncio.gather(*(dispatcher.UpdateTaskStatus(cluster_pb2.UpdateTaskStatusRequest(
            session_id=session_id, updates=[cluster_pb2.TaskStatusUpdate(
                task_id=f"t-{node_id}", status=objects_pb2.TaskStatus(state=objects_pb2.RUNNING))]),
            contexts[node_id]) for node_id, session_id in zip(nodes, ids)))
        assert all(t.status.state == objects_pb2.RUNNING for t in store.view().list(Kind.TASK))
        assert store.view().version - version == 1, "twenty requests, one change"
    finally:
        for session in sessions:
            await session.aclose()


async def test_a_batch_that_cannot_be_written_fails_each_request_naming_why():
    store = await store_with_tasks(3)
    dispatcher = Dispatcher(store, Leader(), authorize)
    session = dispatcher.Session(cluster_pb2.SessionRequest(), Context())
    try:
        session_id = (await anext(session)).session_id

        async def no_quorum(*args, **kwargs):
            raise ProposalTimeout("no quorum: 1 of 3 managers reachable")
        store.update_retry = no_quorum
        request = cluster_pb2.UpdateTaskStatusRequest(session_id=session_id, updates=[
            cluster_pb2.TaskStatusUpdate(task_id="t0000", status=objects_pb2.TaskStatus(state=objects_pb2.RUNNING))])
        with pytest.raises(Aborted) as aborted:
            await dispatcher.UpdateTaskStatus(request, AbortingContext())
        assert aborted.value.code == grpc.StatusCode.UNAVAILABLE
        assert "send them again" in aborted.value.details and "no quorum" in aborted.value.details
    finally:
        await session.aclose()


async def test_the_changes_of_a_large_batch_are_proposed_together():
    """A batch of thousands of statuses written one change after the other took longer than the
    agents' deadline, and every node's request failed at once (bench/scale.py at 300 nodes). Its
    changes are proposed together: all of them are in flight before the first commits."""
    count = 3 * MAX_ACTIONS_PER_CHANGE
    store = await store_with_tasks(count)
    dispatcher = Dispatcher(store, Leader(), authorize)
    session = dispatcher.Session(cluster_pb2.SessionRequest(), Context())
    try:
        session_id = (await anext(session)).session_id
        in_flight, most = [0], [0]
        gate = asyncio.Event()
        update_retry = store.update_retry

        async def gated(fn, *args, **kwargs):
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            if in_flight[0] == 3:
                gate.set()
            await gate.wait()           # no change commits before three are in flight
            try:
                return await update_retry(fn, *args, **kwargs)
            finally:
                in_flight[0] -= 1
        store.update_retry = gated
        updates = [cluster_pb2.TaskStatusUpdate(task_id=f"t{i:04d}", status=objects_pb2.TaskStatus(
            state=objects_pb2.RUNNING)) for i in range(count)]
        await asyncio.wait_for(dispatcher.UpdateTaskStatus(
            cluster_pb2.UpdateTaskStatusRequest(session_id=session_id, updates=updates), Context()), 10)
        assert most[0] == 3
        assert all(t.status.state == objects_pb2.RUNNING for t in store.view().list(Kind.TASK))
    finally:
        await session.aclose()


class Aborted(Exception):
    def __init__(self, code, details):
        super().__init__(details)
        self.code, self.details = code, details


class AbortingContext(Context):
    async def abort(self, code, details):
        raise Aborted(code, details)
