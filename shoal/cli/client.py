"""How the CLI reaches shoald: the ControlAPI over its root-only unix socket, or over TCP with
mutual TLS as the docker client reaches dockerd (``-H tcp://HOST:2376 --tlsverify``; the daemon's
side is shoal.daemon.remote, docs/remote-access.md).

The daemon: ``-H``, else ``SHOAL_HOST``, else ``DOCKER_HOST`` when it is ``tcp://`` (the remote
port serves both APIs; a unix DOCKER_HOST names a Docker API socket, not shoald's), else
unix:///run/shoal/shoal.sock. TLS as docker's client: ``--tlsverify`` or a non-empty
``DOCKER_TLS_VERIFY``; ``--tlscacert/--tlscert/--tlskey`` default to ca.pem, cert.pem and key.pem
in ``DOCKER_CERT_PATH`` or ~/.docker, and a default client certificate or key that does not exist
is not sent (the daemon then refuses the handshake, as dockerd would).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

DEFAULT_HOST = "unix:///run/shoal/shoal.sock"
DEFAULT_TLS_PORT = 2376
MAX_ANSWER = 512 * 1024 * 1024   # bytes of one daemon answer the CLI accepts


def host_url(host: str | None) -> str:
    if host:
        return host
    if os.environ.get("SHOAL_HOST"):
        return os.environ["SHOAL_HOST"]
    docker_host = os.environ.get("DOCKER_HOST", "")
    return docker_host if docker_host.startswith("tcp://") else DEFAULT_HOST


def socket_path(host: str | None) -> str:
    url = host_url(host)
    if not url.startswith("unix://"):
        raise click.UsageError(f"unsupported host {url!r}: expected unix:///path/to/shoal.sock")
    return url[len("unix://"):]


def tcp_target(url: str) -> str:
    """HOST:PORT of a tcp:// host (port 2376 when left out); UsageError naming a malformed one."""
    rest = url[len("tcp://"):].rstrip("/")
    if not rest or "/" in rest:
        raise click.UsageError(f"invalid host {url!r}: expected tcp://HOST[:PORT]")
    if rest.startswith("["):                    # [IPv6]:PORT
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
        host = f"[{host}]"
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:
        host, port = rest, ""
    if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise click.UsageError(f"invalid host {url!r}: expected tcp://HOST[:PORT]")
    return f"{host}:{port or DEFAULT_TLS_PORT}"


@dataclass(frozen=True)
class TLSOptions:
    """Docker's client TLS flags, as given (None: the default)."""
    verify: bool = False
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None

    def files(self) -> tuple[Path, Path | None, Path | None]:
        """(CA, client certificate, client key): given paths must exist; defaults in
        DOCKER_CERT_PATH or ~/.docker, a missing default certificate or key is left out."""
        base = Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
        ca = Path(self.cacert) if self.cacert else base / "ca.pem"
        if not ca.is_file():
            how = "--tlscacert" if self.cacert else f"DOCKER_CERT_PATH ({base})"
            raise click.UsageError(f"could not read CA certificate {str(ca)!r} ({how}): no such file")
        chosen: list[Path | None] = []
        for given, default, flag in ((self.cert, "cert.pem", "--tlscert"), (self.key, "key.pem", "--tlskey")):
            path = Path(given) if given else base / default
            if given and not path.is_file():
                raise click.UsageError(f"could not read {flag} {given!r}: no such file")
            chosen.append(path if path.is_file() else None)
        cert, key = chosen
        if (cert is None) != (key is None):
            raise click.UsageError(f"a client certificate needs its key: found {cert or key} without the other")
        return ca, cert, key


class Client:
    """A lazily connected ControlAPI stub; grpc is imported only when a command needs it."""

    def __init__(self, host: str | None, timeout: float = 30.0, tls: TLSOptions | None = None):
        self.host = host
        self.timeout = timeout
        self.tls = tls or TLSOptions(verify=bool(os.environ.get("DOCKER_TLS_VERIFY")))
        self._stub = None

    @property
    def stub(self):
        if self._stub is None:
            if host_url(self.host).startswith("tcp://"):
                # grpc's C core would also print a TLS refusal it reports to us, garbled, on stderr
                os.environ.setdefault("GRPC_VERBOSITY", "NONE")
            import grpc

            from proto import control_pb2_grpc
            # gRPC's default 4 MiB receive limit is about 5,000 tasks of `service ps`: the
            # daemon's answers are trusted, so take what it sends (bounded, not unlimited).
            options = [("grpc.max_receive_message_length", MAX_ANSWER)]
            url = host_url(self.host)
            if url.startswith("tcp://"):
                self._channel = grpc.secure_channel(tcp_target(url), self._credentials(url), options=options)
            else:
                self._channel = grpc.insecure_channel(f"unix:{socket_path(self.host)}", options=options)
            self._stub = control_pb2_grpc.ControlStub(self._channel)
        return self._stub

    def _credentials(self, url: str):
        import grpc
        if not self.tls.verify:
            raise click.UsageError(f"{url} is served only with mutual TLS: add --tlsverify (or set DOCKER_TLS_VERIFY=1) "
                                   "and a client certificate from `shoal swarm client-cert`")
        ca, cert, key = self.tls.files()
        return grpc.ssl_channel_credentials(ca.read_bytes(), key.read_bytes() if key else None,
                                            cert.read_bytes() if cert else None)

    def call(self, method: str, request, timeout: float | None = None):
        """Call a ControlAPI method; on an RPC error print it as the docker CLI does and exit 1."""
        import grpc
        try:
            return getattr(self.stub, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            fail_rpc(err, self.host)


def fail_rpc(err, host: str | None) -> None:
    import grpc
    url = host_url(host)
    if err.code() == grpc.StatusCode.UNAVAILABLE and url.startswith("tcp://"):
        details = err.details() or ""
        hint = ""
        if any(word in details for word in ("TSI_", "Ssl", "SSL", "handshake")):
            # grpc reports the daemon's TLS alert only as a failed handshake or corrupted data
            hint = (" (TLS refused: the client certificate must be one `shoal swarm client-cert` issued for this "
                    "cluster, unexpired; the daemon's log says why)")
        message = f"Cannot connect to the Shoal daemon at {url}{hint}: {details}"
    elif err.code() == grpc.StatusCode.UNAVAILABLE and ("connect" in (err.details() or "").lower()
                                                       or "No such file" in (err.details() or "")):
        message = (f"Cannot connect to the Shoal daemon at {url}. Is shoald running?")
    elif err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = "the request timed out (does the swarm have a quorum of managers?)"
    elif err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # gRPC's own limits (4 MiB per message, 8 KiB of status metadata), not the daemon's answer
        message = f"the request or its answer is larger than one call may carry ({err.details()})"
    else:
        message = err.details() or err.code().name
    click.echo(f"Error response from daemon: {message}", err=True)
    sys.exit(1)
