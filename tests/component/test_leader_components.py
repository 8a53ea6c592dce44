"""The leader's components together — Allocator, Orchestrator, Scheduler, TaskReaper — on one
store with a LocalProposer, a fake clock and a simulated worker that reports task states the
way worker/task_manager.py does (READY once prepared, held there while desired READY, RUNNING,
SHUTDOWN when told to stop): ``Lab`` in tests/support/leader_lab.py.
"""

from __future__ import annotations

from collections import Counter

import pytest

from manager.state import Kind, LocalProposer, MemoryStore, ObjectCreated, ObjectUpdated, copy_of
from proto import objects_pb2, store_pb2
from tests.support.leader_lab import TS, Lab, converged


def drain(watch) -> list:
    events = []
    while (event := watch.get_nowait()) is not None:
        events.append(event)
    watch.close()
    return events


@pytest.fixture
async def lab():
    lab = Lab()
    await lab.start()
    try:
        yield lab
    finally:
        await lab.stop()


# ---- a service's life ---------------------------------------------------------------------------


async def test_six_replicas_are_allocated_spread_two_per_node_and_converge(lab):
    watch = lab.record()
    sid = await lab.create_service("web", replicas=6)
    await lab.wait_for(lambda: len([t for t in lab.tasks(sid) if t.status.state == TS.ASSIGNED]) == 6,
                       "six tasks assigned")
    assert Counter(t.node_id for t in lab.tasks(sid)) == {"node-1": 2, "node-2": 2, "node-3": 2}
    events = drain(watch)
    went_pending = {e.obj.id for e in events if isinstance(e, ObjectUpdated)
                    and e.old.status.state == TS.NEW and e.obj.status.state == TS.PENDING}
    assert went_pending == {t.id for t in lab.tasks(sid)}, "every task passed through the allocator"
    assert all(not t.networks for t in lab.tasks(sid)), "a service without networks gets no attachments"

    await lab.wait_for(converged(lab, sid, 6), "six replicas running", work=True)
    assert all(t.spec.container.image == "busybox" and t.desired_state == TS.RUNNING for t in lab.tasks(sid))
    assert len(lab.tasks(sid)) == 6


async def test_a_hundred_replicas_take_one_or_two_changes_per_step(lab):
    watch = lab.record()
    sid = await lab.create_service("many", replicas=100)
    await lab.wait_for(lambda: sum(t.status.state == TS.ASSIGNED for t in lab.tasks(sid)) == 100,
                       "a hundred tasks assigned")
    events = drain(watch)
    created = {e.obj.meta.version for e in events if isinstance(e, ObjectCreated)}
    pending = {e.obj.meta.version for e in events if isinstance(e, ObjectUpdated)
               and e.obj.status.state == TS.PENDING and e.old.status.state == TS.NEW}
    assigned = {e.obj.meta.version for e in events if isinstance(e, ObjectUpdated)
                and e.obj.status.state == TS.ASSIGNED}
    assert len(created) <= 2 and len(pending) <= 2 and len(assigned) <= 2, (created, pending, assigned)
    assert max(Counter(t.node_id for t in lab.tasks(sid)).values()) == 34
    assert lab.components["scheduler"].passes <= 2


async def test_scaling_to_zero_shuts_every_task_down_and_stopped_tasks_are_deleted(lab):
    sid = await lab.create_service("web", replicas=6)
    await lab.wait_for(converged(lab, sid, 6), "six replicas running", work=True)

    await lab.scale(sid, 0)
    await lab.wait_for(lambda: all(t.desired_state >= TS.SHUTDOWN for t in lab.tasks(sid)),
                       "every task told to stop")
    assert len(lab.tasks(sid)) == 6, "running tasks are not deleted before they stop"
    await lab.wait_for(lambda: not lab.tasks(sid), "stopped tasks deleted", work=True)


