"""What shoald derives from its host and from what the user typed: addresses and the node description."""

from __future__ import annotations

import ipaddress
import os
import platform
import socket

from proto import objects_pb2
from proto.ports import DEFAULT_PORT
from shoal import __version__


class DaemonError(Exception):
    """A membership call refused; ``code`` maps to a gRPC status (manager.controlapi.GRPC_STATUS)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def parse_addr(addr: str, default_port: int, what: str) -> tuple[str, int]:
    """Parse HOST[:PORT] where HOST is an IPv4/IPv6 literal; DaemonError names what is wrong."""
    text = addr.strip()
    host, port = text, default_port
    if text.count(":") == 1 or text.startswith("["):
        host, _, port_text = text.rpartition(":")
        host = host.strip("[]")
        try:
            port = int(port_text)
        except ValueError:
            raise DaemonError("invalid", f"invalid {what} {addr!r}: port {port_text!r} is not a number") from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise DaemonError("invalid", f"invalid {what} {addr!r}: expected IP[:PORT], e.g. 192.0.2.11:2377") from None
    if not 0 < port < 65535:
        raise DaemonError("invalid", f"invalid {what} {addr!r}: port out of range")
    return host, port


def listen_and_advertise(listen_addr: str, advertise_addr: str, toward: str = "") -> tuple[str, int, str]:
    """(listen host, listen port, advertise host) for ``swarm init`` and ``swarm join``.

    The advertise host is the one given, else the listen host unless it is a wildcard, else the
    address this host reaches ``toward`` from (a join: the manager it joins, as swarmkit takes the
    address the manager sees), else that of the interface that carries the default route (Docker's
    guess).
    """
    listen_host, listen_port = parse_addr(listen_addr or f"0.0.0.0:{DEFAULT_PORT}", DEFAULT_PORT, "listen address")
    if advertise_addr:
        advertise_host, _ = parse_addr(advertise_addr, listen_port, "advertise address")
    elif listen_host not in ("0.0.0.0", "::"):
        advertise_host = listen_host
    else:
        advertise_host = default_advertise_addr(toward or "192.0.2.1")
    return listen_host, listen_port, advertise_host


def default_advertise_addr(toward: str = "192.0.2.1") -> str:
    """The source address of this host's route to ``toward`` (by default: the interface that
    carries the default route)."""
    family = socket.AF_INET6 if ":" in toward else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((toward, 9))  # no packet is sent for a UDP connect
            return str(probe.getsockname()[0])
        except OSError:
            raise DaemonError("invalid", "could not choose an advertise address: "
                                         "please specify one with --advertise-addr") from None


def memory_bytes(meminfo: str = "/proc/meminfo") -> int:
    """MemTotal in bytes, 0 if it cannot be read."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def node_description(hostname: str, grpc_addr: str = "",
                     tls_info: objects_pb2.NodeTLSInfo | None = None,
                     generic: tuple[objects_pb2.GenericResource, ...] = ()) -> objects_pb2.NodeDescription:
    desc = objects_pb2.NodeDescription(hostname=hostname, grpc_addr=grpc_addr)
    desc.resources.generic.extend(generic)
    if tls_info is not None:
        desc.tls_info.CopyFrom(tls_info)
    desc.platform.os = platform.system().lower()
    desc.platform.architecture = platform.machine()
    desc.resources.nano_cpus = (os.cpu_count() or 1) * 10**9
    desc.resources.memory_bytes = memory_bytes()
    desc.engine.engine_version = __version__
    return desc
