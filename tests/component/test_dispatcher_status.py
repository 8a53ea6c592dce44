"""The dispatcher's UpdateTaskStatus against a real store: batches of any size are written (split
into changes under the store's limit), as a worker replaying every pending status after a
runtime restart sends them (issue 11: 250 statuses were refused with ChangeTooLarge, forever)."""

from __future__ import annotations


import pytest

from manager.dispatcher import Dispatcher
from manager.state import MAX_ACTIONS_PER_CHANGE, Kind, LocalProposer, MemoryStore, Store
from proto import cluster_pb2, objects_pb2
from tests.support.dispatcher import Context, Leader, authorize


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
