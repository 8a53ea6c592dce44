"""The leader's components (Allocator, Orchestrator, Scheduler, TaskReaper) on one store with a
LocalProposer, a fake clock and a simulated worker that reports task states the way
worker/task_manager.py does (READY once prepared, held there while desired READY, RUNNING,
SHUTDOWN when told to stop). Used by tests/component/test_leader_components*.py.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Callable

import pytest

from manager.allocator.component import Allocator
from manager.orchestrator.component import Orchestrator
from manager.reaper import TaskReaper
from manager.scheduler.component import Scheduler
from manager.scheduler.testing import make_node, make_service
from manager.state import Kind, LocalProposer, MemoryStore, Store, copy_of
from proto import objects_pb2
from tests.support.clock import FakeClock

TS = objects_pb2
READY_NODE = objects_pb2.NodeStatus.READY
COMPONENTS = ("allocator", "orchestrator", "scheduler", "reaper")


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


def converged(lab: Lab, service_id: str, replicas: int) -> Callable[[], bool]:
    def check() -> bool:
        running = lab.running(service_id)
        return len(running) == replicas and sorted(t.slot for t in running) == list(range(1, replicas + 1))
    return check
