"""Elections: a follower whose election timer runs out while the leader is healthy (a restart, a
slow link) changes no term (Pre-Vote, docs/raft.md); real failover and leadership transfer still
elect a new leader."""

from __future__ import annotations

import pytest

from manager.state.raft_timings import RaftTimings
from raft_cluster import create_tasks, task_ids, wait_for

# A leader that stays healthy under a loaded test machine: the other members refuse a pre-vote only
# while they have heard the leader within the election timeout, and a 1 s timeout (the default) is
# shorter than the stalls of a busy 2-core CI machine. The forced timeouts below do not depend on it.
HEALTHY_LEADER = RaftTimings(election_min=4.0, election_max=6.0, leader_fallback=4.0,
                             connection_timeout=8.0)

pytestmark = [pytest.mark.raft, pytest.mark.timeout(90)]


def force_election_timeout(node) -> None:
    """Make ``node``'s election timer run out on its next tick, as if it had not heard from a
    leader for an election timeout (set on its tick thread, between ticks)."""
    pending = [True]

    def expire() -> None:       # a one-shot (removing a tick callback from one would deadlock)
        if pending:
            pending.clear()
            node._SyncObj__raftElectionDeadline = 0
    node.addOnTickCallback(expire)


async def healthy_cluster_with_data(cluster_factory):
    """A 3-member cluster with HEALTHY_LEADER timings and a few tasks replicated everywhere:
    (cluster, leader, its term, a follower)."""
    cluster = cluster_factory(timings=HEALTHY_LEADER)
    cluster.start_all()
    leader = await cluster.leader(timeout=20)
    await cluster.store(leader).update(create_tasks("before", 3))
    await cluster.converged()
    term = cluster.nodes[leader].status().term
    follower = next(i for i in cluster.nodes if i != leader)
    return cluster, leader, term, follower


async def test_a_followers_election_timeout_while_the_leader_is_healthy_changes_no_term(cluster_factory):
    cluster, leader, term, follower = await healthy_cluster_with_data(cluster_factory)
    node = cluster.nodes[follower]
    refused = node.pre_vote_refusals
    # The timer can be reset by a heartbeat arriving in the same tick: expire it until it fires.
    while node.pre_votes_started == 0 and node.elections_started == 0:
        force_election_timeout(node)
        await wait_for(lambda: node._SyncObj__raftElectionDeadline != 0, 5, "the tick to see the timer")
    # Positive signal: both members answered (they refuse: they hear the leader), or a term moved.
    await wait_for(lambda: node.pre_vote_refusals >= refused + 2
                   or any(n.status().term != term for n in cluster.nodes.values()),
                   10, "the pre-vote to be answered")
    assert {i: n.status().term for i, n in cluster.nodes.items()} == {i: term for i in cluster.nodes}
    assert all(n.elections_started == 0 for i, n in cluster.nodes.items() if i != leader)
    assert cluster.nodes[leader].is_leader()
    assert cluster.leader_changes[leader] == [True]
    await cluster.store(follower).update(create_tasks("after", 1))
    assert "after000" in task_ids(cluster.stores[leader])


async def test_a_restarted_follower_rejoins_without_a_term_change(cluster_factory):
    cluster, leader, term, follower = await healthy_cluster_with_data(cluster_factory)
    for _ in range(3):
        await cluster.stop(follower)
        await cluster.store(leader).update(create_tasks(f"gap{_}-", 2))
        node = cluster.start(follower)
        force_election_timeout(node)        # as if the leader's first heartbeat were late
        await node.wait_ready(10)
        await cluster.converged()
    assert {i: n.status().term for i, n in cluster.nodes.items()} == {i: term for i in cluster.nodes}
    assert cluster.leader_changes[leader] == [True]
    assert cluster.nodes[follower].elections_started == 0


async def test_leadership_transfer_still_elects_the_target_at_once(cluster_factory):
    cluster = cluster_factory()
    cluster.start_all()
    old = await cluster.leader()
    await cluster.store(old).update(create_tasks("before", 3))
    await cluster.converged()
    term = cluster.nodes[old].status().term
    pre_votes = {i: n.pre_votes_started for i, n in cluster.nodes.items()}
    new_addr = await cluster.nodes[old].transfer_leadership(timeout=10)
    new = cluster.addrs.index(new_addr)
    assert new != old
    assert await cluster.leader() == new
    assert cluster.nodes[new].status().term > term
    assert cluster.nodes[new].pre_votes_started == pre_votes[new]   # the transfer skipped it
    await cluster.store(old).update(create_tasks("after", 1))
    assert "after000" in task_ids(cluster.stores[new])


async def test_when_the_leader_dies_a_pre_vote_passes_and_a_survivor_is_elected(cluster_factory):
    cluster = cluster_factory()
    cluster.start_all()
    old = await cluster.leader()
    term = cluster.nodes[old].status().term
    await cluster.stop(old)
    new = await cluster.leader()
    assert new != old
    assert cluster.nodes[new].status().term > term
    assert cluster.nodes[new].pre_votes_started >= 1


async def test_a_one_member_cluster_elects_itself(cluster_factory):
    cluster = cluster_factory(1)
    cluster.start_all()
    assert await cluster.leader() == 0
    await cluster.store(0).update(create_tasks("solo", 1))
