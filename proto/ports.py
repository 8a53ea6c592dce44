"""The port plan of a node, part of the wire contract.

A manager's advertised address ``HOST:PORT`` (2377 by default) is its join port: TLS
without client certificates, where a new node presents its join token. Everything else
between nodes runs on the mutual-TLS port ``PORT + 2`` (2379), and Raft on ``PORT + 1``
(2378). grpc's Python binding cannot ask for a client certificate optionally on one
port, hence two.
"""

DEFAULT_PORT = 2377
RAFT_OFFSET = 1
MTLS_OFFSET = 2


def _shift(addr: str, offset: int) -> str:
    host, port = addr.rsplit(":", 1)
    return f"{host}:{int(port) + offset}"


def raft_addr(grpc_addr: str) -> str:
    """The Raft endpoint of the manager advertised at ``grpc_addr``."""
    return _shift(grpc_addr, RAFT_OFFSET)


def mtls_addr(grpc_addr: str) -> str:
    """The mutual-TLS endpoint of the manager advertised at ``grpc_addr``."""
    return _shift(grpc_addr, MTLS_OFFSET)


def grpc_addr_of_raft(raft: str) -> str:
    return _shift(raft, -RAFT_OFFSET)