async def test_a_removed_services_tasks_are_stopped_then_deleted(lab):
    keep = await lab.create_service("keep", replicas=2)
    gone = await lab.create_service("gone", replicas=3)
    await lab.wait_for(lambda: converged(lab, keep, 2)() and converged(lab, gone, 3)(), "both running",
                       work=True)

    await lab.remove_service(gone)
    await lab.wait_for(lambda: all(t.desired_state == TS.REMOVE for t in lab.tasks(gone)),
                       "the removed service's tasks marked REMOVE")
    assert len(lab.tasks(gone)) == 3
    await lab.wait_for(lambda: not lab.tasks(gone), "its tasks deleted once stopped", work=True)
    assert converged(lab, keep, 2)(), "the other service is untouched"


async def test_the_tasks_of_a_node_that_goes_down_are_replaced_on_the_others(lab):
    sid = await lab.create_service("web", replicas=6)
    await lab.wait_for(converged(lab, sid, 6), "six replicas running", work=True)
    lost = {t.id for t in lab.tasks(sid) if t.node_id == "node-1"}
    assert len(lost) == 2

    await lab.set_node("node-1", state=objects_pb2.NodeStatus.DOWN)
    await lab.wait_for(lambda: converged(lab, sid, 6)() and not any(t.node_id == "node-1" for t in lab.running(sid)),
                       "six replicas running on the two nodes left", work=True)
    assert Counter(t.node_id for t in lab.running(sid)) == {"node-2": 3, "node-3": 3}
    old = {t.id: t for t in lab.tasks(sid) if t.id in lost}
    assert all(t.desired_state == TS.SHUTDOWN for t in old.values()), "the lost tasks are shut down"


async def test_a_failed_task_is_replaced_after_the_restart_delay_on_the_fake_clock(lab):
    sid = await lab.create_service("web", replicas=2, restart="any", restart_delay=10.0)
    await lab.wait_for(converged(lab, sid, 2), "two replicas running", work=True)
    victim = lab.running(sid)[0]
    failed_at = lab.clock()

    await lab.report(victim.id, TS.FAILED, "failed", err="task: non-zero exit (1)", exit_code=1)

    def replacement():
        return next((t for t in lab.tasks(sid) if t.slot == victim.slot and t.id != victim.id), None)
    await lab.wait_for(lambda: replacement() is not None and replacement().status.state == TS.READY,
                       "a replacement prepared", work=True)
    held = replacement()
    assert held.desired_state == TS.READY, "held while the restart delay runs"
    assert held.restart_at == pytest.approx(failed_at + 10.0)
    assert lab.view().get(Kind.TASK, victim.id).desired_state == TS.SHUTDOWN

    lab.clock.advance(10.0)
    await lab.wait_for(converged(lab, sid, 2), "the replacement running", work=True)
    assert replacement().status.state == TS.RUNNING
    assert len(lab.tasks(sid)) == 3, "the failed task stays as history"


async def test_an_unplaceable_task_explains_why_and_is_placed_once_a_node_fits(lab):
    sid = await lab.create_service("picky", replicas=2, constraints=["node.labels.zone==mars"])

    def explained():
        tasks = lab.tasks(sid)
        return len(tasks) == 2 and all(t.status.state == TS.PENDING
                                       and t.status.message.startswith("no suitable node") for t in tasks)
    await lab.wait_for(explained, "the scheduler's explanation")
    assert lab.tasks(sid)[0].status.message == \
        "no suitable node (scheduling constraints not satisfied on 3 nodes)"

    await lab.set_node("node-2", labels={"zone": "mars"})
    await lab.wait_for(converged(lab, sid, 2), "both running on node-2", work=True)
    assert {t.node_id for t in lab.tasks(sid)} == {"node-2"}


async def test_a_global_service_runs_one_task_on_each_node(lab):
    sid = await lab.create_service("agent", mode="global")
    await lab.wait_for(lambda: len(lab.running(sid)) == 3, "one task per node running", work=True)
    assert sorted(t.node_id for t in lab.running(sid)) == ["node-1", "node-2", "node-3"]


