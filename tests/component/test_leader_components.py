"""The leader's components together — Allocator, Orchestrator, Scheduler, TaskReaper — on one
store with a LocalProposer, a fake clock and a simulated worker that reports task states the
way worker/task_manager.py does (READY once prepared, held there while desired READY, RUNNING,
SHUTDOWN when told to stop).

``Lab`` is also used by test_leader_components_alloc.py.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Callable

import pytest

from manager.allocator.component import Allocator
from manager.orchestrator.component import Orchestrator
from manager.reaper import TaskReaper
from manager.scheduler.component import Scheduler
from manager.scheduler.testing import make_node, make_service
from manager.state import Kind, LocalProposer, MemoryStore, ObjectCreated, ObjectUpdated, Store, copy_of
from proto import objects_pb2, store_pb2

TS = objects_pb2
READY_NODE = objects_pb2.NodeStatus.READY
COMPONENTS = ("allocator", "orchestrator", "scheduler", "reaper")


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Lab:
    """A store, the leader components on a fake clock, a simulated worker and ``wait_for``."""

    def __init__(self, components=COMPONENTS, *, nodes: int = 3, proposer=None) -> None:
        self.clock = FakeClock()
        self.memory = MemoryStore()
        self.proposer = proposer(self.memory) if proposer else LocalProposer(self.memory)
        self.store = Store(self.memory, self.proposer, clock=self.clock)
        self.wanted = components
        self.node_count = nodes
        self.components: dict[str, object] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        counter = itertools.count(1)
        self.ids = lambda: f"t{next(counter):05d}"

    # -- life -------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.store.view().cluster() is None:
            cluster = objects_pb2.Cluster(id="cluster")
            cluster.spec.default_addr_pool.append("198.18.0.0/15")
            cluster.spec.subnet_size = 24
            nodes = [make_node(f"node-{i}", cpus=4, mem="8G") for i in range(1, self.node_count + 1)]

            def init(tx):
                tx.create(cluster)
                for node in nodes:
                    node.meta.version = 0
                    tx.create(node)
            await self.store.update(init)
        for name in self.wanted:
            self.start_component(name)

    def start_component(self, name: str) -> None:
        make = {"allocator": lambda: Allocator(self.store, self.clock),
                "orchestrator": lambda: Orchestrator(self.store, self.clock, ids=self.ids),
                "scheduler": lambda: Scheduler(self.store, self.clock),
                "reaper": lambda: TaskReaper(self.store, self.clock)}[name]
        component = make()
        self.components[name] = component
        self._tasks[name] = asyncio.create_task(component.run(), name=name)

    async def stop_component(self, name: str) -> None:
        task = self._tasks.pop(name)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def stop(self) -> None:
        for name in list(self._tasks):
            await self.stop_component(name)
        assert not self.memory._watches, "a component left its watch open"

    def check_components(self) -> None:
        for name, task in self._tasks.items():
            if task.done():
                raise AssertionError(f"component {name} stopped: {task.exception()!r}")

    # -- waiting ----------------------------------------------------------------------------
    async def wait_for(self, predicate: Callable[[], bool], what: str, *, work: bool = False,
                       tick: float = 0.0, timeout: float = 10.0) -> None:
        """Until ``predicate()`` holds; with ``work`` the simulated worker acts between checks,
        with ``tick`` the fake clock advances that much per round."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            self.check_components()
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; tasks:\n{self.describe()}")
            if work:
                await self.work()
            if tick:
                self.clock.advance(tick)
            await asyncio.sleep(0.01)

    # -- reading ----------------------------------------------------------------------------
    def view(self):
        return self.store.view()

    def tasks(self, service_id: str | None = None) -> list[objects_pb2.Task]:
        return sorted(self.view().tasks(service_id=service_id),
                      key=lambda t: (t.slot, t.node_id, t.meta.created_at, t.id))

    def running(self, service_id: str) -> list[objects_pb2.Task]:
        return [t for t in self.tasks(service_id)
                if t.status.state == TS.RUNNING and t.desired_state == TS.RUNNING]

    def service(self, service_id: str) -> objects_pb2.Service:
        return self.view().get(Kind.SERVICE, service_id)

    def describe(self) -> str:
        return "\n".join(f"  {t.id} {t.annotations.name} slot={t.slot} node={t.node_id} "
                         f"v{t.spec_version} {TS.TaskState.Name(t.status.state)}/"
                         f"{TS.TaskState.Name(t.desired_state)} {t.status.message!r} {t.status.err!r}"
                         for t in self.tasks())

    def record(self, kinds=(Kind.TASK,)):
        """A watch of what happens from now on; ``drain(watch)`` lists its events."""
        return self.store.watch(kinds=kinds)

    # -- writing, as the ControlAPI and the dispatcher do --------------------------------------
    async def create_service(self, name: str, **kwargs) -> str:
        kwargs.setdefault("restart", "any")
        service = make_service(f"svc-{name}", name=name, **kwargs)
        service.meta.version = 0
        await self.store.update(lambda tx: tx.create(service))
        return service.id

    async def update_service(self, service_id: str, edit: Callable[[objects_pb2.ServiceSpec], None],
                             *, new_version: bool = True) -> None:
        def fn(tx):
            service = copy_of(tx.get(Kind.SERVICE, service_id))
            service.previous_spec.CopyFrom(service.spec)
            edit(service.spec)
            if new_version:
                service.spec_version += 1
                service.ClearField("update_status")
            tx.update(service)
        await self.store.update_retry(fn)

    async def scale(self, service_id: str, replicas: int) -> None:
        def edit(spec):
            spec.replicas = replicas
        await self.update_service(service_id, edit, new_version=False)

    async def remove_service(self, service_id: str) -> None:
        await self.store.update_retry(lambda tx: tx.delete(Kind.SERVICE, service_id))

    async def set_node(self, node_id: str, *, state=None, labels=None) -> None:
        def fn(tx):
            node = copy_of(tx.get(Kind.NODE, node_id))
            if state is not None:
                node.status.state = state
            if labels is not None:
                node.spec.annotations.labels.update(labels)
            tx.update(node)
        await self.store.update_retry(fn)

    async def report(self, task_id: str, state: int, message: str = "", **fields) -> None:
        """A worker's status report for one task (forward only, as the dispatcher checks)."""
        def fn(tx):
            task = tx.get(Kind.TASK, task_id)
            if task is None or state < task.status.state:
                return
            new = copy_of(task)
            new.status.CopyFrom(objects_pb2.TaskStatus(state=state, message=message or TS.TaskState.Name(state).lower(),
                                                       timestamp=self.clock(), **fields))
            tx.update(new)
        await self.store.update_retry(fn)

    async def work(self) -> int:
        """One step of every worker, for the tasks assigned to READY nodes: prepare (READY),
        start once desired RUNNING (RUNNING), stop once desired SHUTDOWN or later (SHUTDOWN).
        Reports go in one change, as the dispatcher batches them. Returns how many moved."""
        view = self.view()
        nodes = {n.id: n for n in view.nodes()}
        now = self.clock()
        moves = []
        for task in view.tasks():
            node = nodes.get(task.node_id)
            state, desired = task.status.state, task.desired_state
            if node is None or node.status.state != READY_NODE or not TS.ASSIGNED <= state <= TS.RUNNING:
                continue
            if desired >= TS.SHUTDOWN:
                moves.append((task, TS.SHUTDOWN, "shutdown"))
            elif state < TS.READY:
                moves.append((task, TS.READY, "prepared"))
            elif state < TS.RUNNING and desired == TS.RUNNING:
                moves.append((task, TS.RUNNING, "started"))
        if not moves:
            return 0

        def fn(tx):
            for task, state, message in moves:
                current = tx.get(Kind.TASK, task.id)
                if current is None or current.status.state > state:
                    continue
                new = copy_of(current)
                new.status.CopyFrom(objects_pb2.TaskStatus(state=state, message=message, timestamp=now))
                tx.update(new)
        await self.store.update_retry(fn, allow_split=True)
        return len(moves)


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


def converged(lab: Lab, service_id: str, replicas: int) -> Callable[[], bool]:
    def check() -> bool:
        running = lab.running(service_id)
        return len(running) == replicas and sorted(t.slot for t in running) == list(range(1, replicas + 1))
    return check


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
