"""Test helpers: a few RaftNodes on 127.0.0.1 in this process, each with its own MemoryStore and data dir."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from manager.state import MemoryStore, Store
from manager.state.raft import RaftNode
from proto import objects_pb2
from tests.support.ports import reserve_port

PASSWORD = "raft-test-password"


def free_port() -> int:
    """A loopback port no one else is given meanwhile and a RaftNode can bind (tests/support/ports.py)."""
    return reserve_port()


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` (a bound, not a timing assert)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class RaftCluster:
    """Members by index; ``start(i)`` (re)starts member i from its data dir."""

    def __init__(self, root: Path, size: int, **node_options) -> None:
        self.root = root
        self.addrs = [f"127.0.0.1:{free_port()}" for _ in range(size)]
        self.node_options = node_options
        self.nodes: dict[int, RaftNode] = {}
        self.stores: dict[int, MemoryStore] = {}
        self.leader_changes: dict[int, list[bool]] = {}

    def add_slot(self) -> int:
        self.addrs.append(f"127.0.0.1:{free_port()}")
        return len(self.addrs) - 1

    def start(self, i: int, peers: list[str] | None = None, password: str = PASSWORD, **options) -> RaftNode:
        assert i not in self.nodes, f"member {i} is running"
        store = MemoryStore()
        changes = self.leader_changes.setdefault(i, [])
        if peers is None:
            peers = [a for a in self.addrs if a != self.addrs[i]]
        node = RaftNode(self.addrs[i], peers, self.root / f"m{i}", password, store,
                        on_leader_change=changes.append, **{**self.node_options, **options})
        self.nodes[i] = node
        self.stores[i] = store
        return node

    def start_all(self) -> None:
        for i in range(len(self.addrs)):
            self.start(i)

    async def stop(self, i: int) -> None:
        node = self.nodes.pop(i)
        await node.close()

    async def stop_all(self) -> None:
        for i in list(self.nodes):
            await self.stop(i)

    def store(self, i: int) -> Store:
        return Store(self.stores[i], self.nodes[i])

    async def leader(self, timeout: float = 10.0) -> int:
        """Index of the member all running members agree leads."""
        found: list[int] = []

        def agreed() -> bool:
            statuses = {i: n.status() for i, n in self.nodes.items()}
            leaders = {s.leader_addr for s in statuses.values()}
            if len(leaders) != 1 or None in leaders:
                return False
            (addr,) = leaders
            index = self.addrs.index(addr)
            if index not in statuses or not statuses[index].is_leader:
                return False
            found[:] = [index]
            return True

        await wait_for(agreed, timeout, "an agreed leader")
        return found[0]

    async def converged(self, members: list[int] | None = None, timeout: float = 10.0) -> None:
        """Wait until the given running members hold identical stores."""
        members = list(self.nodes) if members is None else members
        await wait_for(lambda: len({self.stores[i].snapshot() for i in members}) == 1, timeout,
                       f"members {members} to converge")


def create_tasks(prefix: str, count: int):
    """A store transaction creating tasks PREFIX000, PREFIX001, ... of service "svc"."""
    def fn(tx):
        for i in range(count):
            tx.create(objects_pb2.Task(id=f"{prefix}{i:03}", service_id="svc"))
    return fn


def task_ids(store, prefix: str = "") -> set[str]:
    return {t.id for t in store.view().tasks() if t.id.startswith(prefix)}
