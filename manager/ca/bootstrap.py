"""Trusting the cluster CA on join, before the joining node knows it.

SwarmKit's joining node calls GetRootCACertificate over TLS without verifying the server, then
checks the certificate's digest against the one in the join token. grpc python cannot skip server
verification, so `fetch_root_ca` does only the TLS handshake with the standard `ssl` module
(no verification, ALPN "h2" as a gRPC client offers) and reads the chain the manager presents.
Shoal servers present leaf + root (`tls.server_credentials`), so the root is in that chain, and
the pinned digest decides which certificate, if any, to trust. Nothing else from that connection
is used: after this, the node dials the manager with `tls.channel_credentials(root)`, fully
verified.

The handshake needs TLS 1.3 on the mutual-TLS port (the server's certificate arrives before the
server asks for ours); the join port, which asks for no client certificate, works with any version.
"""

from __future__ import annotations

import hmac
import logging
import socket
import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .certificates import certificate_digest
from .errors import CAError, InvalidJoinToken

log = logging.getLogger(__name__)


def split_host_port(addr: str) -> tuple[str, int]:
    """(host, port) from "HOST:PORT" or "[IPv6]:PORT"; raises CAError naming a malformed address."""
    host, sep, port_text = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or ":" in host and not addr.startswith("["):
        raise CAError(f"invalid manager address {addr!r}: expected HOST:PORT (e.g. 192.0.2.10:2377)")
    port = int(port_text)
    if not 0 < port < 65536:
        raise CAError(f"invalid manager address {addr!r}: port {port} is not in 1-65535")
    return host, port


def _unverified_chain_der(tls_socket: ssl.SSLSocket, addr: str) -> list[bytes]:
    """The DER certificates the server presented, leaf first, without any verification."""
    public = getattr(tls_socket, "get_unverified_chain", None)  # Python >= 3.13
    if public is not None:
        return [bytes(der) for der in public()]
    sslobj: Any = getattr(tls_socket, "_sslobj", None)
    private = getattr(sslobj, "get_unverified_chain", None)  # _ssl, Python 3.10-3.12
    if private is None:
        raise CAError(
            f"cannot fetch the root CA from {addr}: this Python's ssl module cannot show an "
            "unverified certificate chain"
        )
    import _ssl

    return [cert.public_bytes(_ssl.ENCODING_DER) for cert in private() or []]


def fetch_root_ca(addr: str, expected_digest_hex: str, timeout: float) -> bytes:
    """The PEM of the root CA the manager at `addr` presents, if its sha256 is the pinned one.

    Blocks for up to about `timeout` seconds: call it from a thread (`asyncio.to_thread`) when on
    an event loop. Raises CAError if the manager cannot be reached or presents no CA, and
    InvalidJoinToken (a CAError) if no presented certificate has the digest in the join token.
    """
    host, port = split_host_port(addr)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=None) as tls_socket:
                chain = _unverified_chain_der(tls_socket, addr)
    except (OSError, ssl.SSLError) as exc:
        raise CAError(f"cannot fetch the root CA from the manager at {addr}: {exc}") from exc
    log.debug("manager %s presented %d certificates", addr, len(chain))
    expected = expected_digest_hex.lower()
    for der in chain:
        if hmac.compare_digest(certificate_digest(der), expected):
            cert = x509.load_der_x509_certificate(der)
            try:
                is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                is_ca = False
            if not is_ca:
                raise CAError(
                    f"the manager at {addr} presented a certificate matching the join token's "
                    "digest, but it is not a CA certificate"
                )
            return cert.public_bytes(serialization.Encoding.PEM)
    if len(chain) < 2:
        raise CAError(
            f"the manager at {addr} presented no CA certificate in its TLS chain "
            f"({len(chain)} certificate(s)); its server must present leaf + root"
        )
    raise InvalidJoinToken(
        f"the manager at {addr} presented a CA whose digest does not match the join token "
        f"(token pins sha256:{expected[:12]}…); check the token, or someone is impersonating "
        "the manager"
    )
