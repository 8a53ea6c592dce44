"""The node's certificate in shoald: loaded from the state directory, served, renewed, reported.

`NodeCertificates` ties together what the daemon needs:

- `tls`: a `manager.ca.NodeTLS` every gRPC server and client of the node takes its credentials
  from, so a renewed certificate is used by the next handshake without restarting anything;
- `run()`: the `manager.ca.CertificateRenewer` loop, which at the certificate's renewal point asks
  a manager for a new one (`manager.membership.nodeca.request_certificate`), writes it to the state
  directory (crash-safely: `StateDir.save_certificates`), swaps it into `tls`, and tells the agent
  to open a new session so the leader learns the new certificate's TLS info and expiry;
- `error()`: the message `shoal info` shows while the certificate is expired.

A role change (promote/demote) also gets a new certificate; it goes through `install`, so the
renewer sees the new certificate and draws its renewal point afresh.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from manager.ca import CAError, CertificateRenewer, NodeTLS
from manager.membership.nodeca import request_certificate
from manager.rolenames import role_to_ou
from shoal.nodestate import StateDir

log = logging.getLogger(__name__)


class NodeCertificates:
    def __init__(self, state: StateDir, managers: Callable[[], list[str]],
                 on_renewed: Callable[[], None] = lambda: None, lock: asyncio.Lock | None = None) -> None:
        self._state = state
        self._lock = lock or asyncio.Lock()   # the daemon's membership lock: no renewal during a role change
        self._managers = managers
        self._on_renewed = on_renewed
        self.tls = NodeTLS(*state.load_certificates())
        self.renewer = CertificateRenewer(self.tls, self.renew)

    def install(self, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> None:
        """Write a new certificate, key and root CA to disk, then use them."""
        NodeTLS(cert_pem, key_pem, ca_pem)          # refuse a mismatched pair before writing it
        self._state.save_certificates(cert_pem, key_pem, ca_pem)
        self.tls.update(cert_pem, key_pem, ca_pem)

    async def renew(self) -> None:
        """Get a new certificate for the same role from a manager and use it."""
        async with self._lock:
            response, key = await request_certificate(self.tls, self._managers())
            if role_to_ou(response.role) != self.tls.identity.role:
                raise CAError(f"the new certificate is for role {role_to_ou(response.role)}, this node runs as "
                              f"{self.tls.identity.role}: left to the role change")
            self.install(response.certificate, key, self.tls.ca_pem)
        self._on_renewed()

    def trust(self, roots_pem: bytes) -> bool:
        """Trust exactly these root CA certificates from now on (what the swarm sends in each
        session message; two roots during a CA rotation). Returns whether anything changed."""
        if not roots_pem or roots_pem == self.tls.ca_pem:
            return False
        self.install(self.tls.cert_pem, self.tls.key_pem, roots_pem)
        log.info("trusted root CAs changed (%d certificate(s))", roots_pem.count(b"BEGIN CERTIFICATE"))
        return True

    def on_session(self, message) -> None:
        """What a session message says about certificates: the roots to trust, renew now."""
        if self.trust(message.root_ca):
            self._on_renewed()                       # report the new trust root in a new session
        if message.renew_certificate:
            self.renewer.request()

    def error(self) -> str:
        """Why this node cannot work with the swarm because of its certificate, or ""."""
        return self.renewer.expired_error()

    async def run(self) -> None:
        await self.renewer.run()
