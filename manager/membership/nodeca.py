"""NodeCA: turns a join token and a CSR into a node certificate and a Node object.

Any manager serves it; the new Node object is proposed through Raft like any write.
Callers of IssueNodeCertificate have no certificate yet: the token is their credential.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Callable

import grpc

from manager.ca import CAError, InvalidJoinToken, JoinTokens, RootCA, node_cert_validity, parse_join_token
from manager.ca.rotation import signing_root, trusted_roots
from manager.ids import new_id
from manager.rolenames import ou_to_role, role_name, role_to_ou
from manager.state import Kind
from proto import cluster_pb2, cluster_pb2_grpc, objects_pb2
from proto.ports import raft_addr

log = logging.getLogger(__name__)


def manager_addrs(view) -> list[str]:
    return sorted(n.manager_status.addr for n in view.nodes()
                  if n.role == objects_pb2.MANAGER and n.manager_status.addr)


class NodeCAServicer(cluster_pb2_grpc.NodeCAServicer):
    def __init__(self, store, authorize, raft_members: Callable[[], list[str]],
                 raft_password: bytes, clock: Callable[[], float] = time.time, secrets_key: bytes = b""):
        self._store = store
        self._authorize = authorize
        self._raft_members = raft_members
        self._raft_password = raft_password
        self._secrets_key = secrets_key  # handed to managers only, like the Raft password
        self._clock = clock

    def _root_ca(self) -> RootCA:
        """The CA that signs now: the new root once a CA rotation re-issues (manager.ca.rotation)."""
        return signing_root(self._store.view().cluster(), self._secrets_key)

    async def IssueNodeCertificate(self, request, context):
        cluster = self._store.view().cluster()
        tokens = cluster.root_ca.join_tokens
        try:
            parse_join_token(request.token)
        except InvalidJoinToken as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        try:
            ou = JoinTokens(tokens.worker, tokens.manager).role_for(request.token, cluster.root_ca.ca_digest)
        except InvalidJoinToken as err:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err))
        role = ou_to_role(ou)
        if ":" not in request.advertise_addr:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"join: advertise address {request.advertise_addr!r} must be HOST:PORT")
        node_id = new_id()
        host = request.advertise_addr.rsplit(":", 1)[0]
        try:
            signer = self._root_ca()
            cert = signer.sign_node_csr(request.csr, node_id, role_to_ou(role),
                                                 datetime.now(timezone.utc), ip_sans=[host],
                                                 validity=node_cert_validity(cluster.spec.ca_config.node_cert_expiry))
        except CAError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"join: {err}")
        node = objects_pb2.Node(id=node_id, role=role)
        node.spec.desired_role = role
        node.spec.availability = request.availability
        node.description.hostname = request.hostname
        node.status.state = objects_pb2.NodeStatus.UNKNOWN
        node.status.addr = host
        if role == objects_pb2.MANAGER:
            node.manager_status.addr = request.advertise_addr
            node.manager_status.raft_addr = raft_addr(request.advertise_addr)
        await self._store.update(lambda tx: tx.create(node))
        log.info("node %s joined as %s (%s)", node_id, role_name(role), request.hostname)
        view = self._store.view()
        response = cluster_pb2.IssueNodeCertificateResponse(
            node_id=node_id, role=role, certificate=cert + signer.cert_pem,
            root_ca=trusted_roots(view.cluster()), cluster_id=cluster.id, managers=manager_addrs(view))
        if role == objects_pb2.MANAGER:
            response.raft_password = self._raft_password
            response.secrets_key = self._secrets_key
            response.raft_peers.extend(self._raft_members())
        return response

    async def RenewCertificate(self, request, context):
        ident = await self._authorize(context, "swarm-worker", "swarm-manager")
        view = self._store.view()
        node = view.get(Kind.NODE, ident.node_id)
        if node is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"node {ident.node_id} is not a member of this swarm (it was removed)")
        try:
            signer = self._root_ca()
            cert = signer.sign_node_csr(
                request.csr, node.id, role_to_ou(node.role), datetime.now(timezone.utc),
                ip_sans=[node.status.addr] if node.status.addr else [],
                validity=node_cert_validity(view.cluster().spec.ca_config.node_cert_expiry))
        except CAError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"renew certificate: {err}")
        response = cluster_pb2.RenewCertificateResponse(
            role=node.role, certificate=cert + signer.cert_pem)
        log.info("issued node %s a new certificate (%s)", node.id, role_name(node.role))
        if node.role == objects_pb2.MANAGER:
            response.raft_password = self._raft_password
            response.secrets_key = self._secrets_key
            response.raft_peers.extend(self._raft_members())
        return response


async def request_certificate(tls, managers: list[str], timeout: float = 10.0
                              ) -> tuple[cluster_pb2.RenewCertificateResponse, bytes]:
    """A fresh certificate for this node from the first manager in `managers` that answers:
    (the RenewCertificate response, the new private key). The request goes over mutual TLS with the
    node's current certificate (`tls`, a manager.ca.NodeTLS). Raises CAError naming every manager
    tried and why it failed."""
    from manager.ca import channel_options, make_node_key_and_csr
    from proto.ports import mtls_addr

    key, csr = await asyncio.to_thread(make_node_key_and_csr)
    errors = []
    for addr in dict.fromkeys(managers):
        try:
            async with grpc.aio.secure_channel(mtls_addr(addr), tls.channel_credentials(),
                                               options=channel_options()) as channel:
                response = await cluster_pb2_grpc.NodeCAStub(channel).RenewCertificate(
                    cluster_pb2.RenewCertificateRequest(csr=csr), timeout=timeout)
            return response, key
        except grpc.aio.AioRpcError as err:
            errors.append(f"{addr}: {err.code().name} {err.details()}")
    raise CAError("could not get a certificate from any manager: " + ("; ".join(errors) or "no manager known"))
