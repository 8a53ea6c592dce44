"""Crashes and power loss: Raft members in their own processes, killed while writes are in flight.

The power-loss test drops every write the members did not fsync (powerloss.py) and checks that
every acknowledged write is still there and that the members agree again. The torn-tail test cuts
a member's journal in the middle of a record, as a crash during a write can.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from pathlib import Path

import pytest

import powerloss
from manager.state import raft_journal
from member_procs import agreed_state, leader_of, members  # noqa: F401 (members is a fixture)
from raft_cluster import wait_for

pytestmark = [pytest.mark.raft, pytest.mark.timeout(180)]

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


def collect_vote(client, term: int, seen: list) -> None:
    """Read what the node sends until its vote for ``term``; record every vote seen."""
    while True:
        message = client.recv()
        if isinstance(message, dict) and message.get("type") == "response_vote":
            seen.append(message["term"])
            if message["term"] == term:
                return


async def test_a_member_never_votes_twice_in_a_term_across_a_power_loss(tmp_path):
    """Candidates A and B are played by this test (peer_client) against one real member in its own
    process: it votes for A in term 100, loses power, and must then refuse B in term 100 (it does
    vote for B in term 200: the positive signal that B's requests were read in order)."""
    from member_procs import Member
    from peer_client import PeerClient
    from raft_cluster import PASSWORD, free_port
    cand_a, cand_b = f"127.0.0.2:{free_port()}", f"127.0.0.2:{free_port()}"   # sort after the member:
    member = Member(f"127.0.0.1:{free_port()}", [cand_a, cand_b], tmp_path / "m",  # it waits for them
                    tmp_path / "shadow")                                          # to connect
    request = {"type": "request_vote", "last_log_index": 10**6, "last_log_term": 10**6}
    try:
        await member.start()
        a = PeerClient(member.addr, PASSWORD)
        a.handshake()
        a.send(cand_a)
        a.send({**request, "term": 100})
        seen_a: list = []
        await asyncio.to_thread(collect_vote, a, 100, seen_a)
        member.kill()
        await member.reap()
        a.close()
        powerloss.power_loss(member.data_dir, member.shadow)
        await member.start()
        b = PeerClient(member.addr, PASSWORD)
        b.handshake()
        b.send(cand_b)
        b.send({**request, "term": 100})
        b.send({**request, "term": 200})
        seen_b: list = []
        await asyncio.to_thread(collect_vote, b, 200, seen_b)
        b.close()
        assert seen_b == [200], f"the member voted for A and then for B in term 100 (votes to B: {seen_b})"
    finally:
        member.kill()
        if member.proc is not None:
            await member.reap()
