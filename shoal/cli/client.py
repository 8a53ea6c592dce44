"""How the CLI reaches shoald: the ControlAPI over a unix socket (``-H``/``SHOAL_HOST``)."""

from __future__ import annotations

import os
import sys

import click

DEFAULT_HOST = "unix:///run/shoal/shoal.sock"
MAX_ANSWER = 512 * 1024 * 1024   # bytes of one daemon answer the CLI accepts


def host_url(host: str | None) -> str:
    return host or os.environ.get("SHOAL_HOST") or DEFAULT_HOST


def socket_path(host: str | None) -> str:
    url = host_url(host)
    if not url.startswith("unix://"):
        raise click.UsageError(f"unsupported host {url!r}: expected unix:///path/to/shoal.sock")
    return url[len("unix://"):]


class Client:
    """A lazily connected ControlAPI stub; grpc is imported only when a command needs it."""

    def __init__(self, host: str | None, timeout: float = 30.0):
        self.host = host
        self.timeout = timeout
        self._stub = None

    @property
    def stub(self):
        if self._stub is None:
            import grpc

            from proto import control_pb2_grpc
            # gRPC's default 4 MiB receive limit is about 5,000 tasks of `service ps`: the local
            # daemon's answers are trusted, so take what it sends (bounded, not unlimited).
            self._channel = grpc.insecure_channel(f"unix:{socket_path(self.host)}",
                                                  options=[("grpc.max_receive_message_length", MAX_ANSWER)])
            self._stub = control_pb2_grpc.ControlStub(self._channel)
        return self._stub

    def call(self, method: str, request, timeout: float | None = None):
        """Call a ControlAPI method; on an RPC error print it as the docker CLI does and exit 1."""
        import grpc
        try:
            return getattr(self.stub, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            fail_rpc(err, self.host)


def fail_rpc(err, host: str | None) -> None:
    import grpc
    if err.code() == grpc.StatusCode.UNAVAILABLE and ("connect" in (err.details() or "").lower()
                                                     or "No such file" in (err.details() or "")):
        message = (f"Cannot connect to the Shoal daemon at {host_url(host)}. Is shoald running?")
    elif err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = "the request timed out (does the swarm have a quorum of managers?)"
    elif err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # gRPC's own limits (4 MiB per message, 8 KiB of status metadata), not the daemon's answer
        message = f"the request or its answer is larger than one call may carry ({err.details()})"
    else:
        message = err.details() or err.code().name
    click.echo(f"Error response from daemon: {message}", err=True)
    sys.exit(1)
