"""Scheduling throughput with simulated workers (run by `make bench`).

The leader's pipeline — allocator (NEW → PENDING), orchestrator (services → tasks) and
scheduler (PENDING → ASSIGNED) — runs as in a manager, on an in-process store (no Raft, no
containers); a fake fleet of workers acknowledges every assigned task by reporting it
RUNNING, as the dispatcher's batched status updates would. Prints tasks per second from
`service create` to all tasks assigned and acknowledged (and tasks per CPU second of the whole
process, the figure to compare on a shared machine), then what one task more costs once all run
(`--steps=N` times a scale by one; 0 to skip). Usage: bench/schedule.py [NODES TASKS]
[--steps=N] [--default-gc] (CPython's collector settings instead of shoald's, common/gctune.py)
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import gctune  # noqa: E402
from manager.allocator.component import Allocator  # noqa: E402
from manager.ids import new_id  # noqa: E402
from manager.orchestrator.component import Orchestrator  # noqa: E402
from manager.scheduler.component import Scheduler  # noqa: E402
from manager.state import Kind, LocalProposer, MemoryStore, ObjectDeleted, Store  # noqa: E402
from proto import objects_pb2  # noqa: E402

SERVICES = 100


def make_cluster(nodes: int) -> list:
    cluster = objects_pb2.Cluster(id=new_id())
    cluster.spec.default_addr_pool.append("10.0.0.0/8")
    cluster.spec.subnet_size = 24
    out = [cluster]
    for i in range(nodes):
        node = objects_pb2.Node(id=new_id(), role=objects_pb2.WORKER)
        node.description.hostname = f"sim{i}"
        node.description.resources.nano_cpus = 4 * 10**9
        node.description.resources.memory_bytes = 8 << 30
        node.status.state = objects_pb2.NodeStatus.READY
        out.append(node)
    return out


class Fleet:
    """The simulated workers: acknowledge every assigned task by reporting it RUNNING, in
    batches, as the dispatcher's batched status updates would. Like the dispatcher, it learns
    what was assigned from the store's events (it used to read every task on each wake-up, an
    O(all tasks) cost of the harness that the leader does not have), and counts running tasks."""

    def __init__(self) -> None:
        self.assigned: set[str] = set()
        self.running: set[str] = set()

    def note(self, event) -> None:
        task = event.obj
        state = task.status.state if not isinstance(event, ObjectDeleted) else None
        (self.assigned.add if state == objects_pb2.ASSIGNED else self.assigned.discard)(task.id)
        (self.running.add if state == objects_pb2.RUNNING else self.running.discard)(task.id)

    async def run(self, store: Store) -> None:
        view, watch = store.view_and_watch(kinds=[Kind.TASK])
        try:
            while True:
                self.note(await watch.get())
                await asyncio.sleep(0.02)
                while (event := watch.get_nowait()) is not None:
                    self.note(event)
                if not self.assigned:
                    continue
                ids = list(self.assigned)

                def ack(tx, ids=ids):
                    for task_id in ids:
                        task = tx.get(Kind.TASK, task_id)
                        if task is None or task.status.state != objects_pb2.ASSIGNED:
                            continue
                        new = objects_pb2.Task()
                        new.CopyFrom(task)
                        new.status.state = objects_pb2.RUNNING
                        new.status.message = "started"
                        tx.update(new)
                try:
                    await store.update(ack, allow_split=True)
                except Exception:
                    pass        # the tasks stay assigned; tried again on the next event
        finally:
            watch.close()


class TimedScheduler(Scheduler):
    """The scheduler, counting the CPU time of its passes."""

    cpu = 0.0

    async def _pass(self) -> None:
        started = time.process_time()
        try:
            await super()._pass()
        finally:
            self.cpu += time.process_time() - started


async def wait_running(fleet: Fleet, count: int) -> None:
    while len(fleet.running) < count:
        await asyncio.sleep(0.01)


async def run(nodes: int, tasks: int, steps: int) -> None:
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    objects = make_cluster(nodes)

    def fill(tx):
        for obj in objects:
            tx.create(obj)
    await store.update(fill, allow_split=True)
    fleet = Fleet()
    scheduler = TimedScheduler(store)
    components = [Allocator(store).run(), Orchestrator(store).run(), scheduler.run(), fleet.run(store)]
    running = [asyncio.create_task(c) for c in components]
    await asyncio.sleep(0.2)  # the allocator creates the ingress network
    per_service = tasks // SERVICES
    started = time.perf_counter()
    cpu_started = time.process_time()
    services = []

    def create(tx):
        for i in range(SERVICES):
            service = objects_pb2.Service(id=new_id(), spec_version=1)
            service.spec.annotations.name = f"svc{i}"
            service.spec.replicas = per_service
            service.spec.task.container.image = "shoal/busybox:latest"
            tx.create(service)
            services.append(service.id)
    await store.update(create)
    total = per_service * SERVICES
    await wait_running(fleet, total)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    print(f"{nodes} simulated nodes, {total} tasks in {SERVICES} services: all assigned and acknowledged in "
          f"{elapsed:.2f} s = {total / elapsed:,.0f} tasks/s; {cpu:.2f} CPU s = {total / cpu:,.0f} tasks per "
          f"CPU second (on a shared machine the CPU figure is the one to compare; goal >= 10,000/s); "
          f"scheduler passes {scheduler.cpu:.2f} CPU s")
    if steps:
        # One task more at a time with everything else settled: what a small change costs
        # at this size (a failed task replaced, a scale by one).
        cpu_started, scheduler_started = time.process_time(), scheduler.cpu
        for step in range(steps):
            def scale(tx, step=step):
                service = objects_pb2.Service()
                service.CopyFrom(tx.get(Kind.SERVICE, services[0]))
                service.spec.replicas = per_service + step + 1
                tx.update(service)
            await store.update(scale)
            await wait_running(fleet, total + step + 1)
        cpu = time.process_time() - cpu_started
        print(f"then {steps} x one more task (scale by one, to running): {1000 * cpu / steps:.1f} CPU ms per "
              f"task, of which the scheduler's passes {1000 * (scheduler.cpu - scheduler_started) / steps:.1f} ms")
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    nodes, tasks = (int(args[0]), int(args[1])) if len(args) > 1 else (1000, 100_000)
    steps = next((int(a.partition("=")[2]) for a in sys.argv[1:] if a.startswith("--steps=")), 20)
    if "--default-gc" not in sys.argv:
        gctune.tune()   # as shoald does (common/gctune.py)
    asyncio.run(run(nodes, tasks, steps))


if __name__ == "__main__":
    main()
