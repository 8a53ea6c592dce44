"""A manager as the web page reads it (its ControlAPI and EventLog over a real store) and an SSE
reader: shared by tests/component/test_web_ui_*.py."""
from __future__ import annotations

import asyncio
import json

from manager.controlapi import ControlAPI
from manager.events import EventLog, from_store_event
from manager.state import Kind, LocalProposer, MemoryStore, Store
from manager.state.raft import RaftStatus
from proto import control_pb2, objects_pb2 as pb


class OneManagerRaft:
    """The Raft status of a one-manager swarm that leads (what ControlAPI decorates nodes with)."""

    def status(self) -> RaftStatus:
        return RaftStatus(term=1, commit_index=1, last_applied=1, leader_addr="192.0.2.1:2378",
                          self_addr="192.0.2.1:2378", is_leader=True, has_quorum=True)


class Manager:
    """What the page reads of a manager: its ControlAPI and its EventLog, fed from the store's watch
    as manager.Manager feeds it."""

    def __init__(self, store: Store):
        self.store = store
        self.control = ControlAPI(store, OneManagerRaft())
        self.events = EventLog()

    async def feed(self) -> None:
        watch = self.store.watch([Kind.SERVICE, Kind.NODE, Kind.TASK])
        try:
            async for change in watch:
                ev = from_store_event(change)
                if ev is not None:
                    self.events.publish(ev)
        finally:
            watch.close()


def node(node_id: str, hostname: str, manager: bool = False) -> pb.Node:
    n = pb.Node(id=node_id, role=pb.MANAGER if manager else pb.WORKER)
    n.description.hostname = hostname
    n.status.state = pb.NodeStatus.READY
    if manager:
        n.manager_status.raft_addr = "192.0.2.1:2378"
    return n


def task(task_id: str, service_id: str, slot: int, node_id: str, state=pb.RUNNING, desired=pb.RUNNING) -> pb.Task:
    t = pb.Task(id=task_id, service_id=service_id, slot=slot, node_id=node_id, desired_state=desired)
    t.status.state = state
    return t


async def make_cluster() -> tuple[Manager, pb.Service, asyncio.Task[None]]:
    """manager1 (leader) and worker1, a service web (2 replicas) with tasks t1 (manager1, running),
    t2 (worker1, starting) and t0 (worker1, failed: history); the feed task to cancel at the end."""
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    manager = Manager(store)
    feed = asyncio.create_task(manager.feed())
    await asyncio.sleep(0)

    def fill(tx):
        tx.create(node("m1", "manager1", manager=True))
        tx.create(node("w1", "worker1"))
    await store.update(fill)
    spec = pb.ServiceSpec(replicas=2)
    spec.annotations.name = "web"
    spec.task.container.image = "busybox"
    service = (await manager.control.services.create_service(control_pb2.CreateServiceRequest(spec=spec))).service

    def tasks(tx):
        tx.create(task("t1", service.id, 1, "m1"))
        tx.create(task("t2", service.id, 2, "w1", state=pb.STARTING))
        tx.create(task("t0", service.id, 1, "w1", state=pb.FAILED, desired=pb.SHUTDOWN))   # history
    await store.update(tasks)
    return manager, service, feed


async def read_sse(response, until) -> list[tuple[str, dict]]:
    """SSE messages (event name, JSON data) until ``until(messages)`` holds."""
    messages: list[tuple[str, dict]] = []
    buffer = b""
    async with asyncio.timeout(10):
        while not until(messages):
            buffer += await response.content.readany()
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                fields = dict(line.split(": ", 1) for line in block.decode().splitlines() if not line.startswith(":"))
                messages.append((fields["event"], json.loads(fields["data"])))
    return messages
