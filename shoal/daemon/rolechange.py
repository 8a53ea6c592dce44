"""Promotion and demotion as the node sees them: the swarm says this node's role changed (in its
session), so the node renews its certificate for the new role and restarts its roles."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc

from manager.ca import make_node_key_and_csr
from manager.rolenames import role_name
from proto import cluster_pb2, cluster_pb2_grpc
from shoal.daemon import membership
from shoal.nodestate import NodeState

if TYPE_CHECKING:
    from shoal.daemon.roles import Daemon

log = logging.getLogger("shoald")


async def change_role(daemon: Daemon, wanted: str) -> None:
    """Renew the certificate for the role the cluster assigned and restart the roles."""
    async with daemon.lock:
        node = daemon.node
        if node is None or node.role == wanted:
            return
        log.info("role change: %s -> %s", node.role, wanted)
        _, _, ca = daemon.state.load_certificates()
        new_key, csr = make_node_key_and_csr()
        response = await renew_certificate(daemon, node, csr)
        if role_name(response.role) != wanted:
            return
        await daemon.stop_node()
        daemon.state.save_certificates(response.certificate, new_key, ca)
        node.role = wanted
        daemon.state.forget_raft()
        if wanted == "manager":
            daemon.state.save_raft_password(response.raft_password)
            daemon.state.save_secrets_key(response.secrets_key)
            node.raft_peers = list(response.raft_peers)
        else:
            node.raft_peers = []
        daemon.state.save(node)
        await daemon.start_node(node)
        if wanted == "manager":
            await membership.join_raft(daemon, node)


async def renew_certificate(daemon: Daemon, node: NodeState, csr: bytes) -> cluster_pb2.RenewCertificateResponse:
    """A certificate for the role the cluster now assigns this node, from the agent's current
    manager first (the leader), then the others."""
    first = daemon.agent.managers[:1] if daemon.agent else []

    async def renew(channel: grpc.aio.Channel, timeout: float) -> cluster_pb2.RenewCertificateResponse:
        response: cluster_pb2.RenewCertificateResponse = await cluster_pb2_grpc.NodeCAStub(channel).RenewCertificate(
            cluster_pb2.RenewCertificateRequest(csr=csr), timeout=timeout)
        return response

    return await membership.call_managers(first + node.managers, membership.node_credentials(daemon), renew,
                                          what="renew certificate")
