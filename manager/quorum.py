"""What a manager can truthfully say about the swarm, from its own Raft view.

PySyncObj remembers the last leader it heard from and keeps reporting it after that leader died:
a follower that is connected to no one never starts an election, so its "leader" never changes.
These pure functions turn a ``RaftStatus`` into what ``node ls``, ``shoal info`` and ``/metrics``
show: a leader only when this manager can confirm one (it leads, or it is connected to the
leader), reachability of every member from the connections Raft has, whether a quorum of members
is reachable, and node states that say ``unknown`` while no leader confirms them (a node's
Ready/Down is written by the leader's dispatcher; without a leader it is only a memory).

No I/O; any thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from proto import objects_pb2

# Docker's wording (moby daemon/cluster errors.go), so scripts and operators recognise it.
NO_LEADER = ("The swarm does not have a leader. It's possible that too few managers are online. "
             "Make sure more than half of the managers are online.")

UNCONFIRMED = "no leader can confirm this node's state: the swarm has no leader (quorum lost?)"

NODE_STATE_NAMES = {objects_pb2.NodeStatus.UNKNOWN: "unknown", objects_pb2.NodeStatus.DOWN: "down",
                    objects_pb2.NodeStatus.READY: "ready",
                    objects_pb2.NodeStatus.DISCONNECTED: "disconnected"}


@dataclass(frozen=True)
class QuorumView:
    """This manager's view: ``leader`` is the Raft address of a leader it can confirm, or None."""

    self_addr: str
    members: tuple[str, ...]
    reachable: frozenset[str]
    leader: str | None

    @property
    def has_quorum(self) -> bool:
        """More than half of the members (self included) are reachable from here."""
        return len(self.reachable & set(self.members)) > len(self.members) / 2

    @property
    def quorum_size(self) -> int:
        return len(self.members) // 2 + 1


def quorum_view(status) -> QuorumView:
    """The view a ``manager.state.raft.RaftStatus`` supports.

    The leader PySyncObj names is kept only if it is this node while it leads, or a member this
    node is connected to: a dead leader's address is not reported as the leader.
    """
    members = tuple(sorted({m.addr for m in status.members} | {status.self_addr}))
    reachable = frozenset({m.addr for m in status.members if m.reachable} | {status.self_addr})
    leader = status.leader_addr or None
    if leader == status.self_addr:
        confirmed = status.is_leader
    else:
        confirmed = leader in reachable and leader in members
    return QuorumView(self_addr=status.self_addr, members=members, reachable=reachable,
                      leader=leader if confirmed else None)


def quorum_warning(view: QuorumView) -> str:
    """The message ``shoal info`` prints when there is no leader, with the way out; "" otherwise."""
    if view.leader is not None:
        return ""
    if view.has_quorum:
        return "The swarm is electing a leader; retry in a few seconds."
    lost = len(view.members) - len(view.reachable & set(view.members))
    return (f"{NO_LEADER} {lost} of {len(view.members)} managers are unreachable from this one "
            f"(a quorum needs {view.quorum_size}). If they are lost for good, run "
            "\"shoal swarm init --force-new-cluster\" on this manager: it becomes the only manager "
            "of a swarm that keeps every service, secret, config and network; then promote or "
            "join new managers.")


def node_as_seen(node: objects_pb2.Node, view: QuorumView) -> objects_pb2.Node:
    """A copy of ``node`` with what this manager can say about it now.

    Managers get ``manager_status.leader``/``reachability`` from Raft. Without a confirmed leader
    every node's state is UNKNOWN (the stored Ready/Down is only the last thing a leader wrote),
    with a message saying why.
    """
    out = objects_pb2.Node()
    out.CopyFrom(node)
    if node.role == objects_pb2.MANAGER and node.manager_status.raft_addr:
        addr = node.manager_status.raft_addr
        out.manager_status.leader = view.leader is not None and addr == view.leader
        out.manager_status.reachability = (objects_pb2.ManagerStatus.REACHABLE if addr in view.reachable
                                           else objects_pb2.ManagerStatus.UNREACHABLE)
    if view.leader is None:
        out.status.state = objects_pb2.NodeStatus.UNKNOWN
        out.status.message = UNCONFIRMED
    return out


def node_state_counts(nodes: Iterable[objects_pb2.Node], view: QuorumView) -> dict[str, int]:
    """Nodes by state name as ``node ls`` would show them (for ``shoal_nodes{state=...}``)."""
    counts = {name: 0 for name in NODE_STATE_NAMES.values()}
    for node in nodes:
        state = node_as_seen(node, view).status.state
        counts[NODE_STATE_NAMES.get(state, "unknown")] += 1
    return counts


def single_manager_nodes(nodes: Iterable[objects_pb2.Node], self_node: objects_pb2.Node,
                         message: str) -> list[objects_pb2.Node]:
    """The node objects to write when a swarm is rebuilt with ``self_node`` as its only manager.

    ``self_node`` is this manager as it must now be (addresses, role MANAGER, Ready); it is
    returned as given (created if the store lacks it, as after a restore onto a new host). Every
    other manager is demoted in the store (role and desired role WORKER, no manager status, state
    Down with ``message``): it is no longer a Raft member, and if its host comes back, the
    dispatcher tells it it is a worker, so it renews its certificate as one and drops its old
    Raft state instead of pretending to be a manager. Workers are left alone. Pure.
    """
    out = [self_node]
    for node in nodes:
        if node.id == self_node.id or node.role != objects_pb2.MANAGER:
            continue
        demoted = objects_pb2.Node()
        demoted.CopyFrom(node)
        demoted.role = objects_pb2.WORKER
        demoted.spec.desired_role = objects_pb2.WORKER
        demoted.ClearField("manager_status")
        demoted.status.state = objects_pb2.NodeStatus.DOWN
        demoted.status.message = message
        out.append(demoted)
    return out
