"""Worker and TaskManager against FakeRuntime (no root): density, adoption, runtime faults.

Runtime faults as users meet them: runtimed killed while tasks start (calls refused, answers lost),
a runtimed that stops answering (deadlines), removals that fail, shoald restarted over running
containers.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_runtime.api import ShoalRuntimeError
from proto import cluster_pb2, objects_pb2 as pb
from worker.executor import TASK_LABEL
from worker.reporter import Reporter
from worker.testing import FakeRuntime
from worker.worker import Worker

FAST = (0.01, 0.05)


def task(n: int, desired: int = pb.RUNNING, image: str = "busybox", service: str = "svc", **container) -> pb.Task:
    t = pb.Task(id=f"task{n:04d}", service_id=service, node_id="node1", slot=n, desired_state=desired)
    t.annotations.name = f"{service}.{n}"
    t.spec.container.image = image
    for key, value in container.items():
        setattr(t.spec.container, key, value)
    return t


def message(tasks: list[pb.Task], complete: bool = True, removed: list[pb.Task] = ()) -> cluster_pb2.AssignmentsMessage:
    kind = cluster_pb2.AssignmentsMessage.COMPLETE if complete else cluster_pb2.AssignmentsMessage.INCREMENTAL
    changes = [cluster_pb2.AssignmentChange(action=cluster_pb2.AssignmentChange.UPDATE,
                                            assignment=cluster_pb2.Assignment(task=t)) for t in tasks]
    changes += [cluster_pb2.AssignmentChange(action=cluster_pb2.AssignmentChange.REMOVE,
                                             assignment=cluster_pb2.Assignment(task=t)) for t in removed]
    return cluster_pb2.AssignmentsMessage(type=kind, changes=changes)


class Statuses:
    """The reporter's side: the newest status of each task, as the dispatcher would see it."""

    def __init__(self) -> None:
        self.latest: dict[str, pb.TaskStatus] = {}
        self.reporter = Reporter(interval=0)
        self.reporter.report = self.record

    def record(self, task_id: str, status: pb.TaskStatus) -> None:
        self.latest[task_id] = status

    def states(self, ids) -> set[str]:
        return {pb.TaskState.Name(self.latest[i].state) if i in self.latest else "NONE" for i in ids}


async def until(predicate, what: str, timeout: float = 10.0):
    """Wait for a positive signal (the bound only turns a hang into a failure)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def node():
    made = []

    def make(rt: FakeRuntime | None = None) -> tuple[Worker, FakeRuntime, Statuses]:
        rt = rt or FakeRuntime()
        statuses = Statuses()
        worker = Worker(rt, statuses.reporter, retry=FAST)
        worker.events._reconnect = FAST
        made.append(worker)
        return worker, rt, statuses

    yield make
    for worker in made:
        await worker.close()


def labelled(rt: FakeRuntime) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in rt.containers.values():
        out.setdefault(c.config.labels[TASK_LABEL], []).append(c.state.status)
    return out


async def test_five_hundred_tasks_run_on_one_stream_and_go_away(node):
    worker, rt, st = node()
    tasks = [task(i) for i in range(500)]
    await worker.apply(message(tasks))
    ids = [t.id for t in tasks]
    await until(lambda: st.states(ids) == {"RUNNING"}, "500 tasks RUNNING")
    assert len(rt.running()) == 500
    assert rt.calls["events"] == 1 and "wait" not in rt.calls  # one stream; no call per container waits
    await worker.apply(message([]))  # scaled to 0
    await until(lambda: not rt.containers, "every container removed")


async def test_a_container_that_exits_fails_its_task_with_the_exit_code(node):
    worker, rt, st = node()
    await worker.apply(message([task(1)]))
    await until(lambda: st.states(["task0001"]) == {"RUNNING"}, "RUNNING")
    [c] = rt.running()
    rt.exit(c.id, 137, oom=True)
    await until(lambda: st.states(["task0001"]) == {"FAILED"}, "FAILED")
    assert st.latest["task0001"].err == "task: OOM killed (exit 137)"
    assert st.latest["task0001"].exit_code == 137


async def test_runtimed_killed_while_tasks_start_leaves_one_container_per_task(node):
    """Issue 11 #4: calls refused and answers lost while runtimed restarts fail no task and
    duplicate no container; each task's container is adopted when runtimed is back."""
    worker, rt, st = node()
    rt.lose_answer("create", times=5)    # five creates happen, their answers are lost (SIGKILL mid-call)
    rt.lose_answer("start", times=3)
    tasks = [task(i) for i in range(16)]
    await worker.apply(message(tasks))
    await until(lambda: rt.calls["create"] >= 8, "creates under way")
    rt.down()
    await asyncio.sleep(0.05)  # the node keeps trying against a dead runtimed
    rt.up()
    ids = [t.id for t in tasks]
    await until(lambda: st.states(ids) == {"RUNNING"}, "16 tasks RUNNING")
    assert labelled(rt) == {i: ["running"] for i in ids}
    assert not any(s.state == pb.FAILED for s in st.latest.values())