async def test_a_rolling_update_replaces_tasks_in_waves(lab):
    parallelism, delay = 2, 10.0
    sid = await lab.create_service("web", replicas=6, parallelism=parallelism, update_delay=delay,
                                   monitor=5.0)
    await lab.wait_for(converged(lab, sid, 6), "six replicas running", work=True)

    def edit(spec):
        spec.task.container.image = "busybox:2"
    await lab.update_service(sid, edit)

    def updated():
        fresh = [t for t in lab.running(sid) if t.spec_version == 2]
        return (len(fresh) == 6 and converged(lab, sid, 6)()
                and lab.service(sid).update_status.state == objects_pb2.UpdateStatus.COMPLETED)
    await lab.wait_for(updated, "the update completed", work=True, tick=0.5, timeout=20.0)

    new = sorted((t for t in lab.tasks(sid) if t.spec_version == 2), key=lambda t: t.meta.created_at)
    assert len(new) == 6, "one new task per slot, no retries"
    running_since = [t.status.timestamp for t in new]
    for k, task in enumerate(new, start=1):
        free_workers = sum(1 for r in running_since if r + delay <= task.meta.created_at)
        assert free_workers >= k - parallelism, (
            f"task {k} of the update started while {parallelism} others were in flight or waiting")
    assert len({t.meta.created_at for t in new}) >= 3, "at least three waves"
    assert all(t.desired_state >= TS.SHUTDOWN for t in lab.tasks(sid) if t.spec_version == 1)


# ---- writes that conflict -----------------------------------------------------------------------


class RacingWorker(LocalProposer):
    """Before the first change that stops a task, a worker report for that task commits: the
    change the orchestrator built is then stale and must be rejected and reconciled again."""

    def __init__(self, memory: MemoryStore) -> None:
        super().__init__(memory)
        self.memory = memory
        self.raced = 0

    async def propose(self, change, timeout):
        if not self.raced:
            for action in change.actions:
                task = action.target.task
                if action.kind == store_pb2.StoreAction.UPDATE and task.id and task.desired_state >= TS.SHUTDOWN:
                    current = copy_of(self.memory.view().get(Kind.TASK, task.id))
                    current.status.message = "still running, says the worker"
                    race = store_pb2.StoreChange()
                    race.actions.add(kind=store_pb2.StoreAction.UPDATE).target.task.CopyFrom(current)
                    assert self.memory.apply(race).ok
                    self.raced += 1
                    break
        return await super().propose(change, timeout)


async def test_a_plan_that_conflicts_is_reconciled_again_from_fresh_state():
    lab = Lab(proposer=RacingWorker)
    await lab.start()
    try:
        sid = await lab.create_service("web", replicas=4)
        await lab.wait_for(converged(lab, sid, 4), "four replicas running", work=True)
        await lab.scale(sid, 2)
        await lab.wait_for(lambda: converged(lab, sid, 2)() and len(lab.tasks(sid)) == 2,
                           "scaled down to two", work=True)
        assert lab.proposer.raced == 1
        assert sorted(t.slot for t in lab.tasks(sid)) == [1, 2]
    finally:
        await lab.stop()


async def test_a_stored_absurd_scale_is_built_in_bounded_steps_up_to_the_limit(monkeypatch):
    """A leader that starts with a 10^12-replica service in its store (written before the ControlAPI
    refused it) creates tasks a bounded plan at a time and stops at the replica limit."""
    monkeypatch.setattr("manager.orchestrator.replicated.MAX_REPLICAS", 2_500)
    monkeypatch.setattr("manager.orchestrator.replicated.MAX_NEW_TASKS_PER_PASS", 1_000)
    lab = Lab(components=())
    await lab.start()
    try:
        sid = await lab.create_service("huge", replicas=10**12)
        lab.start_component("orchestrator")
        await lab.wait_for(lambda: len(lab.view().tasks(service_id=sid)) == 2_500, "2,500 tasks")
        per_commit = Counter(t.meta.version for t in lab.view().tasks(service_id=sid))  # nothing else writes them
        assert max(per_commit.values()) <= 200, "written in changes under the store's limit"
        passes = lab.components["orchestrator"].passes
        assert passes >= 3, "one plan per 1,000 tasks at most"
        before = lab.components["orchestrator"].passes
        await lab.update_service(sid, lambda spec: spec.annotations.labels.update({"nudge": "1"}), new_version=False)
        await lab.wait_for(lambda: lab.components["orchestrator"].passes > before, "another pass over the service")
        assert len(lab.view().tasks(service_id=sid)) == 2_500, "never beyond the limit"
    finally:
        await lab.stop()
