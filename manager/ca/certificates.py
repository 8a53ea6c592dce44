"""The cluster root CA and node certificates, in SwarmKit's shape.

The root CA is an ECDSA P-256 key with a self-signed certificate valid for 20 years (CN
"shoal-root-ca", O = cluster ID, path length 0). Each node makes its own key and sends a CSR; the CA
ignores the CSR's subject and issues a leaf whose subject *is* the node's identity: CN = node ID,
OU = role (`swarm-manager` or `swarm-worker`, as Swarm spells them), O = cluster ID. Leaves carry
DNS SANs [node ID, role, "localhost"] plus any IP SANs, and are good for both TLS server and client
auth, so one certificate serves a node both as a gRPC server and as a client.

Everything here is pure computation: time comes in as `now`; nothing touches the network or disk.
Naive datetimes are taken as UTC. All functions are safe to call from any thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import CAError, CertificateError

MANAGER_ROLE = "swarm-manager"
WORKER_ROLE = "swarm-worker"
NODE_ROLES = (MANAGER_ROLE, WORKER_ROLE)
CLIENT_ROLE = "shoal-client"  # the OU of remote-API client certificates (manager.ca.clients)
CLIENT_CERT_VALIDITY = dt.timedelta(days=90)
SERVER_ROLE = "shoal-server"  # the OU of a remote-API listener's own certificate (shoal.daemon.remote)

ROOT_CA_COMMON_NAME = "shoal-root-ca"
ROOT_CA_VALIDITY = dt.timedelta(days=20 * 365)  # SwarmKit's RootCAExpiration, 630720000 s
NODE_CERT_VALIDITY = dt.timedelta(days=90)  # SwarmKit's DefaultNodeCertExpiration
MIN_NODE_CERT_VALIDITY = dt.timedelta(hours=1)  # SwarmKit's MinNodeCertExpiration
BACKDATE = dt.timedelta(hours=1)  # allowance for clock skew between nodes, as SwarmKit does

_NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_CLIENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_PEM_CERT_RE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def _utc(now: dt.datetime) -> dt.datetime:
    """`now` as an aware UTC datetime (naive datetimes are taken to be UTC already)."""
    if now.tzinfo is None:
        return now.replace(tzinfo=dt.timezone.utc)
    return now.astimezone(dt.timezone.utc)


def split_pem_certificates(pem: bytes) -> list[bytes]:
    """The PEM blocks of every certificate in `pem`, in order (a chain file gives leaf first)."""
    return [match.group(0) + b"\n" for match in _PEM_CERT_RE.finditer(pem)]


def _load_first_certificate(pem: bytes, what: str) -> x509.Certificate:
    blocks = split_pem_certificates(pem)
    if not blocks:
        raise CertificateError(f"{what} is not a PEM certificate")
    try:
        return x509.load_pem_x509_certificate(blocks[0])
    except ValueError as exc:
        raise CertificateError(f"{what} is not a valid PEM certificate: {exc}") from exc


def _name_attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def certificate_digest(cert_der: bytes) -> str:
    """The sha256 hex digest of a DER certificate: what a join token pins."""
    return hashlib.sha256(cert_der).hexdigest()


@dataclass(frozen=True)
class NodeIdentity:
    """Who a node certificate says its holder is. Built only from a certificate's subject."""

    node_id: str
    role: str
    cluster_id: str
    not_after: dt.datetime

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> NodeIdentity:
        """The identity in `cert`; raises CertificateError if it is not a Shoal node certificate."""
        subject = cert.subject
        node_id = _name_attribute(subject, NameOID.COMMON_NAME)
        role = _name_attribute(subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
        cluster_id = _name_attribute(subject, NameOID.ORGANIZATION_NAME)
        problem = None
        if _is_ca(cert):
            problem = "it is a CA certificate"
        elif not node_id:
            problem = "it has no single CN (node ID)"
        elif role not in NODE_ROLES:
            problem = f"its OU is {role!r}, not {MANAGER_ROLE!r} or {WORKER_ROLE!r}"
        elif not cluster_id:
            problem = "it has no single O (cluster ID)"
        if problem:
            raise CertificateError(
                f"certificate {subject.rfc4514_string()!r} is not a node certificate: {problem}"
            )
        return cls(node_id, role, cluster_id, cert.not_valid_after_utc)

    @classmethod
    def from_cert_pem(cls, pem: bytes) -> NodeIdentity:
        """The identity in the first certificate of `pem` (a leaf or a leaf+root chain)."""
        return cls.from_certificate(_load_first_certificate(pem, "node certificate"))

    @classmethod
    def from_der(cls, der: bytes) -> NodeIdentity:
        """The identity in a DER certificate."""
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise CertificateError(f"node certificate is not valid DER: {exc}") from exc
        return cls.from_certificate(cert)


def verify_node_cert(cert_pem: bytes, root_ca_cert_pem: bytes, now: dt.datetime) -> NodeIdentity:
    """Check that `cert_pem` (leaf first) is a node certificate this root CA issued, valid at `now`.

    Returns the node's identity; raises CertificateError naming the node and what is wrong: not a
    node certificate, issued by another CA, issued for another cluster, not yet valid, or expired.
    """
    now = _utc(now)
    cert = _load_first_certificate(cert_pem, "node certificate")
    root = _load_first_certificate(root_ca_cert_pem, "root CA certificate")
    identity = NodeIdentity.from_certificate(cert)
    who = f"certificate of node {identity.node_id} ({identity.role})"
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertificateError(
            f"{who} was not issued by this cluster's CA "
            f"(issuer {cert.issuer.rfc4514_string()!r}, "
            f"CA {root.subject.rfc4514_string()!r})"
        ) from exc
    root_cluster = _name_attribute(root.subject, NameOID.ORGANIZATION_NAME)
    if root_cluster != identity.cluster_id:
        raise CertificateError(
            f"{who} is for cluster {identity.cluster_id!r}, not this cluster {root_cluster!r}"
        )
    if now < cert.not_valid_before_utc:
        raise CertificateError(
            f"{who} is not valid before {cert.not_valid_before_utc.isoformat()} "
            f"(now {now.isoformat()}); check the clocks"
        )
    if now > cert.not_valid_after_utc:
        raise CertificateError(
            f"{who} expired at {cert.not_valid_after_utc.isoformat()} (now {now.isoformat()})"
        )
    return identity


def node_cert_validity(seconds: float) -> dt.timedelta:
    """The validity of node certificates for a cluster whose CAConfig.node_cert_expiry is `seconds`
    (0: the default, 90 days). Raises CAError below SwarmKit's minimum of one hour."""
    if not seconds:
        return NODE_CERT_VALIDITY
    validity = dt.timedelta(seconds=seconds)
    if validity < MIN_NODE_CERT_VALIDITY:
        raise CAError(f"invalid certificate expiry {validity}: the minimum is {MIN_NODE_CERT_VALIDITY}")
    return validity


def make_node_key_and_csr() -> tuple[bytes, bytes]:
    """A fresh EC P-256 key (PKCS#8 PEM) and a CSR for it (PEM).

    The CSR's subject is left empty: the CA decides the node's identity, not the node.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        key, hashes.SHA256()
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


class RootCA:
    """The cluster's root CA: its certificate and, on managers, its signing key.

    Instances are immutable. `digest` is the sha256 hex of the DER certificate, the value join
    tokens carry so a joining node can pin the CA it downloads.
    """

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None,
                 cluster_id: str | None = None) -> None:
        self._cert = cert
        self._key = key
        self.cert_pem: bytes = cert.public_bytes(serialization.Encoding.PEM)
        self.key_pem: bytes | None = (
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            if key is not None
            else None
        )
        self.digest: str = certificate_digest(cert.public_bytes(serialization.Encoding.DER))
        # the O of the certificates it issues: the root's own O, unless the cluster says otherwise
        # (an external root given at a CA rotation names its own organisation)
        self.cluster_id: str = cluster_id or _name_attribute(cert.subject, NameOID.ORGANIZATION_NAME) or ""

    @classmethod
    def create(cls, cluster_id: str, now: dt.datetime) -> RootCA:
        """A new root CA for `cluster_id`: P-256 key, self-signed, 20 years, path length 0."""
        if not cluster_id:
            raise CAError("cannot create a root CA: the cluster ID is empty")
        now = _utc(now)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, ROOT_CA_COMMON_NAME),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
            ]
        )
        public_key = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + ROOT_CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes | None, cluster_id: str | None = None) -> RootCA:
        """The root CA stored as PEM; `key_pem` is None on nodes that only verify.

        Raises CAError if the certificate is not a CA certificate or the key does not match it.
        """
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as exc:
            raise CAError(f"cannot load the root CA: the certificate is not valid PEM: {exc}") from exc
        if not _is_ca(cert):
            raise CAError(
                f"cannot load the root CA: {cert.subject.rfc4514_string()!r} is not a CA certificate"
            )
        key = None
        if key_pem is not None:
            try:
                loaded = serialization.load_pem_private_key(key_pem, password=None)
            except (ValueError, TypeError) as exc:
                raise CAError(f"cannot load the root CA: the key is not a valid PEM key: {exc}") from exc
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise CAError("cannot load the root CA: the key is not an EC key")
            if loaded.public_key().public_numbers() != cert.public_key().public_numbers():
                raise CAError("cannot load the root CA: the key does not match the certificate")
            key = loaded
        return cls(cert, key, cluster_id)

    @property
    def can_sign(self) -> bool:
        """True when this instance holds the signing key (managers only)."""
        return self._key is not None

    def sign_node_csr(
        self,
        csr_pem: bytes,
        node_id: str,
        role: str,
        now: dt.datetime,
        validity: dt.timedelta = NODE_CERT_VALIDITY,
        ip_sans: Iterable[str] = (),
    ) -> bytes:
        """Issue node `node_id` a certificate for the key in `csr_pem`; returns the leaf PEM.

        The subject comes from the arguments, never from the CSR. The certificate is backdated one
        hour for clock skew. Raises CAError for a CSR that does not parse or whose signature does
        not verify (the requester does not hold the key), an unknown role, a bad node ID or IP,
        a validity shorter than an hour, or when this CA has no signing key.
        """
        if self._key is None:
            raise CAError(f"cannot sign a certificate for node {node_id}: this node has no CA key")
        if role not in NODE_ROLES:
            raise CAError(
                f"cannot sign a certificate for node {node_id}: role {role!r} is not "
                f"{MANAGER_ROLE!r} or {WORKER_ROLE!r}"
            )
        if not _NODE_ID_RE.match(node_id):
            raise CAError(
                f"cannot sign a certificate for node {node_id!r}: a node ID is 1-63 letters, "
                "digits, '.', '_' or '-'"
            )
        if validity < MIN_NODE_CERT_VALIDITY:
            raise CAError(
                f"cannot sign a certificate for node {node_id}: validity {validity} is shorter "
                f"than the minimum {MIN_NODE_CERT_VALIDITY}"
            )
        try:
            addresses = [ipaddress.ip_address(ip) for ip in ip_sans]
        except ValueError as exc:
            raise CAError(f"cannot sign a certificate for node {node_id}: {exc}") from exc
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, node_id),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.cluster_id),
            ]
        )
        sans: list[x509.GeneralName] = [
            x509.DNSName(node_id),
            x509.DNSName(role),
            x509.DNSName("localhost"),
        ]
        sans += [x509.IPAddress(address) for address in addresses]
        return self._issue(csr_pem, f"node {node_id}", subject, sans,
                           [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], now, validity)

    def sign_client_csr(self, csr_pem: bytes, name: str, now: dt.datetime,
                        validity: dt.timedelta = CLIENT_CERT_VALIDITY) -> bytes:
        """Issue a remote-API client certificate named `name` for the key in `csr_pem` (leaf PEM).

        Subject CN = name, OU = "shoal-client", O = cluster ID; extended key usage client
        authentication only, no SANs: it can authenticate to a node's remote API (shoal.remote)
        but never serve as a node's certificate, whose OU is a node role. CAError as for nodes.
        """
        if self._key is None:
            raise CAError(f"cannot sign a client certificate for {name!r}: this node has no CA key")
        if not _CLIENT_NAME_RE.match(name):
            raise CAError(f"invalid client name {name!r}: 1-64 letters, digits, '.', '_', '@' or '-', "
                          "starting with a letter or digit")
        if validity < MIN_NODE_CERT_VALIDITY:
            raise CAError(f"cannot sign a client certificate for {name!r}: validity {validity} is shorter "
                          f"than the minimum {MIN_NODE_CERT_VALIDITY}")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, name),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, CLIENT_ROLE),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.cluster_id),
            ]
        )
        return self._issue(csr_pem, f"client {name!r}", subject, [], [ExtendedKeyUsageOID.CLIENT_AUTH],
                           now, validity)


    def sign_server_csr(self, csr_pem: bytes, names: Iterable[str], ips: Iterable[str], now: dt.datetime,
                        validity: dt.timedelta) -> bytes:
        """A TLS server certificate for a node's remote API, valid for these DNS names and IPs
        (leaf PEM): CN = the first name, OU = "shoal-server", O = cluster ID, server-auth only, so
        it can neither act as a node's certificate nor as a client's."""
        names, ips = [n for n in names if n], list(ips)
        if self._key is None:
            raise CAError("cannot sign a server certificate: this node has no CA key")
        if not names:
            raise CAError("cannot sign a server certificate without a name")
        if validity < MIN_NODE_CERT_VALIDITY:
            raise CAError(f"cannot sign a server certificate: validity {validity} is shorter than the minimum "
                          f"{MIN_NODE_CERT_VALIDITY}")
        try:
            sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dict.fromkeys(names)]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
        except ValueError as exc:
            raise CAError(f"cannot sign a server certificate: {exc}") from exc
        subject = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, SERVER_ROLE),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.cluster_id),
        ])
        return self._issue(csr_pem, f"server {names[0]!r}", subject, sans, [ExtendedKeyUsageOID.SERVER_AUTH],
                           now, validity)

    def _issue(self, csr_pem: bytes, who: str, subject: x509.Name, sans: list[x509.GeneralName],
               usages: list[x509.ObjectIdentifier], now: dt.datetime, validity: dt.timedelta) -> bytes:
        """Sign a leaf for the key in `csr_pem` with this subject, SANs and extended key usages."""
        assert self._key is not None
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise CAError(
                f"cannot sign a certificate for {who}: the CSR is not valid PEM: {exc}"
            ) from exc
        if not csr.is_signature_valid:
            raise CAError(
                f"cannot sign a certificate for {who}: the CSR's signature does not verify"
            )
        public_key = csr.public_key()
        if isinstance(public_key, rsa.RSAPublicKey):
            if public_key.key_size < 2048:
                raise CAError(
                    f"cannot sign a certificate for {who}: RSA key of "
                    f"{public_key.key_size} bits is too small (need 2048)"
                )
        elif not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise CAError(
                f"cannot sign a certificate for {who}: only EC and RSA keys are accepted"
            )
        now = _utc(now)
        not_after = min(now + validity, self._cert.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = (
            builder
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    def __repr__(self) -> str:
        return f"RootCA(cluster_id={self.cluster_id!r}, digest={self.digest[:12]}…, can_sign={self.can_sign})"

