"""When the task reaper looks again (its pass reads every task): a scale-up does not make it
due, a slot whose history grew past the limit does, and so does a task created for a service
that is already gone. Before, every created task made a pass due (at 300 simulated nodes x
10,000 tasks its passes were the leader's largest cost, bench/scale.py)."""

from __future__ import annotations

from manager.reaper import TaskReaper
from manager.state import Kind, LocalProposer, MemoryStore, ObjectCreated, ObjectDeleted, Store
from proto import objects_pb2


def task(task_id: str, slot: int, service_id: str = "s1") -> objects_pb2.Task:
    return objects_pb2.Task(id=task_id, service_id=service_id, slot=slot)


async def reaper_at_rest() -> TaskReaper:
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    await store.update(lambda tx: tx.create(objects_pb2.Service(id="s1")))
    reaper = TaskReaper(store)
    reaper._resync(store.view())
    reaper._due = False
    return reaper


async def test_a_scale_up_does_not_make_the_reaper_due():
    reaper = await reaper_at_rest()
    for slot in range(1, 1001):
        reaper._note(ObjectCreated(Kind.TASK, task(f"t{slot}", slot)))
    assert not reaper._has_work()


async def test_a_slot_past_its_history_limit_does():
    reaper = await reaper_at_rest()
    for n in range(5):                                  # the default limit: 5 tasks per slot
        reaper._note(ObjectCreated(Kind.TASK, task(f"t{n}", 1)))
    assert not reaper._has_work()
    reaper._note(ObjectDeleted(Kind.TASK, task("t0", 1)))
    reaper._note(ObjectCreated(Kind.TASK, task("t5", 1)))
    assert not reaper._has_work()                       # back to 5
    reaper._note(ObjectCreated(Kind.TASK, task("t6", 1)))
    assert reaper._has_work()


async def test_a_task_of_a_removed_service_does():
    reaper = await reaper_at_rest()
    reaper._note(ObjectCreated(Kind.TASK, task("t1", 1, service_id="gone")))
    assert reaper._has_work()
