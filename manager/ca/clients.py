"""Who may use a node's remote API (shoal.remote): the decision on a client certificate.

The TLS layer has already checked the chain to the cluster's trusted roots and the validity period
(no certificate, another CA's, an expired one never complete the handshake). What remains is the
certificate's *kind*: only a client certificate issued by `RootCA.sign_client_csr` for this
cluster gets in.

Node certificates are refused although the same CA issued them and they carry the client-auth
usage: in Swarm, a node's certificate authenticates the node to the dispatcher and Raft, never to
the Engine API, and a worker cannot change cluster state. Accepting a worker's certificate on the
remote API would hand anyone who takes a worker's key the whole cluster. Manager certificates are
refused too, so that remote access is granted only by an explicit `shoal swarm client-cert`.

Pure computation; no I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .certificates import CLIENT_ROLE, NODE_ROLES, _is_ca, _name_attribute
from .errors import CertificateError


@dataclass(frozen=True)
class ClientIdentity:
    """The holder of a client certificate: the name it was issued to, and until when."""

    name: str
    cluster_id: str
    serial: str
    not_after: dt.datetime


def client_identity(der: bytes | None, cluster_id: str) -> ClientIdentity:
    """The identity in a peer's DER certificate, if it may use the remote API of `cluster_id`.

    Raises CertificateError saying why not: no certificate, not a certificate, a CA or node
    certificate, not a Shoal client certificate, another cluster's, or without client-auth usage.
    """
    if not der:
        raise CertificateError("no client certificate presented")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertificateError(f"the client certificate is not valid DER: {exc}") from None
    subject = cert.subject.rfc4514_string()
    name = _name_attribute(cert.subject, NameOID.COMMON_NAME)
    role = _name_attribute(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    org = _name_attribute(cert.subject, NameOID.ORGANIZATION_NAME)
    if _is_ca(cert):
        raise CertificateError(f"certificate {subject!r} is a CA certificate, not a client certificate")
    if role in NODE_ROLES:
        raise CertificateError(
            f"certificate {subject!r} is node {name}'s {role} certificate; node certificates are not "
            "accepted for remote access: issue a client certificate with `shoal swarm client-cert`")
    if role != CLIENT_ROLE or not name:
        raise CertificateError(
            f"certificate {subject!r} is not a Shoal client certificate (OU {role!r}, expected "
            f"{CLIENT_ROLE!r}): issue one with `shoal swarm client-cert`")
    if org != cluster_id:
        raise CertificateError(f"client certificate {name!r} is for cluster {org!r}, not this cluster {cluster_id!r}")
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is None or ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise CertificateError(f"client certificate {name!r} does not allow client authentication")
    return ClientIdentity(name, org, format(cert.serial_number, "x"), cert.not_valid_after_utc)
