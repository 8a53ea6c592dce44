"""The worker's one event stream: routing by task, out-of-order events, a lost stream and resync."""

from __future__ import annotations

import asyncio

from agent_runtime.api import ContainerSpec, container_event
from worker.events import CREATED, EXITED, REMOVED, RUNNING, ContainerEvents, Observed, observed_from_event
from worker.executor import TASK_LABEL
from worker.testing import FakeRuntime

FAST = (0.01, 0.05)


def ev(action: str, cid: str, task: str = "t1", **attrs: str) -> dict:
    return container_event(action, cid, {TASK_LABEL: task, "name": "x", **attrs})


def test_events_become_observed_states():
    assert observed_from_event(ev("create", "a")) == Observed("a", "t1", CREATED)
    assert observed_from_event(ev("start", "a")).status == RUNNING
    died = observed_from_event(ev("die", "a", exitCode="137", oomKilled="true"))
    assert (died.status, died.exit_code, died.oom_killed) == (EXITED, 137, True)
    assert observed_from_event(ev("destroy", "a")).status == REMOVED
    assert observed_from_event(ev("kill", "a", signal="9")) is None
    assert observed_from_event({"Type": "network", "Action": "create"}) is None


def test_each_event_reaches_only_its_tasks_watcher():
    router = ContainerEvents(FakeRuntime())
    seen: dict[str, list[str]] = {"t1": [], "t2": []}
    for task in seen:
        router.watch(task, lambda o, task=task: seen[task].append(o.status))
    router.apply_event(ev("create", "a", "t1"))
    router.apply_event(ev("create", "b", "t2"))
    router.apply_event(ev("start", "b", "t2"))
    router.apply_event(ev("kill", "b", "t2", signal="15"))  # no state change: nobody told
    assert seen == {"t1": [CREATED], "t2": [CREATED, RUNNING]}
    assert router.observed("t2").container_id == "b"


def test_late_events_never_move_a_container_backwards():
    router = ContainerEvents(FakeRuntime())
    seen: list[str] = []
    router.watch("t1", lambda o: seen.append(o.status))
    router.apply_event(ev("die", "a", exitCode="3"))   # the die overtook the start and the create
    router.apply_event(ev("start", "a"))
    router.apply_event(ev("create", "a"))
    assert router.observed("t1").status == EXITED and router.observed("t1").exit_code == 3
    assert seen == [EXITED]
    router.apply_event(ev("destroy", "a"))
    assert router.observed("t1") is None and "a" not in router.by_container


def test_unwatched_changes_go_to_the_unclaimed_callback():
    router = ContainerEvents(FakeRuntime())
    unclaimed: list[Observed] = []
    router.on_unclaimed(unclaimed.append)
    router.apply_event(ev("create", "a", "stray"))
    assert [o.task_id for o in unclaimed] == ["stray"]


async def wait_until(predicate, what: str, timeout: float = 5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_a_lost_stream_is_resynchronised_from_the_list():
    rt = FakeRuntime()
    router = ContainerEvents(rt, reconnect=FAST)
    seen: list[Observed] = []
    router.watch("t1", seen.append)
    runner = asyncio.create_task(router.run())
    try:
        await asyncio.wait_for(router.connected.wait(), 5)
        a = await rt.create(ContainerSpec(image="busybox", labels={TASK_LABEL: "t1"}))
        await rt.start(a)
        await wait_until(lambda: router.observed("t1") and router.observed("t1").status == RUNNING, "running")
        gone = await rt.create(ContainerSpec(image="busybox", labels={TASK_LABEL: "t2"}))
        await wait_until(lambda: router.observed("t2") is not None, "t2's container")

        rt.down()                             # runtimed dies: the stream is cut
        await wait_until(lambda: not router.connected.is_set(), "the stream to be seen lost")
        assert "Connection refused" in router.error or "dropped" in router.error
        rt.exit(a, 9)                         # while nobody listens: the container dies...
        del rt.containers[gone]               # ...and another disappears
        rt.up()
        await asyncio.wait_for(router.connected.wait(), 5)
        assert router.error == ""
        assert router.observed("t1").status == EXITED and router.observed("t1").exit_code == 9
        assert router.observed("t2") is None
        assert seen[-1].status == EXITED and router.resyncs >= 2
        assert rt.calls["events"] >= 2       # one stream at a time, reopened
    finally:
        runner.cancel()


async def test_the_list_is_the_truth_where_it_contradicts_an_earlier_event():
    """A container restarted by hand while the stream was lost shows running again in the list."""
    router = ContainerEvents(FakeRuntime())
    router.apply_event(ev("die", "a"))
    rt = FakeRuntime()
    cid = await rt.create(ContainerSpec(image="busybox", labels={TASK_LABEL: "t1"}))
    await rt.start(cid)
    router.apply_event(ev("die", cid))
    router.resync(await rt.list(all=True))
    assert router.observed("t1").status == RUNNING
    assert "a" not in router.by_container
