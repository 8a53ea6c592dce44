"""RaftMembership: a manager asks the leader to add its Raft endpoint to the cluster."""

from __future__ import annotations

import logging

import grpc

from manager import grpcutil
from manager.state import Kind
from proto import cluster_pb2, cluster_pb2_grpc, objects_pb2
from proto.ports import grpc_addr_of_raft

log = logging.getLogger(__name__)


class RaftMembershipServicer(cluster_pb2_grpc.RaftMembershipServicer):
    def __init__(self, store, raft, leadership, authorize):
        self._store = store
        self._raft = raft
        self._leadership = leadership
        self._authorize = authorize

    async def Join(self, request, context):
        ident = await self._authorize(context, "swarm-manager")
        if not self._leadership.is_leader():
            await grpcutil.abort_not_leader(context, self._leadership.leader_addr(), "raft join")
        # Record the address first: from then on a demotion (RoleReconciler) knows which Raft
        # member to remove, even if it starts before the member is added.
        grpc_addr = grpc_addr_of_raft(request.raft_addr)

        def record(tx) -> bool:
            current = tx.get(Kind.NODE, ident.node_id)
            if current is None or not _wanted_as_manager(current):
                return False
            if current.manager_status.raft_addr != request.raft_addr or current.manager_status.addr != grpc_addr:
                new = objects_pb2.Node()
                new.CopyFrom(current)
                new.manager_status.raft_addr = request.raft_addr
                new.manager_status.addr = grpc_addr
                tx.update(new)
            return True

        if not await self._store.update_retry(record):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"raft join: node {ident.node_id} is not a manager of this swarm "
                                "(or is being demoted)")
        members = [m.addr for m in self._raft.status().members]
        if request.raft_addr not in members:
            log.info("adding %s (node %s) to the raft cluster", request.raft_addr, ident.node_id)
            try:
                await self._raft.add_member(request.raft_addr)
            except Exception as err:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"raft join of {request.raft_addr}: {err}")
            node = self._store.view().get(Kind.NODE, ident.node_id)
            if node is None or not _wanted_as_manager(node):
                # Demoted while the member was being added: the demotion may have found nothing to
                # remove yet, so take this one out again rather than leave a member that will stop
                # (and cost the cluster its quorum).
                log.info("node %s was demoted while joining: removing %s again", ident.node_id, request.raft_addr)
                await self._raft.remove_member(request.raft_addr)
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"raft join: node {ident.node_id} was demoted while joining")
        return cluster_pb2.RaftJoinResponse(raft_peers=[m.addr for m in self._raft.status().members])

    async def Leave(self, request, context):
        ident = await self._authorize(context, "swarm-manager")
        if not self._leadership.is_leader():
            await grpcutil.abort_not_leader(context, self._leadership.leader_addr(), "raft leave")
        node = self._store.view().get(Kind.NODE, request.node_id or ident.node_id)
        if node is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"raft leave: no node {request.node_id}")
        addr = node.manager_status.raft_addr
        if addr and addr in [m.addr for m in self._raft.status().members]:
            await self._raft.remove_member(addr)
        return cluster_pb2.RaftLeaveResponse()


def _wanted_as_manager(node: objects_pb2.Node) -> bool:
    """A MANAGER the user has not asked to demote (desired role WORKER: the RoleReconciler is
    taking it out of Raft, and a join now would put back a member about to stop)."""
    return node.role == objects_pb2.MANAGER and node.spec.desired_role == objects_pb2.MANAGER