async def test_an_unanswered_call_fails_the_task_naming_the_call(node):
    """A runtimed that stops answering: the task FAILS with an error naming the call; when the
    call lands late, its container is stopped with the task, and the node runs new tasks again."""
    worker, rt, st = node(FakeRuntime(deadline=0.05))
    rt.hang("start")
    await worker.apply(message([task(1)]))
    await until(lambda: st.states(["task0001"]) == {"FAILED"}, "FAILED")
    status = st.latest["task0001"]
    assert "did not answer POST /containers/" in status.err and "/start" in status.err, status.err
    rt.release("start")
    [c] = rt.containers.values()
    await rt.start(c.id)                   # the unanswered start lands after all
    await until(lambda: not rt.running(), "the failed task's late container stopped")
    await worker.apply(message([task(1, desired=pb.SHUTDOWN), task(2)]))  # the orchestrator's replacement
    await until(lambda: st.states(["task0002"]) == {"RUNNING"}, "the replacement RUNNING")


async def test_a_late_create_for_a_task_no_longer_here_is_removed(node):
    worker, rt, st = node(FakeRuntime(deadline=0.05))
    rt.hang("create")
    await worker.apply(message([task(1)]))
    await until(lambda: st.states(["task0001"]) == {"FAILED"}, "FAILED")
    await worker.apply(message([]))       # the failed task is no longer assigned
    rt.release("create")
    await rt.create(task_spec := (await _spec(task(1))))  # the create runtimed had queued lands now
    assert task_spec.labels[TASK_LABEL] == "task0001"
    await until(lambda: not rt.containers, "the late container removed")


async def _spec(t: pb.Task):
    from worker.executor import container_spec
    return container_spec(t)


async def test_a_failed_removal_is_retried_until_it_succeeds(node):
    worker, rt, st = node()
    await worker.apply(message([task(1), task(2)]))
    await until(lambda: len(rt.running()) == 2, "two running")
    rt.fail("remove", ShoalRuntimeError("device or resource busy"), times=3)
    await worker.apply(message([task(2)]))
    await until(lambda: list(labelled(rt)) == ["task0002"], "task0001's container removed after 3 failures")
    assert rt.calls["remove"] >= 4


async def test_a_removal_refused_while_runtimed_is_down_happens_when_it_is_back(node):
    worker, rt, st = node()
    await worker.apply(message([task(1)]))
    await until(lambda: len(rt.running()) == 1, "running")
    rt.down()
    await worker.apply(message([]))
    await asyncio.sleep(0.05)
    assert len(rt.containers) == 1
    rt.up()
    await until(lambda: not rt.containers, "removed once runtimed is back")


async def test_a_restarted_worker_adopts_running_containers(node):
    worker, rt, st = node()
    tasks = [task(i) for i in range(5)]
    await worker.apply(message(tasks))
    await until(lambda: len(rt.running()) == 5, "five running")
    stray = await rt.create(await _spec(task(99)))  # a container of a task that is gone
    await worker.close()
    creates = rt.calls["create"]

    again, _, st2 = node(rt)
    reported = [t for t in tasks]
    for t in reported:
        t.status.state = pb.RUNNING
    await again.apply(message(reported))
    await until(lambda: stray not in rt.containers, "the unassigned container removed")
    # The positive signal that adoption is decided: a task assigned afterwards runs (the worker
    # applies assignments in order), and it is the only container created since the restart.
    later = task(6)
    await again.apply(message(reported + [later]))
    await until(lambda: st2.states([later.id]) == {"RUNNING"}, "a task assigned after the restart running")
    assert rt.calls["create"] == creates + 1 and len(rt.running()) == 6
    assert not any(s.state == pb.FAILED for s in st2.latest.values())


async def test_an_unhealthy_container_is_stopped_and_its_task_failed(node):
    worker, rt, st = node()
    rt.image_health["busybox"] = {"Test": ["CMD", "true"], "Interval": 10**7, "Retries": 2}
    await worker.apply(message([task(1)]))
    await until(lambda: rt.running() and st.states(["task0001"]) == {"STARTING"}, "started, health starting")
    assert st.latest["task0001"].health == "starting"
    rt.set_health(rt.running()[0].id, "healthy")
    await until(lambda: st.states(["task0001"]) == {"RUNNING"} and st.latest["task0001"].health == "healthy",
                "healthy")
    [c] = rt.running()
    rt.set_health(c.id, "unhealthy")
    await until(lambda: st.states(["task0001"]) == {"FAILED"}, "FAILED")
    assert st.latest["task0001"].err == "task: unhealthy container"
    assert not rt.running()


async def test_a_task_held_at_ready_is_created_not_started(node):
    worker, rt, st = node()
    await worker.apply(message([task(1, desired=pb.READY)]))
    await until(lambda: st.states(["task0001"]) == {"READY"}, "READY")
    assert [c.state.status for c in rt.containers.values()] == ["created"]
    await worker.apply(message([task(1)], complete=False))
    await until(lambda: st.states(["task0001"]) == {"RUNNING"}, "RUNNING")


async def test_a_missing_image_rejects_the_task(node):
    worker, rt, st = node()
    await worker.apply(message([task(1, image="missing/image")]))
    await until(lambda: st.states(["task0001"]) == {"REJECTED"}, "REJECTED")
    assert "manifest unknown" in st.latest["task0001"].err
