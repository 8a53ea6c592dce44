"""What a node is sent, and how a task becomes a container spec."""

from __future__ import annotations

from manager.dispatcher.assignments import assigned_objects, assigned_set, diff, status_update_allowed
from manager.state import Kind
from proto import cluster_pb2, objects_pb2
from tests.support.store import store_with
from worker.executor import TASK_LABEL, container_spec, task_name


def make_task(task_id: str, node: str = "n1", state=objects_pb2.ASSIGNED, desired=objects_pb2.RUNNING,
              secrets=()) -> objects_pb2.Task:
    task = objects_pb2.Task(id=task_id, node_id=node, service_id="svc", slot=2, desired_state=desired)
    task.annotations.name = "web"
    task.status.state = state
    task.spec.container.image = "shoal/busybox:latest"
    for secret in secrets:
        task.spec.container.secrets.add(secret_id=secret, secret_name=secret)
    return task


async def test_assigned_set_holds_scheduled_tasks_and_their_secrets_only():
    secret = objects_pb2.Secret(id="s1")
    other = objects_pb2.Secret(id="s2")
    store = await store_with(make_task("t1", secrets=["s1"]), make_task("t2", state=objects_pb2.PENDING),
                             make_task("t3", node="n2", secrets=["s2"]), secret, other)
    current = assigned_set(store.view(), "n1")
    assert set(current) == {("task", "t1"), ("secret", "s1")}


async def test_diff_sends_changes_then_removals():
    store = await store_with(make_task("t1"), make_task("t2"))
    first, sent = diff({}, assigned_objects(store.view(), "n1"))
    assert [c.assignment.task.id for c in first] == ["t1", "t2"]

    def move_on(tx):
        task = objects_pb2.Task()
        task.CopyFrom(tx.get(Kind.TASK, "t1"))
        task.desired_state = objects_pb2.SHUTDOWN
        tx.update(task)
        tx.delete(Kind.TASK, "t2")
    await store.update(move_on)
    changes, sent = diff(sent, assigned_objects(store.view(), "n1"))
    assert [(c.action, c.assignment.task.id) for c in changes] == [
        (cluster_pb2.AssignmentChange.UPDATE, "t1"), (cluster_pb2.AssignmentChange.REMOVE, "t2")]
    assert diff(sent, assigned_objects(store.view(), "n1"))[0] == []


async def test_a_nodes_own_status_reports_are_not_sent_back_to_it():
    """Every status a node reported came back to it as an UPDATE of the whole task (the version
    moved): as many messages again as reports. A change of status alone past ASSIGNED is not sent
    (SwarmKit's TasksEqualStable); any other change is, and so is the assignment itself."""
    store = await store_with(make_task("t1", state=objects_pb2.ASSIGNED))
    _, sent = diff({}, assigned_objects(store.view(), "n1"))

    def edit(change):
        def fn(tx):
            task = objects_pb2.Task()
            task.CopyFrom(tx.get(Kind.TASK, "t1"))
            change(task)
            tx.update(task)
        return fn

    for state in (objects_pb2.PREPARING, objects_pb2.STARTING, objects_pb2.RUNNING):
        await store.update(edit(lambda t, state=state: setattr(t.status, "state", state)))
        changes, sent = diff(sent, assigned_objects(store.view(), "n1"))
        assert changes == [], objects_pb2.TaskState.Name(state)
    await store.update(edit(lambda t: setattr(t, "desired_state", objects_pb2.SHUTDOWN)))
    changes, sent = diff(sent, assigned_objects(store.view(), "n1"))
    assert [(c.assignment.task.desired_state, c.assignment.task.status.state) for c in changes] == [
        (objects_pb2.SHUTDOWN, objects_pb2.RUNNING)]
    await store.update(edit(lambda t: setattr(t.status, "state", objects_pb2.SHUTDOWN)))
    assert diff(sent, assigned_objects(store.view(), "n1"))[0] == []


def test_status_updates_only_move_forward_and_only_from_the_owner():
    task = make_task("t1", state=objects_pb2.RUNNING)
    assert status_update_allowed(task, "n1", objects_pb2.TaskStatus(state=objects_pb2.COMPLETE)) is None
    assert "behind" in status_update_allowed(task, "n1", objects_pb2.TaskStatus(state=objects_pb2.STARTING))
    assert "not assigned" in status_update_allowed(task, "n2", objects_pb2.TaskStatus(state=objects_pb2.FAILED))


def test_container_spec_maps_the_task():
    task = make_task("abcdefghijklmnop")
    c = task.spec.container
    c.command.extend(["httpd"])
    c.args.extend(["-f", "-p", "80"])
    c.env.append("A=1")
    c.mounts.add(type=objects_pb2.Mount.TMPFS, target="/tmp", tmpfs_size_bytes=1 << 20)
    task.spec.resources.limits.memory_bytes = 64 << 20
    task.spec.resources.limits.nano_cpus = 500_000_000
    spec = container_spec(task)
    assert spec.entrypoint == ["httpd"] and spec.command == ["-f", "-p", "80"]
    assert spec.env == ["A=1"]
    assert spec.mounts[0].type == "tmpfs" and spec.mounts[0].tmpfs_size_bytes == 1 << 20
    assert spec.resources.memory_bytes == 64 << 20 and spec.resources.nano_cpus == 500_000_000
    assert spec.labels[TASK_LABEL] == "abcdefghijklmnop"
    assert spec.name == task_name(task) == "web.2.abcdefghijklmnop"
    assert spec.hostname == "abcdefghijkl"
