"""Remote access: shoald's TCP listener with mutual TLS (Docker's ``-H tcp://0.0.0.0:2376 --tlsverify``).

One port serves both APIs. The listener terminates TLS and hands the decrypted connection to the
root-only unix socket of the API the client speaks, chosen by ALPN: a client that negotiated
``h2`` is gRPC (the ``shoal`` CLI, whose gRPC stack requires h2) and goes to the ControlAPI socket;
any other (the ``docker`` CLI and SDK speak HTTP/1.1) goes to the Docker API socket. Behind the
listener nothing changes: both APIs already answer the local root user with full rights, as
dockerd does every client it lets in.

Who gets in (docs/remote-access.md):
- the handshake requires a client certificate chaining to the cluster's trusted roots (the node's
  NodeTLS, so a CA rotation and this node's renewals apply to the next handshake): no certificate,
  another CA's, or an expired one fail in the handshake, with the TLS alert that says why
  (shoal.daemon.tlsstream);
- then manager.ca.clients decides on the certificate's kind: only client certificates of this
  cluster (``shoal swarm client-cert``) pass; node certificates are refused. An HTTP client
  refused there gets 403 with Docker's ``{"message": …}`` naming why; a gRPC client is closed.
- The server presents this node's own certificate (renewed with it), which carries the node's
  advertise address as an IP SAN: clients dial that address.

Hostile input: every handshake has a deadline (a half-open or silent client is cut off and never
delays another), at most ``max_connections`` connections are open at once (more are closed at
accept), and garbage fails the handshake. Every refusal is logged with the peer and the reason and
counted in ``shoal_remote_connections_total{result}``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from prometheus_client import Counter

from common.backoff import Backoff
from manager.ca import NodeTLS
from manager.ca.clients import client_identity
from manager.ca.errors import CertificateError
from shoal.daemon.config import DaemonError, parse_addr
from shoal.daemon.remotecert import server_context
from shoal.daemon.refusals import GRPC_UNAUTHENTICATED, answer_grpc, answer_http
from shoal.daemon.tlsstream import TLSStream

log = logging.getLogger("shoald.remote")

DEFAULT_TLS_PORT = 2376          # Docker's port for the API over TLS
HANDSHAKE_TIMEOUT = 10.0         # seconds a client has to complete the TLS handshake
MAX_CONNECTIONS = 512
OWN_CERTIFICATE_RETRY = (1.0, 60.0)   # backoff (first, longest) between attempts to issue the listener its own
                                      # certificate (a manager whose store is not ready yet, or a worker)
_CHUNK = 64 * 1024

CONNECTIONS = Counter("shoal_remote_connections", "Connections to shoald's remote (TCP, mutual TLS) API by outcome",
                      ["result"])


def parse_hosts(values: list[str]) -> tuple[list[tuple[str, int]], str | None]:
    """Docker's ``-H``/``hosts`` values: (TCP addresses to listen on, the Docker API unix socket
    path if one was given). ``tcp://[HOST]:[PORT]`` (HOST an IP literal, default 0.0.0.0; PORT
    default 2376) or ``unix:///path``; DaemonError names a value that is neither."""
    addrs: list[tuple[str, int]] = []
    unix: str | None = None
    for value in values:
        text = value.strip()
        if text.startswith("unix://"):
            path = text[len("unix://"):]
            if not path.startswith("/"):
                raise DaemonError("invalid", f"invalid host {value!r}: expected unix:///absolute/path")
            if unix is not None and unix != path:
                raise DaemonError("invalid", f"invalid host {value!r}: the Docker API is served on one unix "
                                             f"socket, {unix} already")
            unix = path
        elif text.startswith("tcp://"):
            rest = text[len("tcp://"):].rstrip("/")
            if rest.startswith(":"):
                rest = "0.0.0.0" + rest
            addr = parse_addr(rest or "0.0.0.0", DEFAULT_TLS_PORT, "host")
            if addr not in addrs:
                addrs.append(addr)
        else:
            raise DaemonError("invalid", f"invalid host {value!r}: expected tcp://IP:PORT (served with mutual "
                                         "TLS) or unix:///path")
    return addrs, unix


@dataclass
class _Cached:
    tls: NodeTLS
    generation: int
    context: ssl.SSLContext
    named: bool       # presents a certificate of its own (remotecert.own_certificate), not the node's
    retry_at: float   # when not named: when to try again (a manager whose store was not ready yet)


