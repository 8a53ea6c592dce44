"""Root CA rotation: moving every node to a new root without a moment where two nodes distrust
each other. Pure functions over the cluster object and the nodes; the leader's `CARotation`
(manager/membership/carotation.py) applies `advance`, the ControlAPI applies `start`.

Phases (`Cluster.root_ca.root_rotation`):

1. TRUST: every node is sent both roots (`trusted_roots`, in its session message) and reports, in
   its TLS info, that it trusts them. Certificates are still signed by the old root, so a node
   that has not yet heard of the new one loses nothing.
2. REISSUE: once every node that is not down trusts both, certificates are signed by the new root
   (`signing_root`) and each node still holding an old-root certificate is told to renew now
   (`needs_renewal`). Both roots are trusted everywhere, so old and new certificates mix freely.
3. Done: once every node that is not down holds a new-root certificate, the new root replaces the
   old in `root_ca` (with new join tokens: a token pins the root's digest) and the rotation is
   cleared. Nodes are then sent only the new root; a certificate from the old one is refused by
   every TLS handshake from then on.

Why not a cross-signed intermediate, as SwarmKit does: Shoal's roots have always been made with
path length 0, which forbids a CA certificate below them, so a chain leaf -> cross-signed new root
-> old root does not verify for clusters made before this; sending both roots first gives the
same guarantee (old root trusted until every node is re-issued) with plain chains.

Down nodes are not waited for (a rotation would otherwise hang on a dead machine, SwarmKit does
the same): a node that comes back after the rotation finished holds an old-root certificate and
must be removed and joined again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .certificates import RootCA, split_pem_certificates
from .errors import CAError
from .tokens import JoinTokens


def _ders(pem: bytes) -> set[bytes]:
    out = set()
    for block in split_pem_certificates(pem):
        try:
            out.add(x509.load_pem_x509_certificate(block).public_bytes(serialization.Encoding.DER))
        except ValueError:
            continue
    return out


def _public_key_der(cert_pem: bytes) -> bytes:
    cert = x509.load_pem_x509_certificate(split_pem_certificates(cert_pem)[0])
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def in_rotation(cluster) -> bool:
    return cluster.root_ca.HasField("root_rotation") and bool(cluster.root_ca.root_rotation.ca_cert)


def trusted_roots(cluster) -> bytes:
    """The PEM bundle every node must trust now: the root, plus the new one during a rotation."""
    bundle = cluster.root_ca.ca_cert
    if in_rotation(cluster):
        new = cluster.root_ca.root_rotation.ca_cert
        bundle = bundle.rstrip(b"\n") + b"\n" + new
    return bundle


def _open_key(sealed: bytes, secrets_key: bytes) -> bytes:
    """A CA key as stored (sealed with the secrets key, or plaintext from an earlier version)."""
    from manager.secretbox import CA_KEY_LABEL, SecretBoxError, open_value

    try:
        return open_value(secrets_key, CA_KEY_LABEL, sealed)
    except SecretBoxError as err:
        raise CAError(f"cannot open the CA key in the store: {err}") from None


def seal_key(key_pem: bytes, secrets_key: bytes) -> bytes:
    from manager.secretbox import CA_KEY_LABEL, seal_value

    return seal_value(secrets_key, CA_KEY_LABEL, key_pem)


def signing_root(cluster, secrets_key: bytes = b"") -> RootCA:
    """The CA that signs node certificates now: the new root from the REISSUE phase on. Its key
    is sealed in the store with the secrets key (manager/secretbox.py)."""
    from proto import objects_pb2

    root = cluster.root_ca
    if in_rotation(cluster) and root.root_rotation.phase == objects_pb2.RootRotation.REISSUE:
        return RootCA.load(root.root_rotation.ca_cert, _open_key(root.root_rotation.ca_key, secrets_key),
                           cluster_id=cluster.id)
    return RootCA.load(root.ca_cert, _open_key(root.ca_key, secrets_key), cluster_id=cluster.id)


def desired_root(cluster) -> bytes:
    """The root every node should end up with: the new one during a rotation, else the current."""
    return cluster.root_ca.root_rotation.ca_cert if in_rotation(cluster) else cluster.root_ca.ca_cert


def trusts(node, root_pem: bytes) -> bool:
    """The node reported trusting `root_pem`."""
    return _ders(root_pem) <= _ders(node.description.tls_info.trust_root)


def trusts_only(node, root_pem: bytes) -> bool:
    return bool(node.description.tls_info.trust_root) and _ders(node.description.tls_info.trust_root) == _ders(root_pem)


def issued_by(node, root_pem: bytes) -> bool:
    """The node's certificate (as it reported it) was issued by `root_pem`'s key."""
    key = node.description.tls_info.cert_issuer_public_key
    return bool(key) and key == _public_key_der(root_pem)


def counted(nodes) -> list:
    """The nodes a rotation waits for: every node that is not down."""
    from proto import objects_pb2

    return [n for n in nodes if n.status.state != objects_pb2.NodeStatus.DOWN]


@dataclass(frozen=True)
class Progress:
    """Docker's two counters: nodes whose certificate is from the desired root ("TLS"), and
    nodes that trust the desired root and nothing else ("CA"), out of the nodes not down."""

    total: int
    tls_rotated: int
    ca_rotated: int
    in_progress: bool
    phase: str


def progress(cluster, nodes) -> Progress:
    root = desired_root(cluster)
    waited = counted(nodes)
    phase = ""
    if in_rotation(cluster):
        from proto import objects_pb2

        phase = objects_pb2.RootRotation.Phase.Name(cluster.root_ca.root_rotation.phase).lower()
    return Progress(len(waited), sum(issued_by(n, root) for n in waited),
                    sum(trusts_only(n, root) for n in waited), in_rotation(cluster), phase)


def needs_renewal(cluster, node) -> bool:
    """During REISSUE: the node's certificate is not from the new root, it should renew now."""
    from proto import objects_pb2

    return (in_rotation(cluster) and cluster.root_ca.root_rotation.phase == objects_pb2.RootRotation.REISSUE
            and bool(node.description.tls_info.cert_issuer_public_key)
            and not issued_by(node, cluster.root_ca.root_rotation.ca_cert))


