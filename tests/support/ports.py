"""Loopback ports for servers a test starts, without the race of "bind 0, close, hope".

``reserve_port`` is Yelp's ephemeral-port-reserve trick: a port is bound, connected to and closed
from the server side, so it stays in TIME_WAIT for about a minute. The kernel hands it to no other
``bind(("", 0))`` meanwhile, while a server that sets SO_REUSEADDR (PySyncObj and grpc do) binds it
at once.
"""

from __future__ import annotations

import socket


def reserve_port(host: str = "127.0.0.1", port: int = 0) -> int:
    """Reserve ``port`` (any free one if 0) and return it; OSError if ``port`` is taken."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen(1)
        port = server.getsockname()[1]
        with socket.create_connection((host, port)):
            accepted, _ = server.accept()
            accepted.close()    # the server side closes first: its end waits in TIME_WAIT
    return port


def reserve_ports(*offsets: int, host: str = "127.0.0.1") -> int:
    """A port P with P and each P + offset reserved (a manager's join, Raft and mutual-TLS ports:
    ``reserve_ports(1, 2)``)."""
    for _ in range(100):
        port = reserve_port(host)
        if port + max(offsets, default=0) >= 65536:
            continue
        try:
            for offset in offsets:
                reserve_port(host, port + offset)
        except OSError:
            continue
        return port
    raise OSError(f"no free ports at offsets {offsets} on {host}")