class RemoteAPI:
    """The TCP listeners. ``tls()`` gives the node's current TLS material, None outside a swarm
    (connections are then closed at once: there is no CA to check clients against)."""

    def __init__(self, tls: Callable[[], NodeTLS | None], control_socket: Path, docker_socket: Path | None,
                 own_certificate: Callable[[NodeTLS], tuple[bytes, bytes] | None] = lambda tls: None,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, max_connections: int = MAX_CONNECTIONS,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                 clock: Callable[[], float] = time.monotonic):
        self._tls = tls
        self._own_certificate = own_certificate
        self.control_socket = control_socket
        self.docker_socket = docker_socket
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self._now = now
        self._clock = clock
        self._issue_backoff = Backoff(*OWN_CERTIFICATE_RETRY)
        self._servers: list[asyncio.Server] = []
        self._cached: _Cached | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, addrs: list[tuple[str, int]]) -> None:
        """Listen on every address; OSError (naming the address) if one cannot be bound."""
        try:
            for host, port in addrs:
                try:
                    server = await asyncio.start_server(self._accept, host, port, limit=_CHUNK)
                except OSError as err:
                    raise OSError(err.errno, f"cannot listen on tcp://{host}:{port}: {err.strerror}") from None
                self._servers.append(server)
                log.info("remote API listening on tcp://%s:%d (mutual TLS)", host, port)
        except BaseException:
            await self.close()
            raise

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) pairs (port 0 given: the one the system chose)."""
        return [sock.getsockname()[:2] for server in self._servers for sock in server.sockets]

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers = []

    def _context(self) -> ssl.SSLContext | None:
        tls = self._tls()
        if tls is None:
            return None
        cached, now = self._cached, self._clock()
        if cached is None or cached.tls is not tls or cached.generation != tls.generation:
            self._issue_backoff.reset()          # new material: try to issue at once
        elif cached.named or now < cached.retry_at:
            return cached.context
        own = self._own_certificate(tls)
        if own is not None:
            self._issue_backoff.reset()
        retry_at = now if own is not None else now + self._issue_backoff.next()
        self._cached = _Cached(tls, tls.generation, server_context(tls, own), own is not None, retry_at)
        return self._cached.context

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.max_connections:
            self._refuse(writer, "busy", f"{self.max_connections} connections are open already")
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - one connection's failure must not reach the server
            log.warning("remote connection from %s failed: %s", _peer(writer), err)
        finally:
            self._connections.discard(task)
            writer.close()

    def _refuse(self, writer: asyncio.StreamWriter, result: str, why: str) -> None:
        CONNECTIONS.labels(result).inc()
        log.info("remote connection from %s refused: %s", _peer(writer), why)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        context = self._context()
        if context is None:
            self._refuse(writer, "not_in_swarm", "this node is not part of a swarm yet (no cluster CA)")
            return
        client = TLSStream(reader, writer, context)
        try:
            async with asyncio.timeout(self.handshake_timeout):
                await client.handshake()
        except TimeoutError:
            self._refuse(writer, "handshake_timeout", f"TLS handshake not completed in {self.handshake_timeout:g}s")
            return
        except (ssl.SSLError, OSError) as err:
            self._refuse(writer, "handshake_failed", f"TLS handshake failed: {err}")
            return
        try:
            await self._serve_client(client, writer)
        finally:
            client.close()

    async def _serve_client(self, client: TLSStream, writer: asyncio.StreamWriter) -> None:
        grpc_client = client.ssl.selected_alpn_protocol() == "h2"
        tls = self._tls()
        try:
            if tls is None:
                raise CertificateError("this node left the swarm")
            who = client_identity(client.ssl.getpeercert(binary_form=True), tls.identity.cluster_id)
        except CertificateError as err:
            self._refuse(writer, "refused", str(err))
            if grpc_client:
                await answer_grpc(client, GRPC_UNAUTHENTICATED, str(err))
            else:
                await answer_http(client, 403, str(err))
            return
        backend = self.control_socket if grpc_client else self.docker_socket
        if backend is None:
            self._refuse(writer, "not_served", "the Docker API is not served on this node (--docker-socket '')")
            await answer_http(client, 503, "the Docker API is not served on this node")
            return
        CONNECTIONS.labels("accepted").inc()
        log.debug("remote %s client %s (certificate %s) from %s", "gRPC" if grpc_client else "HTTP",
                  who.name, who.serial, _peer(writer))
        try:
            back_reader, back_writer = await asyncio.open_unix_connection(str(backend), limit=_CHUNK)
        except OSError as err:
            log.warning("remote client %s: cannot reach %s: %s", who.name, backend, err)
            if not grpc_client:
                await answer_http(client, 503, f"the daemon's API socket is not answering: {err.strerror}")
            return
        try:
            await _splice(client, back_reader, back_writer)
        finally:
            back_writer.close()


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


async def _splice(client: TLSStream, back_r: asyncio.StreamReader, back_w: asyncio.StreamWriter) -> None:
    """Copy both ways. The client's end of input is passed on as a half-close (a hijacked
    ``docker exec`` closes its stdin that way and still reads the output), exactly as the client
    would on the unix socket; the backend's end, or a broken client connection, ends both."""
    async def upstream() -> bool:
        try:
            while data := await client.read(_CHUNK):
                back_w.write(data)
                await back_w.drain()
            if back_w.can_write_eof():
                back_w.write_eof()
        except (OSError, ssl.SSLError):
            return False
        return True

    async def downstream() -> None:
        try:
            while data := await back_r.read(_CHUNK):
                client.write(data)
                await client.drain()
        except (OSError, ssl.SSLError):
            pass

    up, down = asyncio.create_task(upstream()), asyncio.create_task(downstream())
    try:
        await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        if up.done() and up.result() and not down.done():
            await down        # the client half-closed: the answer may still be coming
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
