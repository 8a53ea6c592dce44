"""gRPC transport security from the cluster PKI: credentials, peer identity, role checks.

How grpc python's TLS behaves, which decides how a manager listens (measured with grpcio 1.85):

- `grpc.ssl_server_credentials(..., require_client_auth=True)` asks for a client certificate and
  verifies it against the root CA; a client with no certificate, or one from another CA, fails the
  TLS handshake, which the client sees as UNAVAILABLE ("Socket closed"), not as a status a handler
  could choose.
- `require_client_auth=False` does not *ask* for a client certificate at all (the C core gets
  GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE; python exposes no "verify if given" mode such as Go's
  VerifyClientCertIfGiven). A certificate the client would present is never sent, so handlers on
  such a port always see an anonymous peer.

So a manager serves one `grpc.aio` server on two ports: a mutual-TLS port for node RPCs
(`server_credentials(..., require_client_cert=True)`) and a join port that only authenticates
the server (`require_client_cert=False`), where a node without a certificate can fetch the CA and
ask for one. Handlers for node RPCs call `require_role`, so on the join port they answer
UNAUTHENTICATED "no client certificate presented", and a worker on a manager-only RPC gets
PERMISSION_DENIED naming the node.

Servers present their leaf *and* the root CA (`server_credentials` appends the root when the chain
lacks it), so `bootstrap.fetch_root_ca` can read the CA from either port's handshake.

Managers are dialled by IP, so clients check the server's name against the SAN "swarm-manager"
that every manager certificate carries (`channel_options`).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from .certificates import (
    MANAGER_ROLE,
    WORKER_ROLE,
    NodeIdentity,
    split_pem_certificates,
)
from .errors import CAError, CertificateError

log = logging.getLogger(__name__)

_ROLE_WORDS = {MANAGER_ROLE: "manager", WORKER_ROLE: "worker"}


def _chain_with_root(node_cert_pem: bytes, root_ca_pem: bytes) -> bytes:
    """`node_cert_pem` (leaf first) with the root CA appended unless it is already there."""
    chain = split_pem_certificates(node_cert_pem)
    roots = split_pem_certificates(root_ca_pem)
    if not chain:
        raise CAError("cannot make TLS credentials: the node certificate is not PEM")
    if not roots:
        raise CAError("cannot make TLS credentials: the root CA certificate is not PEM")
    normalised = [block.strip() for block in chain]
    for root in roots:
        if root.strip() not in normalised:
            chain.append(root)
    return b"".join(chain)


def server_credentials(
    node_cert_pem: bytes,
    node_key_pem: bytes,
    root_ca_pem: bytes,
    require_client_cert: bool,
) -> grpc.ServerCredentials:
    """Server credentials presenting the node's chain (leaf + root).

    With `require_client_cert`, clients must present a certificate issued by `root_ca_pem` or the
    handshake fails. Without it, clients are not asked for a certificate at all (see the module
    docstring): use that only for the join port.
    """
    chain = _chain_with_root(node_cert_pem, root_ca_pem)
    return grpc.ssl_server_credentials(
        [(node_key_pem, chain)],
        root_certificates=root_ca_pem if require_client_cert else None,
        require_client_auth=require_client_cert,
    )


def channel_credentials(
    root_ca_pem: bytes,
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
) -> grpc.ChannelCredentials:
    """Client credentials trusting only the cluster root CA, optionally presenting a node cert.

    A joining node that has no certificate yet passes neither cert nor key.
    """
    if (client_cert_pem is None) != (client_key_pem is None):
        raise CAError("cannot make TLS credentials: give both the client certificate and key, or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=root_ca_pem,
        private_key=client_key_pem,
        certificate_chain=client_cert_pem,
    )


def channel_options(server_role: str = MANAGER_ROLE) -> list[tuple[str, Any]]:
    """Channel options that check the server's certificate against the SAN `server_role`.

    Node addresses are IPs, which managers' certificates need not list; every manager certificate
    carries the DNS SAN "swarm-manager", so that is the name checked (SwarmKit does the same).
    """
    return [("grpc.ssl_target_name_override", server_role)]


def _first(auth_context: dict[str, list[bytes]], key: str) -> bytes | None:
    values = auth_context.get(key) or []
    return values[0] if values else None


def peer_identity(context: grpc.aio.ServicerContext) -> NodeIdentity | None:
    """The identity in the client certificate the TLS layer verified for this call, or None.

    None means the peer presented no certificate (or the port did not ask for one). Raises
    CertificateError if the verified certificate is not a node certificate (e.g. a CA cert).
    Call from the servicer's event loop, inside a handler.
    """
    auth_context = context.auth_context() or {}
    pem = _first(auth_context, "x509_pem_cert")
    if pem is None:
        return None
    identity = NodeIdentity.from_cert_pem(pem)
    common_name = _first(auth_context, "x509_common_name")
    if common_name is not None and common_name.decode(errors="replace") != identity.node_id:
        raise CertificateError(
            f"peer certificate for node {identity.node_id} disagrees with the TLS common name "
            f"{common_name.decode(errors='replace')!r}"
        )
    return identity


def _describe_roles(roles: tuple[str, ...]) -> str:
    return " or ".join(_ROLE_WORDS.get(role, role) for role in roles)


async def require_role(
    context: grpc.aio.ServicerContext,
    *roles: str,
    cluster_id: str | None = None,
) -> NodeIdentity:
    """The caller's identity, if its certificate has one of `roles`; otherwise abort the RPC.

    Aborts (raising, as `context.abort` does) with UNAUTHENTICATED when no client certificate was
    presented, and PERMISSION_DENIED when the certificate is not a node certificate, is for
    another cluster (`cluster_id`, when given), or has a role not in `roles`. With no `roles`,
    any node certificate passes.
    """
    try:
        identity = peer_identity(context)
    except CertificateError as exc:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        raise  # unreachable: abort raises
    if identity is None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "no client certificate presented; this RPC needs the node certificate issued at "
            "join, sent over the manager's mutual-TLS port",
        )
    assert identity is not None
    if cluster_id is not None and identity.cluster_id != cluster_id:
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"node {identity.node_id} belongs to cluster {identity.cluster_id!r}, "
            f"not this cluster {cluster_id!r}",
        )
    if roles and identity.role not in roles:
        log.info(
            "refused node %s (%s): RPC needs %s", identity.node_id, identity.role, roles
        )
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"this RPC needs a {_describe_roles(roles)} certificate; the caller presented a "
            f"{_describe_roles((identity.role,))} certificate (node {identity.node_id})",
        )
    return identity
