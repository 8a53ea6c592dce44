"""The remote listener's TLS material (shoal.daemon.remote): the server context, and on managers a
certificate of the listener's own that names the host.

A node's certificate carries its advertise address as an IP SAN and no host name, so a client
dialling ``tcp://manager1:2376`` (as Docker's documentation does) would refuse it. A manager holds
the CA key, so it issues its listener a certificate (``RootCA.sign_server_csr``: OU shoal-server,
server-auth only) for its host name, ``localhost``, its advertise address, the listen addresses
and loopback, valid as long as its node certificate: a renewal or a CA rotation changes the node's
material, and the next handshake gets a fresh one. The key is made in memory and never written.
A worker, or a manager whose store is not ready, presents its node certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
from typing import TYPE_CHECKING, Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from manager.ca import CAError, NodeTLS, make_node_key_and_csr
from manager.ca.certificates import split_pem_certificates
from manager.ca.rotation import signing_root

if TYPE_CHECKING:
    from shoal.daemon.roles import Daemon

log = logging.getLogger("shoald.remote")


def server_context(tls: NodeTLS, own: tuple[bytes, bytes] | None = None) -> ssl.SSLContext:
    """The TLS server context: the cluster's trusted roots required of clients, TLS 1.2 or later,
    ALPN h2 (gRPC) and http/1.1, presenting ``own`` (chain, key) or else the node's certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=tls.ca_pem.decode())
    cert_pem, key_pem = own if own is not None else (tls.cert_pem, tls.key_pem)
    chain = cert_pem if tls.ca_pem.strip() in cert_pem else cert_pem + tls.ca_pem
    key = serialization.load_pem_private_key(key_pem, password=None)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    # load_cert_chain reads files: an in-memory file, so the key never touches a disk
    fd = os.memfd_create("shoal-remote-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, chain + b"\n" + key_pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def node_ips(tls: NodeTLS) -> list[str]:
    """The IP SANs of the node's certificate (its advertise address)."""
    leaf = x509.load_pem_x509_certificate(split_pem_certificates(tls.cert_pem)[0])
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]


def own_certificate(daemon: Daemon, listen_hosts: list[str],
                    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)
                    ) -> Callable[[NodeTLS], tuple[bytes, bytes] | None]:
    """For RemoteAPI: (chain, key) of a certificate naming this host, signed now, or None where
    this node cannot sign (not a manager, store not ready, CA key unavailable: logged)."""
    def issue(tls: NodeTLS) -> tuple[bytes, bytes] | None:
        manager = daemon.manager
        if manager is None:
            return None
        cluster = manager.store.view().cluster()
        if cluster is None:
            return None
        ips = node_ips(tls) + [h for h in listen_hosts if not ipaddress.ip_address(h).is_unspecified]
        ips += ["127.0.0.1", "::1"]
        try:
            signer = signing_root(cluster, daemon.state.load_secrets_key())
            key, csr = make_node_key_and_csr()
            validity = tls.not_after - now()
            cert = signer.sign_server_csr(csr, [daemon.hostname, "localhost"], ips, now(), validity)
        except (CAError, OSError, ValueError) as err:
            log.warning("the remote API presents the node certificate (dial it by its advertise address): "
                        "cannot issue its own: %s", err)
            return None
        log.info("remote API certificate for %s, %s", daemon.hostname, ", ".join(dict.fromkeys(ips)))
        return cert + signer.cert_pem, key
    return issue