def new_root_for(cluster, cert_pem: bytes, key_pem: bytes, now: dt.datetime) -> RootCA:
    """The root to rotate to: the given certificate and key (checked), or a fresh one."""
    if not cert_pem and not key_pem:
        return RootCA.create(cluster.id, now)
    if not cert_pem or not key_pem:
        raise CAError("a new root CA needs both its certificate (--ca-cert) and its key (--ca-key); "
                      "external CAs that keep their key are not supported")
    root = RootCA.load(cert_pem, key_pem, cluster_id=cluster.id)
    cert = x509.load_pem_x509_certificate(cert_pem)
    if cert.not_valid_after_utc <= now:
        raise CAError(f"the new root CA certificate expired at {cert.not_valid_after_utc.isoformat()}")
    if root.digest in (cluster.root_ca.ca_digest,):
        raise CAError("the given CA certificate is already this cluster's root CA")
    return root


def start(cluster, root: RootCA, now: float, secrets_key: bytes = b""):
    """The cluster with a rotation to `root` started (TRUST phase), as a new object. Refused while
    another rotation is past its TRUST phase: nodes already re-issued by that root would be left
    with certificates nobody trusts."""
    from proto import objects_pb2

    if in_rotation(cluster) and cluster.root_ca.root_rotation.phase != objects_pb2.RootRotation.TRUST:
        raise CAError("a CA rotation is already re-issuing node certificates; wait until `shoal swarm ca` "
                      "shows it finished, then rotate again")
    out = objects_pb2.Cluster()
    out.CopyFrom(cluster)
    out.root_ca.root_rotation.CopyFrom(objects_pb2.RootRotation(
        ca_cert=root.cert_pem, ca_key=seal_key(root.key_pem or b"", secrets_key), phase=objects_pb2.RootRotation.TRUST, started_at=now))
    return out


def advance(cluster, nodes):
    """The next step of a rotation given what the nodes reported, as a new cluster object; None
    when nothing changes (no rotation, or still waiting for nodes)."""
    from proto import objects_pb2

    if not in_rotation(cluster):
        return None
    rotation = cluster.root_ca.root_rotation
    waited = counted(nodes)
    out = objects_pb2.Cluster()
    out.CopyFrom(cluster)
    if rotation.phase == objects_pb2.RootRotation.TRUST:
        if not all(trusts(n, rotation.ca_cert) for n in waited):
            return None
        out.root_ca.root_rotation.phase = objects_pb2.RootRotation.REISSUE
        return out
    if not all(issued_by(n, rotation.ca_cert) for n in waited):
        return None
    root = RootCA.load(rotation.ca_cert, None, cluster_id=cluster.id)
    tokens = JoinTokens.create(root.digest)
    out.root_ca.ca_cert = root.cert_pem
    out.root_ca.ca_key = rotation.ca_key          # as sealed: the key itself is not needed here
    out.root_ca.ca_digest = root.digest
    out.root_ca.join_tokens.worker = tokens.worker
    out.root_ca.join_tokens.manager = tokens.manager
    out.root_ca.ClearField("root_rotation")
    return out
