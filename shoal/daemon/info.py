"""What ``shoal info`` shows about this node and, on a manager, the swarm."""

from __future__ import annotations

from typing import TYPE_CHECKING

from manager.quorum import quorum_view, quorum_warning
from proto import control_pb2
from shoal import __version__

if TYPE_CHECKING:
    from shoal.daemon.roles import Daemon


def info(daemon: Daemon) -> control_pb2.InfoResponse:
    node = daemon.node
    response = control_pb2.InfoResponse(hostname=daemon.hostname, engine_version=__version__,
                                        local_node_state="inactive")
    if node is None:
        return response
    response.node_id = node.node_id
    response.cluster_id = node.cluster_id
    response.node_addr = node.advertise_addr
    agent = daemon.agent
    if daemon.locked:
        response.local_node_state = "locked"
        return response
    response.local_node_state = "active" if agent is not None and agent.connected.is_set() else "pending"
    certificate_error = daemon.certs.error() if daemon.certs is not None else ""
    if certificate_error:
        response.local_node_state = "error"
        response.error = certificate_error
    response.remote_managers.extend(agent.managers if agent else node.managers)
    manager, raft = daemon.manager, daemon.raft
    if manager is None or raft is None:
        return response
    response.control_available = True
    status = raft.status()
    view = quorum_view(status)
    response.raft_term = status.term
    response.raft_commit_index = status.commit_index
    response.leader_addr = manager.leader_addr() or ""
    response.error = quorum_warning(view)
    by_raft = {n.manager_status.raft_addr: n for n in manager.store.view().nodes()}
    for addr in view.members:
        member = by_raft.get(addr)
        response.managers.append(control_pb2.RaftMember(
            node_id=member.id if member else "", raft_addr=addr,
            leader=addr == view.leader, reachable=addr in view.reachable))
    response.nodes, response.managers_count = manager.counts()
    return response
