"""Scheduling throughput with simulated workers (run by `make bench`).

The leader's pipeline — allocator (NEW → PENDING), orchestrator (services → tasks) and
scheduler (PENDING → ASSIGNED) — runs as in a manager, on an in-process store (no Raft, no
containers); a fake fleet of workers acknowledges every assigned task by reporting it
RUNNING, as the dispatcher's batched status updates would. Prints tasks per second from
`service create` to all tasks assigned and acknowledged. Usage: bench/schedule.py [NODES TASKS]
[--default-gc] (CPython's collector settings instead of shoald's, common/gctune.py)
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import gctune  # noqa: E402
from manager.allocator.component import Allocator  # noqa: E402
from manager.changes import ChangeSignal  # noqa: E402
from manager.ids import new_id  # noqa: E402
from manager.orchestrator.component import Orchestrator  # noqa: E402
from manager.scheduler.component import Scheduler  # noqa: E402
from manager.state import Kind, LocalProposer, MemoryStore, Store  # noqa: E402
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


async def fake_workers(store: Store) -> None:
    """Acknowledge assigned tasks in batches, like nodes reporting RUNNING."""
    changes = ChangeSignal(store, [Kind.TASK])
    try:
        while True:
            await changes.wait(timeout=1.0)
            await asyncio.sleep(0.02)
            assigned = [t for t in store.view().tasks() if t.status.state == objects_pb2.ASSIGNED]
            if not assigned:
                continue

            def ack(tx, assigned=assigned):
                for task in assigned:
                    new = objects_pb2.Task()
                    new.CopyFrom(task)
                    new.status.state = objects_pb2.RUNNING
                    new.status.message = "started"
                    tx.update(new)
            try:
                await store.update(ack, allow_split=True)
            except Exception:
                pass
    finally:
        changes.close()


async def run(nodes: int, tasks: int) -> None:
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    objects = make_cluster(nodes)

    def fill(tx):
        for obj in objects:
            tx.create(obj)
    await store.update(fill, allow_split=True)
    components = [Allocator(store).run(), Orchestrator(store).run(), Scheduler(store).run(), fake_workers(store)]
    running = [asyncio.create_task(c) for c in components]
    await asyncio.sleep(0.2)  # the allocator creates the ingress network
    per_service = tasks // SERVICES
    started = time.perf_counter()
    cpu_started = time.process_time()

    def create(tx):
        for i in range(SERVICES):
            service = objects_pb2.Service(id=new_id(), spec_version=1)
            service.spec.annotations.name = f"svc{i}"
            service.spec.replicas = per_service
            service.spec.task.container.image = "shoal/busybox:latest"
            tx.create(service)
    await store.update(create)
    total = per_service * SERVICES
    while True:
        done = sum(1 for t in store.view().tasks() if t.status.state == objects_pb2.RUNNING)
        if done >= total:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    print(f"{nodes} simulated nodes, {total} tasks in {SERVICES} services: all assigned and acknowledged in "
          f"{elapsed:.2f} s = {total / elapsed:,.0f} tasks/s; {cpu:.2f} CPU s = {total / cpu:,.0f} tasks per "
          "CPU second (on a shared machine the CPU figure is the one to compare; goal >= 10,000/s)")


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--default-gc"]
    nodes, tasks = (int(args[0]), int(args[1])) if len(args) > 1 else (1000, 100_000)
    if "--default-gc" not in sys.argv:
        gctune.tune()   # as shoald does (common/gctune.py)
    asyncio.run(run(nodes, tasks))


if __name__ == "__main__":
    main()
