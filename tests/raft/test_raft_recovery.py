"""Quorum loss on real PySyncObj members: truthful status, and force-new-cluster from a survivor's files.

The survivor's store is read offline (read_local_state) and its Raft state rebuilt as a
one-member cluster (reset_raft_state); restarts must not bring the dead members back.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from manager.quorum import quorum_view
from manager.state import MemoryStore, NoQuorum
from manager.state.raft import read_local_state
from manager.state.recovery import reset_raft_state

from raft_cluster import create_tasks, task_ids, wait_for

pytestmark = [pytest.mark.raft, pytest.mark.timeout(90)]


async def test_a_survivor_of_two_dead_managers_reports_no_leader_and_no_quorum(cluster_factory):
    cluster = cluster_factory()
    cluster.start_all()
    leader = await cluster.leader()
    survivor = next(i for i in cluster.nodes if i != leader)
    await cluster.store(leader).update(create_tasks("t", 1))
    for i in [i for i in cluster.nodes if i != survivor]:
        await cluster.stop(i)
    node = cluster.nodes[survivor]
    await wait_for(lambda: not any(m.reachable for m in node.status().members if m.addr != node.self_addr),
                   10, "the survivor to see both peers gone")
    status = node.status()
    view = quorum_view(status)
    # PySyncObj still names the dead leader; what we show must not.
    assert status.leader_addr == cluster.addrs[leader]
    assert view.leader is None and not view.has_quorum and not status.has_quorum
    with pytest.raises(NoQuorum):
        await cluster.store(survivor).update(create_tasks("lost", 1), timeout=1.0)


@pytest.mark.parametrize("compaction", [False, True], ids=["journal", "journal+dump"])
async def test_force_new_cluster_keeps_every_object_and_restarts_stay_one_member(cluster_factory, compaction):
    options = {"compaction_min_entries": 8} if compaction else {}
    cluster = cluster_factory(**options)
    cluster.start_all()
    leader = await cluster.leader()
    for batch in range(10):
        await cluster.store(leader).update(create_tasks(f"b{batch}-", 3))
    await cluster.nodes[leader].wait_ready(10)       # an empty change (a read barrier) is in the log too
    await cluster.converged()
    expected = cluster.stores[leader].snapshot()
    survivor = next(i for i in cluster.nodes if i != leader)
    await cluster.stop_all()
    data_dir = cluster.root / f"m{survivor}"
    assert (data_dir / "raft.dump").exists() == compaction

    local = read_local_state(data_dir)
    assert local.snapshot == expected            # every committed change, read without Raft
    moved = reset_raft_state(data_dir, cluster.addrs[survivor], local.snapshot, local.last_index)
    assert moved is not None and (moved / "raft.journal").exists()
    assert json.loads((data_dir / "members.json").read_text())["members"] == [cluster.addrs[survivor]]

    # Started with the old peers, as a daemon would from node.json: the saved membership wins.
    node = cluster.start(survivor, peers=[a for a in cluster.addrs if a != cluster.addrs[survivor]])
    await node.wait_ready(10)
    assert node.is_leader() and node.member_addrs() == [cluster.addrs[survivor]]
    assert len(task_ids(cluster.stores[survivor])) == 30
    await cluster.store(survivor).update(create_tasks("after", 2))

    # A restart replays the new journal: still one member, nothing lost.
    await cluster.stop(survivor)
    node = cluster.start(survivor, peers=list(cluster.addrs))
    await node.wait_ready(10)
    assert node.member_addrs() == [cluster.addrs[survivor]]
    assert len(task_ids(cluster.stores[survivor])) == 32

    # New members join the rebuilt cluster and catch up (from the dump or the log).
    for _ in range(2):
        new = cluster.add_slot()
        cluster.start(new, peers=[cluster.addrs[survivor]])
        await node.add_member(cluster.addrs[new])
        await cluster.nodes[new].wait_ready(15)
    await cluster.converged()
    assert len(task_ids(cluster.stores[new])) == 32
    await cluster.stop(survivor)                 # 2 of 3 remain: a new leader is elected
    await cluster.leader()
    await cluster.store(new).update(create_tasks("failover", 1))
    await cluster.converged()
    assert task_ids(cluster.stores[new], "failover") == {"failover000"}


async def test_entries_the_survivor_holds_beyond_its_known_commit_index_are_kept(cluster_factory):
    """The survivor's journal may hold acknowledged writes it never learned were committed."""
    cluster = cluster_factory()
    cluster.start_all()
    leader = await cluster.leader()
    await cluster.store(leader).update(create_tasks("acked", 5))
    survivor = next(i for i in cluster.nodes if i != leader)
    # Stop the survivor at once: its commit index on disk lags (saved once a second).
    await cluster.stop(survivor)
    await cluster.stop_all()
    local = read_local_state(cluster.root / f"m{survivor}")
    store = MemoryStore()
    store.restore(local.snapshot)
    assert task_ids(store, "acked") == {f"acked{i:03}" for i in range(5)}
    assert local.entries_applied >= 1


def test_reading_a_directory_without_raft_state_is_a_clear_error(tmp_path):
    from manager.state import RaftConfigError
    with pytest.raises(RaftConfigError, match="no raft state"):
        read_local_state(tmp_path)


async def test_no_leader_is_reported_while_an_isolated_member_waits(cluster_factory):
    cluster = cluster_factory(size=2)
    cluster.start(0)
    await asyncio.sleep(0)
    view = quorum_view(cluster.nodes[0].status())
    assert view.leader is None and not view.has_quorum
