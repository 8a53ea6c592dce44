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
        node = self._store.view().get(Kind.NODE, ident.node_id)
        if node is None or node.role != objects_pb2.MANAGER:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"raft join: node {ident.node_id} is not a manager of this swarm")
        members = [m.addr for m in self._raft.status().members]
        if request.raft_addr not in members:
            log.info("adding %s (node %s) to the raft cluster", request.raft_addr, ident.node_id)
            try:
                await self._raft.add_member(request.raft_addr)
            except Exception as err:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"raft join of {request.raft_addr}: {err}")

        def record(tx):
            current = tx.get(Kind.NODE, ident.node_id)
            grpc_addr = grpc_addr_of_raft(request.raft_addr)
            if current is None or (current.manager_status.raft_addr == request.raft_addr
                                   and current.manager_status.addr == grpc_addr):
                return
            new = objects_pb2.Node()
            new.CopyFrom(current)
            new.manager_status.raft_addr = request.raft_addr
            new.manager_status.addr = grpc_addr
            tx.update(new)

        await self._store.update_retry(record)
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
