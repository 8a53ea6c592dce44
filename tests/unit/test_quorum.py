"""What a manager says about leader, reachability and node states from its Raft view (manager.quorum)."""

from __future__ import annotations

from manager.quorum import (NO_LEADER, UNCONFIRMED, node_as_seen, node_state_counts, quorum_view, quorum_warning,
                            single_manager_nodes)
from manager.state.raft import RaftMemberStatus, RaftStatus
from proto import objects_pb2

M1, M2, M3 = "192.0.2.11:2378", "192.0.2.12:2378", "192.0.2.13:2378"
READY = objects_pb2.NodeStatus.READY


def status(self_addr=M3, leader=M1, is_leader=False, reachable=(M1, M2)) -> RaftStatus:
    members = [RaftMemberStatus(self_addr, True)]
    members += [RaftMemberStatus(a, a in reachable) for a in (M1, M2, M3) if a != self_addr]
    return RaftStatus(term=4, commit_index=10, last_applied=10, leader_addr=leader, self_addr=self_addr,
                      is_leader=is_leader, has_quorum=True, members=members)


def manager(node_id: str, raft: str, state=READY) -> objects_pb2.Node:
    node = objects_pb2.Node(id=node_id, role=objects_pb2.MANAGER)
    node.status.state = state
    node.manager_status.raft_addr = raft
    return node


def worker(node_id: str, state=READY) -> objects_pb2.Node:
    node = objects_pb2.Node(id=node_id, role=objects_pb2.WORKER)
    node.status.state = state
    return node


class TestQuorumView:
    def test_healthy_follower_confirms_the_connected_leader(self):
        view = quorum_view(status())
        assert view.leader == M1 and view.has_quorum and quorum_warning(view) == ""

    def test_a_dead_leader_pysyncobj_still_names_is_not_the_leader(self):
        view = quorum_view(status(reachable=()))      # 2 of 3 dead, PySyncObj still says M1 leads
        assert view.leader is None and not view.has_quorum
        warning = quorum_warning(view)
        assert warning.startswith(NO_LEADER)
        assert "2 of 3 managers are unreachable" in warning and "--force-new-cluster" in warning

    def test_leader_is_self_only_while_leading(self):
        assert quorum_view(status(self_addr=M1, leader=M1, is_leader=True)).leader == M1
        assert quorum_view(status(self_addr=M1, leader=M1, is_leader=False)).leader is None

    def test_election_with_quorum_says_so(self):
        view = quorum_view(status(leader=None))
        assert view.leader is None and view.has_quorum
        assert "electing" in quorum_warning(view)

    def test_single_manager_has_quorum(self):
        single = RaftStatus(term=1, commit_index=1, last_applied=1, leader_addr=M1, self_addr=M1,
                            is_leader=True, has_quorum=True, members=[RaftMemberStatus(M1, True)])
        view = quorum_view(single)
        assert view.has_quorum and view.leader == M1 and view.quorum_size == 1

    def test_four_members_two_reachable_is_no_quorum(self):
        members = [RaftMemberStatus(a, a in (M1, M2)) for a in (M1, M2, M3, "192.0.2.14:2378")]
        raw = RaftStatus(term=1, commit_index=1, last_applied=1, leader_addr=None, self_addr=M1,
                         is_leader=False, has_quorum=False, members=members)
        assert not quorum_view(raw).has_quorum


class TestNodesAsSeen:
    def test_manager_status_from_raft(self):
        view = quorum_view(status())
        leader, follower, gone = (node_as_seen(manager("a", M1), view), node_as_seen(manager("b", M2), view),
                                  node_as_seen(manager("c", "192.0.2.99:2378"), view))
        assert leader.manager_status.leader
        assert leader.manager_status.reachability == objects_pb2.ManagerStatus.REACHABLE
        assert not follower.manager_status.leader
        assert follower.manager_status.reachability == objects_pb2.ManagerStatus.REACHABLE
        assert gone.manager_status.reachability == objects_pb2.ManagerStatus.UNREACHABLE
        assert leader.status.state == READY

    def test_without_a_leader_no_node_is_ready(self):
        view = quorum_view(status(reachable=()))
        nodes = [manager("a", M1), manager("b", M2), manager("c", M3), worker("w1"),
                 worker("w2", objects_pb2.NodeStatus.DOWN)]
        seen = [node_as_seen(n, view) for n in nodes]
        assert {n.status.state for n in seen} == {objects_pb2.NodeStatus.UNKNOWN}
        assert all(n.status.message == UNCONFIRMED for n in seen)
        assert not any(n.manager_status.leader for n in seen)
        assert [n.manager_status.reachability for n in seen[:3]] == [
            objects_pb2.ManagerStatus.UNREACHABLE, objects_pb2.ManagerStatus.UNREACHABLE,
            objects_pb2.ManagerStatus.REACHABLE]
        assert nodes[0].status.state == READY          # the input is not changed
        assert node_state_counts(nodes, view) == {"unknown": 5, "down": 0, "ready": 0, "disconnected": 0}

    def test_counts_with_a_leader_follow_the_store(self):
        nodes = [manager("a", M1), worker("w1"), worker("w2", objects_pb2.NodeStatus.DOWN)]
        assert node_state_counts(nodes, quorum_view(status())) == {
            "unknown": 0, "down": 1, "ready": 2, "disconnected": 0}


def test_a_rebuilt_swarm_has_one_manager_and_keeps_its_workers():
    me = manager("c", "192.0.2.99:2378")
    nodes = [manager("a", M1), manager("b", M2), manager("c", M3), worker("w1")]
    out = {n.id: n for n in single_manager_nodes(nodes, me, "removed by force-new-cluster")}
    assert set(out) == {"a", "b", "c"}                 # the worker is not rewritten
    assert out["c"] is me
    for dead in (out["a"], out["b"]):
        assert dead.role == dead.spec.desired_role == objects_pb2.WORKER
        assert not dead.HasField("manager_status")
        assert dead.status.state == objects_pb2.NodeStatus.DOWN
        assert dead.status.message == "removed by force-new-cluster"
    assert nodes[0].role == objects_pb2.MANAGER        # inputs untouched
