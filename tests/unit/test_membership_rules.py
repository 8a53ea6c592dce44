"""Pure membership rules: liveness, demotion safety, node lookup, address parsing."""

from __future__ import annotations

import pytest

from manager.controlapi.nodes import NodeLookupError, node_matches, resolve_node
from manager.dispatcher.liveness import expired_nodes
from manager.membership.promotion import DemotionRefused, check_demotion
from proto import objects_pb2
from proto.ports import grpc_addr_of_raft, mtls_addr, raft_addr

READY = objects_pb2.NodeStatus.READY
DOWN = objects_pb2.NodeStatus.DOWN


def make_node(node_id: str, hostname: str | None = None, manager: bool = False, state=READY,
              raft: str | None = None, labels: dict | None = None) -> objects_pb2.Node:
    node = objects_pb2.Node(id=node_id, role=objects_pb2.MANAGER if manager else objects_pb2.WORKER)
    node.description.hostname = hostname or node_id
    node.status.state = state
    if manager:
        node.manager_status.raft_addr = raft or f"{node_id}:2378"
    node.spec.annotations.labels.update(labels or {})
    return node


class TestLiveness:
    def test_node_without_heartbeat_gets_a_full_grace_from_leader_start(self):
        nodes = [make_node("a")]
        assert expired_nodes(nodes, {}, leader_since=100.0, grace=3.0, now=102.9) == []
        [expired] = expired_nodes(nodes, {}, leader_since=100.0, grace=3.0, now=103.5)
        assert expired.node_id == "a" and "heartbeat failure" in expired.reason

    def test_recent_heartbeat_keeps_a_node_ready(self):
        nodes = [make_node("a"), make_node("b")]
        seen = {"a": 109.0, "b": 105.0}
        assert [e.node_id for e in expired_nodes(nodes, seen, 100.0, 3.0, 110.0)] == ["b"]

    def test_a_shortened_period_does_not_expire_nodes_told_the_longer_one(self):
        # Both heartbeated at t=100 under a 5 s period (grace 15 s); the period is now 1 s (grace 3 s).
        # Found by the rolling-restart lab test: `swarm update --dispatcher-heartbeat 1s` marked every
        # node Down at once.
        nodes = [make_node("a"), make_node("b")]
        seen, promised = {"a": 100.0, "b": 100.0}, {"a": 15.0, "b": 3.0}
        assert [e.node_id for e in expired_nodes(nodes, seen, 0.0, 3.0, 104.0, promised)] == ["b"]
        [late] = expired_nodes(nodes[:1], seen, 0.0, 3.0, 115.5, promised)
        assert "grace 15.0s" in late.reason

    def test_down_nodes_are_not_expired_again(self):
        assert expired_nodes([make_node("a", state=DOWN)], {}, 0.0, 3.0, 100.0) == []


class TestDemotion:
    def managers(self, n: int) -> list[objects_pb2.Node]:
        return [make_node(f"m{i}", manager=True) for i in range(n)] + [make_node("w")]

    def test_last_manager_cannot_be_demoted(self):
        with pytest.raises(DemotionRefused, match="last manager"):
            check_demotion(self.managers(1), "m0", {"m0:2378"})

    def test_demotion_with_reachable_quorum_is_allowed(self):
        check_demotion(self.managers(3), "m2", {"m0:2378", "m1:2378"})

    def test_demotion_that_loses_quorum_is_refused(self):
        # 3 managers, m1 unreachable: demoting m2 leaves m0 + m1 with only m0 reachable (quorum 2).
        with pytest.raises(DemotionRefused, match="quorum"):
            check_demotion(self.managers(3), "m2", {"m0:2378", "m2:2378"})

    def test_demoting_a_worker_is_not_checked(self):
        check_demotion(self.managers(1), "w", set())


class TestNodeLookup:
    nodes = [make_node("abc123", "web1"), make_node("abd456", "web2"), make_node("xyz", "abc")]

    @pytest.mark.parametrize("ref, expected", [("abc123", "abc123"), ("web2", "abd456"), ("abd", "abd456"),
                                               ("abc", "xyz")])
    def test_resolves_id_hostname_and_prefix(self, ref, expected):
        assert resolve_node(self.nodes, ref).id == expected

    def test_ambiguous_prefix_is_an_error(self):
        with pytest.raises(NodeLookupError, match="ambiguous"):
            resolve_node(self.nodes, "ab")

    def test_missing_node_is_not_found(self):
        with pytest.raises(NodeLookupError, match="not found") as err:
            resolve_node(self.nodes, "nope")
        assert err.value.not_found

    def test_filters(self):
        node = make_node("abc", "web1", labels={"zone": "a"})
        assert node_matches(node, {"role": "worker", "label": "zone=a", "name": "web"})
        assert not node_matches(node, {"label": "zone=b"})
        assert not node_matches(node, {"role": "manager"})


def test_port_plan():
    assert raft_addr("192.0.2.11:2377") == "192.0.2.11:2378"
    assert mtls_addr("192.0.2.11:2377") == "192.0.2.11:2379"
    assert grpc_addr_of_raft("192.0.2.11:2378") == "192.0.2.11:2377"
