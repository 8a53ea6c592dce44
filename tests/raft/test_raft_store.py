"""RaftNode: three (or four) PySyncObj members on loopback, in this process.

Replication from any member, leader loss, restart from disk (journal and compaction dump),
dynamic membership, and the transport's safety rules (password, bind address).
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket

import pytest

from manager.state import (Kind, MemoryStore, NoQuorum, NotLeader, ProposalError, ProposalOutcomeUnknown,
                           ProposalTimeout,
                           RaftConfigError, VersionConflict, copy_of, wrap)
from manager.state.raft import RaftNode
from proto import objects_pb2, store_pb2

from raft_cluster import PASSWORD, create_tasks, free_port, task_ids, wait_for

pytestmark = [pytest.mark.raft, pytest.mark.timeout(90)]


async def test_writes_from_leader_and_followers_commit_on_every_member(cluster_factory):
    cluster = cluster_factory()
    cluster.start_all()
    leader = await cluster.leader()
    follower = next(i for i in cluster.nodes if i != leader)
    await cluster.store(leader).update(create_tasks("L", 3))
    # a follower's write is forwarded to the leader, and update returns once it is applied locally
    await cluster.store(follower).update(create_tasks("F", 2))
    assert task_ids(cluster.stores[follower]) == {"L000", "L001", "L002", "F000", "F001"}

    def rename(tx):
        task = copy_of(tx.get(Kind.TASK, "L000"))
        task.node_id = "n1"
        tx.update(task)

    await cluster.store(follower).update(rename)
    await cluster.converged()
    assert cluster.stores[leader].version == 3
    assert cluster.leader_changes[leader] == [True]
    assert cluster.nodes[leader].is_leader() and not cluster.nodes[follower].is_leader()
    status = cluster.nodes[follower].status()
    assert status.leader_addr == cluster.addrs[leader] and not status.is_leader
    assert [m.addr for m in status.members] == sorted(cluster.addrs)
    assert all(m.reachable for m in status.members) and status.has_quorum


async def test_a_stale_write_conflicts_through_raft(cluster_factory):
    cluster = cluster_factory()
    cluster.start_all()
    leader = await cluster.leader()
    store = cluster.store(leader)
    await store.update(create_tasks("t", 1))
    stale = copy_of(store.view().get(Kind.TASK, "t000"))
    await store.update(lambda tx: tx.update(copy_of(stale)))
    follower = next(i for i in cluster.nodes if i != leader)
    await cluster.converged()
    change = store_pb2.StoreChange(actions=[store_pb2.StoreAction(kind=store_pb2.StoreAction.UPDATE,
                                                                  target=wrap(stale))])
    result = await cluster.nodes[follower].propose(change, 5.0)
    assert not result.ok and (result.rejected.expected, result.rejected.actual) == (1, 2)
    with pytest.raises(VersionConflict):
        result.raise_for_rejection()


async def test_after_the_leader_dies_another_is_elected_and_accepts_writes(cluster_factory):
    cluster = cluster_factory()
    cluster.start_all()
    old = await cluster.leader()
    await cluster.store(old).update(create_tasks("before", 5))
    await cluster.converged()
    survivors = [i for i in cluster.nodes if i != old]

    async def propose_during_outage(i: int, n: int):
        try:
            await cluster.store(i).update(create_tasks(f"outage{i}-{n}-", 1), timeout=3.0)
            return "committed"
        except ProposalError as exc:            # typed: NoQuorum, NotLeader, ...Unknown, Timeout
            return type(exc).__name__

    await cluster.stop(old)
    outcomes = await asyncio.gather(*(propose_during_outage(i, n) for i in survivors for n in range(3)))
    new = await cluster.leader()
    assert new != old
    await cluster.store(survivors[0]).update(create_tasks("after", 2))
    await cluster.converged()
    ids = task_ids(cluster.stores[new])
    assert {f"before{i:03}" for i in range(5)} | {"after000", "after001"} <= ids
    committed = {i for i in ids if i.startswith("outage")}
    assert len(committed) == outcomes.count("committed")
    assert set(outcomes) <= {"committed", "NoQuorum", "NotLeader", "ProposalOutcomeUnknown", "ProposalTimeout"}
    assert cluster.leader_changes[new][-1] is True
    # the old leader comes back from its data dir as a follower and catches up
    cluster.start(old)
    await cluster.nodes[old].wait_ready(10)
    await cluster.converged()
    assert not cluster.nodes[old].is_leader()
    assert {"after000", "after001"} <= task_ids(cluster.stores[old])


async def test_without_quorum_a_write_fails_with_a_typed_error_and_commits_nowhere(cluster_factory):
    cluster = cluster_factory()
    cluster.start_all()
    await cluster.leader()
    await cluster.stop(0)
    await cluster.stop(1)
    with pytest.raises((NoQuorum, ProposalTimeout)):
        await cluster.store(2).update(create_tasks("lonely", 1), timeout=1.5)
    assert task_ids(cluster.stores[2], "lonely") == set()


async def test_closing_a_node_fails_its_in_flight_proposals_with_a_typed_error(cluster_factory):
    cluster = cluster_factory()
    cluster.start_all()
    leader = await cluster.leader()
    for i in list(cluster.nodes):
        if i != leader:
            await cluster.stop(i)
    node = cluster.nodes[leader]
    log_length = node.getStatus()["log_len"]
    pending = asyncio.create_task(cluster.store(leader).update(create_tasks("stuck", 1), timeout=60))
    await wait_for(lambda: node.getStatus()["log_len"] > log_length, what="the entry in the leader's log")
    assert not pending.done()   # appended, and no majority to commit it
    await cluster.stop(leader)
    with pytest.raises(ProposalOutcomeUnknown, match="closed while"):
        await asyncio.wait_for(pending, 10)
    with pytest.raises(NotLeader, match="is closed"):
        await node.propose(store_pb2.StoreChange(), 1.0)


@pytest.mark.parametrize("compaction", [False, True], ids=["journal", "journal+dump"])
async def test_every_committed_object_survives_stopping_and_restarting_all_members(cluster_factory, compaction):
    options = {"compaction_min_entries": 8} if compaction else {}
    cluster = cluster_factory(**options)
    cluster.start_all()
    leader = await cluster.leader()
    for batch in range(12):
        await cluster.store(leader).update(create_tasks(f"b{batch:02}-", 3))
    await cluster.store(leader).update(lambda tx: tx.delete(Kind.TASK, "b00-000"))
    await cluster.converged()
    expected = cluster.stores[leader].snapshot()
    await cluster.stop_all()
    dumps = [(cluster.root / f"m{i}" / "raft.dump").exists() for i in range(3)]
    assert all(dumps) if compaction else not any(dumps)

    cluster.start_all()
    await asyncio.gather(*(node.wait_ready(15) for node in cluster.nodes.values()))
    for i in range(3):
        ids = task_ids(cluster.stores[i])
        assert len(ids) == 35 and "b00-000" not in ids and "b11-002" in ids
    await cluster.converged()
    restarted = MemoryStore()
    restarted.restore(cluster.stores[0].snapshot())
    original = MemoryStore()
    original.restore(expected)
    assert restarted.view().version == original.view().version == 13
    assert {t.id: t for t in restarted.view().tasks()} == {t.id: t for t in original.view().tasks()}
    await cluster.store(0).update(create_tasks("later", 1))     # and the cluster still works


async def test_a_new_member_is_added_dynamically_and_catches_up(cluster_factory):
    cluster = cluster_factory(compaction_min_entries=8)
    cluster.start_all()
    leader = await cluster.leader()
    for batch in range(6):
        await cluster.store(leader).update(create_tasks(f"b{batch}-", 4))
    new = cluster.add_slot()
    follower = next(i for i in cluster.nodes if i != leader)
    await cluster.nodes[follower].add_member(cluster.addrs[new])         # forwarded to the leader
    await cluster.nodes[follower].add_member(cluster.addrs[new])         # idempotent
    cluster.start(new, peers=cluster.addrs[:new])
    await cluster.nodes[new].wait_ready(15)
    await cluster.converged()
    assert len(task_ids(cluster.stores[new])) == 24
    await cluster.store(new).update(create_tasks("from-new", 1))         # it can write too
    await cluster.converged()
    assert sorted(m.addr for m in cluster.nodes[leader].status().members) == sorted(cluster.addrs)
    saved = json.loads((cluster.root / f"m{leader}" / "members.json").read_text())
    assert saved == {"self": cluster.addrs[leader], "members": sorted(cluster.addrs)}


async def test_a_cluster_grows_from_one_member_like_swarm_init_then_join(cluster_factory):
    cluster = cluster_factory(size=1)
    cluster.start(0, peers=[])
    await cluster.nodes[0].wait_ready(10)
    assert cluster.nodes[0].is_leader()
    await cluster.store(0).update(create_tasks("init", 2))
    for new in (cluster.add_slot(), cluster.add_slot()):
        existing = cluster.addrs[:new]
        cluster.start(new, peers=existing)              # the joiner starts first, knowing the members
        await cluster.nodes[new - 1].add_member(cluster.addrs[new])
        await cluster.nodes[new].wait_ready(10)
    await cluster.converged()
    assert task_ids(cluster.stores[2], "init") == {"init000", "init001"}
    await cluster.stop(0)                               # 2 of 3 remain: still a quorum
    await cluster.leader()                              # a write racing the election may end
    await cluster.store(2).update(create_tasks("grown", 1))  # "outcome unknown" (tested elsewhere)
    await cluster.converged()
    assert task_ids(cluster.stores[1], "grown") == {"grown000"}


async def test_a_removed_member_stops_receiving_and_restarts_use_the_saved_membership(cluster_factory):
    cluster = cluster_factory()
    cluster.start_all()
    leader = await cluster.leader()
    removed, kept = [i for i in cluster.nodes if i != leader]
    await cluster.store(leader).update(create_tasks("before", 1))
    await cluster.converged()
    with pytest.raises(RaftConfigError, match="cannot remove itself"):
        await cluster.nodes[removed].remove_member(cluster.addrs[removed])
    await cluster.nodes[kept].remove_member(cluster.addrs[removed])
    await wait_for(lambda: cluster.addrs[removed] not in cluster.nodes[leader].member_addrs(), 5, "removal")
    await cluster.store(kept).update(create_tasks("after", 3))
    await cluster.converged([leader, kept])
    await asyncio.sleep(0.5)        # give a wrongly still-connected member time to receive
    assert task_ids(cluster.stores[removed], "after") == set()
    assert task_ids(cluster.stores[kept], "after") == {"after000", "after001", "after002"}

    # The two remaining members restart from disk; the stale peer list passed in is ignored.
    await cluster.stop(removed)
    await cluster.stop(kept)
    await cluster.stop(leader)
    for i in (leader, kept):
        cluster.start(i, peers=list(cluster.addrs))
    await cluster.leader()
    assert sorted(cluster.nodes[kept].member_addrs()) == sorted([cluster.addrs[leader], cluster.addrs[kept]])
    await cluster.store(kept).update(create_tasks("two-members", 1))     # 2 of 2 is a quorum


async def test_a_member_with_the_wrong_password_is_shut_out(cluster_factory):
    cluster = cluster_factory()
    cluster.start(0)
    cluster.start(1)
    cluster.start(2, password="not-the-password")
    with pytest.raises(NoQuorum):
        await cluster.nodes[2].wait_ready(1.5)
    await cluster.nodes[0].wait_ready(10)
    await cluster.store(0).update(create_tasks("secret", 1))
    await cluster.converged([0, 1])
    assert task_ids(cluster.stores[2]) == set()
    status = cluster.nodes[2].status()
    assert status.leader_addr is None
    assert not any(m.reachable for m in status.members if m.addr != cluster.addrs[2])


def test_a_password_is_mandatory(tmp_path):
    with pytest.raises(RaftConfigError, match="password is required"):
        RaftNode(f"127.0.0.1:{free_port()}", [], tmp_path, "", MemoryStore())


@pytest.mark.parametrize("addr", ["0.0.0.0:2378", "[::]:2378", "127.0.0.1", "127.0.0.1:0", "host:port"])
def test_malformed_or_wildcard_addresses_are_refused(tmp_path, addr):
    with pytest.raises(RaftConfigError, match="raft address"):
        RaftNode(addr, [], tmp_path, PASSWORD, MemoryStore())


async def test_it_listens_only_on_its_own_address(tmp_path):
    port = free_port()
    node = RaftNode(f"127.0.0.1:{port}", [], tmp_path, PASSWORD, MemoryStore())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        with pytest.raises(OSError) as refused:
            socket.create_connection(("127.0.0.2", port), timeout=2).close()
        assert refused.value.errno == errno.ECONNREFUSED
    finally:
        await node.close()


async def test_a_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        addr = f"127.0.0.1:{holder.getsockname()[1]}"
        with pytest.raises(RaftConfigError, match="cannot listen"):
            RaftNode(addr, [], tmp_path, PASSWORD, MemoryStore(), bind_attempts=1)


async def test_a_late_ack_never_moves_a_followers_next_index_back(tmp_path):
    """PySyncObj fix (see RaftNode._SyncObj__onMessageReceived): acks raise matchIndex only."""
    from pysyncobj.node import TCPNode

    node = RaftNode(f"127.0.0.1:{free_port()}", [], tmp_path, PASSWORD, MemoryStore())
    try:
        await node.wait_ready(10)
        fake = TCPNode("127.0.0.1:1")
        next_index, match_index = node._SyncObj__raftNextIndex, node._SyncObj__raftMatchIndex
        next_index[fake], match_index[fake] = 100, 50
        ack = {"type": "next_node_idx", "next_node_idx": 61, "success": True, "reset": False}
        node._SyncObj__onMessageReceived(fake, ack)
        assert (match_index[fake], next_index[fake]) == (60, 100)
        node._SyncObj__onMessageReceived(fake, {**ack, "next_node_idx": 70, "success": False, "reset": True})
        assert next_index[fake] == 70           # a follower that lacks entries still resets it
        node._SyncObj__onMessageReceived(fake, {**ack, "next_node_idx": 90})
        assert (match_index[fake], next_index[fake]) == (89, 90)
    finally:
        await node.close()


async def test_every_member_follows_the_clusters_raft_ticks(cluster_factory):
    cluster = cluster_factory()
    cluster.start_all()
    leader = await cluster.leader()
    store = cluster.store(leader)
    base = cluster.nodes[leader].timings
    await store.update(lambda tx: tx.create(objects_pb2.Cluster(id="c1")))
    await cluster.converged()
    assert all(node.timings == base for node in cluster.nodes.values())   # (0, 0): keep what was given

    def set_ticks(election, heartbeat):
        def fn(tx):
            c = copy_of(tx.view.cluster())
            c.spec.raft.election_tick, c.spec.raft.heartbeat_tick = election, heartbeat
            tx.update(c)
        return fn

    await store.update(set_ticks(20, 2))
    await cluster.converged()
    for node in cluster.nodes.values():
        assert (node.timings.election_min, node.timings.heartbeat) == pytest.approx((2.0, 0.2))
        assert node._conf.raftMinTimeout == pytest.approx(2.0)
    # a restarted member gets them from its journal (or dump) again
    follower = next(i for i in cluster.nodes if i != leader)
    await cluster.stop(follower)
    cluster.start(follower)
    await cluster.converged()
    await wait_for(lambda: cluster.nodes[follower].timings.election_min == pytest.approx(2.0), 10,
                   "the restarted member to follow the ticks")
    await store.update(set_ticks(0, 0))
    await cluster.converged()
    assert all(node.timings.election_min == pytest.approx(1.0) for node in cluster.nodes.values())
