"""Crashes and power loss: Raft members in their own processes, killed while writes are in flight.

The power-loss test drops every write the members did not fsync (powerloss.py) and checks that
every acknowledged write is still there and that the members agree again. The torn-tail test cuts
a member's journal in the middle of a record, as a crash during a write can.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import struct
import sys
from pathlib import Path

import pytest

import powerloss
from manager.state import raft_journal
from raft_cluster import free_port, wait_for

pytestmark = [pytest.mark.raft, pytest.mark.timeout(180)]

MEMBER = Path(__file__).with_name("member.py")


class Member:
    """A member.py process; ``ask`` sends one command and returns its reply."""

    def __init__(self, addr: str, peers: list[str], data_dir: Path, shadow: Path | None) -> None:
        self.addr, self.peers, self.data_dir, self.shadow = addr, peers, data_dir, shadow
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        extra = ["--shadow", str(self.shadow)] if self.shadow else []
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(MEMBER), self.addr, ",".join(self.peers), str(self.data_dir), *extra,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**24)
        started = await self.read()
        assert started == {"started": self.addr}, started

    async def read(self) -> dict:
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert line, f"member {self.addr} exited (rc {self.proc.returncode})"
        return json.loads(line)

    def send(self, cmd: dict) -> None:
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    async def ask(self, cmd: dict) -> dict:
        self.send(cmd)
        reply = await self.read()
        assert "error" not in reply, reply
        return reply

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    async def reap(self) -> bytes:
        """Wait for a killed member and return what it wrote that was not read yet."""
        rest = await self.proc.stdout.read()
        await self.proc.wait()
        self.proc = None
        return rest

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.kill()
                await self.proc.wait()
            self.proc = None


@pytest.fixture
async def members(tmp_path):
    made: list[Member] = []

    def make(count: int, shadow: bool) -> list[Member]:
        addrs = [f"127.0.0.1:{free_port()}" for _ in range(count)]
        for i, addr in enumerate(addrs):
            made.append(Member(addr, [a for a in addrs if a != addr], tmp_path / f"m{i}",
                               tmp_path / f"shadow{i}" if shadow else None))
        return made

    yield make
    for member in made:
        member.kill()
        if member.proc is not None:
            await member.reap()


async def leader_of(members: list[Member]) -> Member:
    found: list[Member] = []
    for _ in range(500):
        statuses = [await m.ask({"op": "status"}) for m in members]
        leaders = {s["leader"] for s in statuses}
        if len(leaders) == 1 and None not in leaders:
            found = [m for m, s in zip(members, statuses) if s["is_leader"]]
            if found:
                return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no agreed leader")


async def agreed_state(members: list[Member]) -> list[dict]:
    """Wait until every member has applied the same commit index; return their statuses."""
    for member in members:
        await member.ask({"op": "barrier"})
    for _ in range(500):
        statuses = [await m.ask({"op": "status"}) for m in members]
        if len({(s["commit_index"], s["last_applied"]) for s in statuses}) == 1:
            return statuses
        await asyncio.sleep(0.05)
    raise AssertionError(f"members never reached the same commit index: {statuses}")


async def test_acknowledged_writes_survive_a_power_loss_of_every_manager(members):
    cluster = members(3, shadow=True)
    for member in cluster:
        await member.start()
    leader = await leader_of(cluster)
    acked: set[str] = set()
    leader.send({"op": "write", "prefix": "w", "count": 100000, "parallel": 8})
    while len(acked) < 300:
        reply = await leader.read()
        assert "ack" in reply, reply
        acked.add(reply["ack"])
    for member in cluster:          # the power fails everywhere, with writes in flight
        member.kill()
    for member in cluster:
        rest = await member.reap()
        acked |= {json.loads(line)["ack"] for line in rest.splitlines() if b'"ack"' in line}
    for member in cluster:
        powerloss.power_loss(member.data_dir, member.shadow)
    for member in cluster:
        await member.start()
    await leader_of(cluster)
    statuses = await agreed_state(cluster)
    for member, status in zip(cluster, statuses):
        missing = acked - set(status["tasks"])
        assert not missing, f"{member.addr} lost {len(missing)} acknowledged writes, e.g. {sorted(missing)[:5]}"
    assert len({s["digest"] for s in statuses}) == 1, "members hold different stores at one commit index"
    # and the cluster goes on
    again = await leader_of(cluster)
    again.send({"op": "write", "prefix": "after", "count": 5, "parallel": 1})
    while "done" not in (reply := await again.read()):
        assert "ack" in reply, reply


def cut_mid_last_record(path: Path) -> int:
    """Truncate a journal in the middle of its last record; return the new size."""
    data = path.read_bytes()
    if data.startswith(raft_journal.MAGIC):
        _, offsets, end, _ = raft_journal.scan(data)
        start = offsets[-1]
    else:   # PySyncObj's FileJournal (before this journal existed): header holds the end offset
        (end,) = struct.unpack_from("<I", data, 36)
        (size,) = struct.unpack_from("<I", data, end - 4)
        start = end - size - 8
    cut = start + (end - start) // 2
    with open(path, "r+b") as f:
        f.truncate(cut)
    return cut


async def test_a_torn_journal_tail_is_cut_off_and_the_member_rejoins(cluster_factory, caplog):
    cluster = cluster_factory()
    cluster.start_all()
    leader = await cluster.leader()
    follower = next(i for i in cluster.nodes if i != leader)
    from manager.state import Kind
    from proto import objects_pb2
    for i in range(20):
        await cluster.store(leader).update(
            lambda tx, i=i: tx.create(objects_pb2.Task(id=f"t{i:02}", service_id="s")))
    await cluster.converged()
    await cluster.stop(follower)
    cut_mid_last_record(cluster.root / f"m{follower}" / "raft.journal")
    with caplog.at_level(logging.WARNING):
        cluster.start(follower)
    assert "dropped the last" in caplog.text
    await cluster.store(follower).update(
        lambda tx: tx.create(objects_pb2.Task(id="after", service_id="s")))
    await cluster.converged()
    assert cluster.stores[follower].view().get(Kind.TASK, "t19") is not None
    assert cluster.stores[follower].view().get(Kind.TASK, "after") is not None


async def test_a_lone_manager_with_a_torn_tail_starts(cluster_factory, caplog):
    cluster = cluster_factory(1)
    cluster.start_all()
    await cluster.leader()
    from proto import objects_pb2
    for i in range(5):
        await cluster.store(0).update(lambda tx, i=i: tx.create(objects_pb2.Task(id=f"t{i}", service_id="s")))
    await cluster.stop(0)
    cut_mid_last_record(cluster.root / "m0" / "raft.journal")
    cluster.start(0)
    await cluster.leader()
    await cluster.nodes[0].wait_ready(10)
    await wait_for(lambda: len(list(cluster.stores[0].view().tasks())) >= 4, 10, "the kept writes")
