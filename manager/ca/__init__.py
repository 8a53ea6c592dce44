"""The cluster PKI: root CA, node certificates, join tokens, and gRPC mutual TLS.

- `certificates`: `RootCA` (create, load, sign a node's CSR), `make_node_key_and_csr`,
  `NodeIdentity` (node ID, role, cluster ID read from a certificate), `verify_node_cert`.
- `tokens`: join tokens `SHTKN-1-<CA digest>-<secret>` and the cluster's `JoinTokens`.
- `tls`: grpc server/channel credentials, the channel options that check managers by their
  "swarm-manager" SAN, `peer_identity` and `require_role` for handlers.
- `nodetls`: `NodeTLS`, a node's certificate, key and roots, replaceable while gRPC servers and
  clients use them (dynamic server credentials).
- `renewal`: `CertificateRenewer`, renewal at a random point of 50-80 % of the validity.
- `bootstrap`: `fetch_root_ca`, which a joining node uses to pin the CA named by its token.

Errors: `CAError`, with `CertificateError` and `InvalidJoinToken` beneath it.
"""

from .bootstrap import fetch_root_ca, split_host_port
from .certificates import (
    MANAGER_ROLE,
    NODE_CERT_VALIDITY,
    NODE_ROLES,
    ROOT_CA_VALIDITY,
    WORKER_ROLE,
    NodeIdentity,
    RootCA,
    certificate_digest,
    make_node_key_and_csr,
    node_cert_validity,
    verify_node_cert,
)
from .nodetls import NodeTLS, key_matches
from .renewal import CertificateRenewer, expired_message, renewal_time
from .errors import CAError, CertificateError, InvalidJoinToken
from .tls import (
    channel_credentials,
    channel_options,
    peer_identity,
    require_role,
    server_credentials,
)
from .tokens import (
    JoinToken,
    JoinTokens,
    generate_join_token,
    join_token_matches,
    parse_join_token,
)

__all__ = [
    "CAError",
    "CertificateError",
    "InvalidJoinToken",
    "MANAGER_ROLE",
    "WORKER_ROLE",
    "NODE_ROLES",
    "NODE_CERT_VALIDITY",
    "ROOT_CA_VALIDITY",
    "RootCA",
    "NodeIdentity",
    "certificate_digest",
    "make_node_key_and_csr",
    "node_cert_validity",
    "NodeTLS",
    "key_matches",
    "CertificateRenewer",
    "expired_message",
    "renewal_time",
    "verify_node_cert",
    "JoinToken",
    "JoinTokens",
    "generate_join_token",
    "parse_join_token",
    "join_token_matches",
    "server_credentials",
    "channel_credentials",
    "channel_options",
    "peer_identity",
    "require_role",
    "fetch_root_ca",
    "split_host_port",
]
