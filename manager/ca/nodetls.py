"""A node's TLS material while it runs: certificate chain, key and trusted roots, replaceable.

A node's certificate is renewed while the node runs (`renewal`), and its trusted roots change
during a CA rotation, so nothing that needs them may hold a copy made at start:

- gRPC servers take `server_credentials()`: grpc's *dynamic* SSL server credentials, whose fetcher
  grpc calls before each new handshake; it returns the current certificate and roots once they
  changed (None otherwise, which keeps the previous configuration).
- Clients call `channel_credentials()` each time they open a channel.
- `tls_info()` is what the node reports about itself at each session (SwarmKit's NodeTLSInfo,
  with the certificate's validity), so the leader can show expiry and follow a CA rotation.

`update` swaps all three at once under a lock; reads are of one consistent snapshot. Safe from any
thread (grpc calls the fetcher from its own threads).
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .certificates import NodeIdentity, split_pem_certificates
from .errors import CertificateError
from .tls import _chain_with_root, channel_credentials


@dataclass(frozen=True)
class _Material:
    cert_pem: bytes       # leaf first, then whatever chain the CA sent
    key_pem: bytes
    ca_pem: bytes         # the trusted root(s)
    leaf: x509.Certificate
    identity: NodeIdentity
    generation: int


def _load_leaf(cert_pem: bytes) -> x509.Certificate:
    blocks = split_pem_certificates(cert_pem)
    if not blocks:
        raise CertificateError("node certificate is not a PEM certificate")
    try:
        return x509.load_pem_x509_certificate(blocks[0])
    except ValueError as exc:
        raise CertificateError(f"node certificate is not a valid PEM certificate: {exc}") from exc


def key_matches(cert_pem: bytes, key_pem: bytes) -> bool:
    """True when `key_pem` is the private key of the first certificate in `cert_pem`."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        leaf = _load_leaf(cert_pem)
    except (ValueError, TypeError, CertificateError):
        return False
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return (key.public_key().public_bytes(serialization.Encoding.DER, spki)
            == leaf.public_key().public_bytes(serialization.Encoding.DER, spki))


class NodeTLS:
    """The node's current certificate, key and trusted roots. See the module docstring."""

    def __init__(self, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> None:
        self._lock = threading.Lock()
        self._material = self._make(cert_pem, key_pem, ca_pem, 0)

    @staticmethod
    def _make(cert_pem: bytes, key_pem: bytes, ca_pem: bytes, generation: int) -> _Material:
        leaf = _load_leaf(cert_pem)
        if not key_matches(cert_pem, key_pem):
            raise CertificateError("the node key does not belong to the node certificate")
        return _Material(cert_pem, key_pem, ca_pem, leaf, NodeIdentity.from_certificate(leaf), generation)

    def update(self, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> None:
        """Use this certificate, key and roots from now on (new handshakes and new channels)."""
        with self._lock:
            self._material = self._make(cert_pem, key_pem, ca_pem, self._material.generation + 1)

    # -- reading ---------------------------------------------------------------------------
    @property
    def cert_pem(self) -> bytes:
        return self._material.cert_pem

    @property
    def key_pem(self) -> bytes:
        return self._material.key_pem

    @property
    def ca_pem(self) -> bytes:
        return self._material.ca_pem

    @property
    def identity(self) -> NodeIdentity:
        return self._material.identity

    @property
    def generation(self) -> int:
        """How many times `update` ran: changes whenever the material does."""
        return self._material.generation

    @property
    def not_before(self) -> dt.datetime:
        return self._material.leaf.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self._material.leaf.not_valid_after_utc

    @property
    def serial(self) -> str:
        return format(self._material.leaf.serial_number, "x")

    def tls_info(self):
        """This node's NodeTLSInfo (proto), as sent in its session's description."""
        from proto import objects_pb2

        material = self._material
        leaf = material.leaf
        info = objects_pb2.NodeTLSInfo(
            trust_root=material.ca_pem,
            cert_issuer_subject=leaf.issuer.public_bytes(),
            cert_not_before=leaf.not_valid_before_utc.timestamp(),
            cert_not_after=leaf.not_valid_after_utc.timestamp(),
            cert_serial=format(leaf.serial_number, "x"),
        )
        issuer = self._issuer_of(material)
        if issuer is not None:
            info.cert_issuer_public_key = issuer.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return info

    @staticmethod
    def _issuer_of(material: _Material) -> x509.Certificate | None:
        """The certificate (in the chain or the roots) whose subject issued the leaf."""
        for block in split_pem_certificates(material.cert_pem)[1:] + split_pem_certificates(material.ca_pem):
            try:
                cert = x509.load_pem_x509_certificate(block)
            except ValueError:
                continue
            if cert.subject == material.leaf.issuer:
                try:
                    material.leaf.verify_directly_issued_by(cert)
                except Exception:  # noqa: BLE001 - a same-named CA that did not sign it
                    continue
                return cert
        return None

    # -- credentials -----------------------------------------------------------------------
    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Client credentials for a new channel: the current roots, certificate and key."""
        material = self._material
        return channel_credentials(material.ca_pem, material.cert_pem, material.key_pem)

    def _server_config(self, material: _Material, require_client_cert: bool):
        chain = _chain_with_root(material.cert_pem, material.ca_pem)
        return grpc.ssl_server_certificate_configuration(
            [(material.key_pem, chain)], root_certificates=material.ca_pem if require_client_cert else None)

    def server_credentials(self, require_client_cert: bool) -> grpc.ServerCredentials:
        """Server credentials that follow `update`: each new handshake uses the current material."""
        served = [self._material.generation]

        def fetch():
            material = self._material
            if material.generation == served[0]:
                return None
            served[0] = material.generation
            return self._server_config(material, require_client_cert)

        return grpc.dynamic_ssl_server_credentials(
            self._server_config(self._material, require_client_cert), fetch,
            require_client_authentication=require_client_cert)
