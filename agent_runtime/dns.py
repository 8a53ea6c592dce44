"""The embedded DNS server at 127.0.0.11 of every container on an overlay network.

Design: one asyncio resolver inside runtimed, with one UDP and one TCP socket per container
*created inside that container's netns* (a thread joins the netns just long enough to make them;
a socket keeps its namespace). They listen on 127.0.0.11 and a random port, and the container's
nft table DNATs 127.0.0.11:53 there, as Docker does, so a workload can still bind port 53 itself.
No process per container, and no route from the container to the host needed (internal networks
have none): two sockets and two small asyncio objects per container. Which socket a query
arrived on tells which container asked, so answers are scoped to that container's networks.

Answers (``build_records`` is pure; the table is swapped whole on each sync, so a change is
visible to the next query; TTL 1 s):
- ``SERVICE`` and each alias (``STACK_SERVICE`` -> the stack-local ``SERVICE``) -> the VIP on
  each network shared with the asker; with endpoint mode dnsrr -> the healthy task IPs;
- ``tasks.SERVICE`` (and ``tasks.ALIAS``) -> the healthy task IPs;
- a service's network aliases (``--network name=NET,alias=A``) on NET -> as its name (VIP, or the
  tasks with dnsrr), and ``tasks.A`` -> its tasks; services sharing an alias share the name, as in
  Docker, but a service's own name is never taken over by another's alias;
- container names, hostnames and aliases (local containers, and remote ``Peers[].Names``) -> IPs;
- anything else is forwarded to the nameservers in runtimed's /etc/resolv.conf (the host's),
  from runtimed's own netns; AAAA for a name we own is answered empty, not forwarded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from agent_runtime.network import netns as netns_mod
from agent_runtime.network.model import NetworkState
from agent_runtime.network.plan import LocalContainer

log = logging.getLogger(__name__)

DNS_IP = "127.0.0.11"
TTL = 1
FORWARD_TIMEOUT = 2.0
MAX_UPSTREAMS = 3

Records = dict[str, dict[str, tuple[str, ...]]]   # network id -> lower-case name -> IPs


def build_records(state: NetworkState, containers: list[LocalContainer]) -> Records:
    """Every name this host answers, per network (see the module docstring). Containers and peers
    sharing a name are merged; a service name replaces any container name it collides with."""
    out: dict[str, dict[str, list[str]]] = {n.id: {} for n in state.networks}
    for c in containers:
        for e in c.endpoints:
            for name in c.names(e):
                out.setdefault(e.network_id, {}).setdefault(name.lower(), []).append(e.ip)
    for p in state.peers:
        for name in p.names:
            out.setdefault(p.network_id, {}).setdefault(name.lower(), []).append(p.ip)
    aliases: dict[str, dict[str, list[str]]] = {}     # network aliases: shared by services, as Docker's
    for s in state.services:
        nets = ({v.network_id for v in s.virtual_ips} | {n for b in s.backends for n in b.addresses}
                | set(s.network_aliases))
        for net_id in nets:
            tasks = [b.ip_on(net_id) for b in s.healthy() if b.ip_on(net_id)]
            vips = [v.ip for v in s.virtual_ips if v.network_id == net_id]
            own = {n.lower() for n in s.names()}
            for name in s.names_on(net_id):
                key = name.lower()
                table = out.setdefault(net_id, {}) if key in own else aliases.setdefault(net_id, {})
                if key in own:
                    table[f"tasks.{key}"] = list(tasks)
                    table[key] = list(vips if s.endpoint_mode == "vip" else tasks)
                else:
                    table.setdefault(f"tasks.{key}", []).extend(tasks)
                    table.setdefault(key, []).extend(vips if s.endpoint_mode == "vip" else tasks)
    services = {n.lower() for s in state.services for n in s.names()}
    for net_id, table in aliases.items():   # a service's own name wins over another's alias
        for key, ips in table.items():
            if key.removeprefix("tasks.") not in services:
                out.setdefault(net_id, {})[key] = ips
    return {net: {k: tuple(dict.fromkeys(v)) for k, v in names.items()} for net, names in out.items()}


def lookup(records: Records, network_ids: list[str], name: str) -> list[str] | None:
    """IPs for ``name`` on the given networks in order (deduplicated), or None if no network has it."""
    key = name.lower().rstrip(".")
    found = None
    for net_id in network_ids:
        ips = records.get(net_id, {}).get(key)
        if ips is not None:
            found = list(dict.fromkeys((found or []) + list(ips)))
    return found


def nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The ``nameserver`` lines of a resolv.conf (at most three, like glibc)."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return []
    servers = [ln.split()[1] for ln in lines if ln.strip().startswith("nameserver") and len(ln.split()) > 1]
    return servers[:MAX_UPSTREAMS]


@dataclass
class _Listener:
    port: int
    udp_transport: asyncio.DatagramTransport
    tcp_server: asyncio.base_events.Server


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, resolver: "Resolver", container_id: str) -> None:
        self.resolver, self.container_id = resolver, container_id
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        reply = self.resolver.answer(self.container_id, data)
        if reply is not None:
            self.transport.sendto(reply, addr)
        else:
            self.resolver.spawn(self._forward(data, addr))

    async def _forward(self, data: bytes, addr) -> None:
        reply = await self.resolver.forward(data, self.container_id)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


class Resolver:
    """Serves every container's 127.0.0.11. Call from runtimed's event loop only."""

    def __init__(self, resolv_conf: Path = Path("/etc/resolv.conf"),
                 upstreams: list[tuple[str, int]] | None = None) -> None:
        """Forward to ``upstreams`` ((ip, port) pairs) if given, else to resolv_conf's nameservers,
        read on each forward so an edited resolv.conf applies at once."""
        self.resolv_conf = resolv_conf
        self.upstreams = upstreams
        self.records: Records = {}
        self.networks_of: dict[str, list[str]] = {}   # container id -> its network ids, in order
        self.upstreams_of: dict[str, list[tuple[str, int]]] = {}  # container id -> its own nameservers (--dns)
        self.listeners: dict[str, _Listener] = {}
        self._tasks: set[asyncio.Task] = set()

    def update(self, records: Records, containers: list[LocalContainer]) -> None:
        """Swap in a new record table (atomic for queries: they run on the same loop)."""
        self.records = records
        self.networks_of = {c.id: c.network_ids() for c in containers}
        self.upstreams_of = {c.id: [(ip, 53) for ip in c.dns] for c in containers if c.dns}

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # sockets ------------------------------------------------------------------------------
    async def listen(self, container: LocalContainer) -> int:
        """Make sure ``container`` has its resolver sockets; return their port (idempotent)."""
        if container.id in self.listeners:
            return self.listeners[container.id].port
        udp, tcp = await asyncio.to_thread(netns_mod.bound_sockets, container.netns, DNS_IP)
        port = udp.getsockname()[1]
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _UDP(self, container.id), sock=udp)
            server = await asyncio.start_server(
                lambda r, w: self._tcp(container.id, r, w), sock=tcp)
        except BaseException:
            udp.close()
            tcp.close()
            raise
        self.listeners[container.id] = _Listener(port, transport, server)
        log.debug("DNS for container %s on %s:%d in %s", container.name, DNS_IP, port, container.netns)
        return port

    async def close(self, container_id: str) -> None:
        listener = self.listeners.pop(container_id, None)
        if listener is not None:
            listener.udp_transport.close()
            listener.tcp_server.close()
            await listener.tcp_server.wait_closed()

    async def close_all(self) -> None:
        for cid in list(self.listeners):
            await self.close(cid)
        for task in list(self._tasks):
            task.cancel()

    # queries ------------------------------------------------------------------------------
    def answer(self, container_id: str, data: bytes) -> bytes | None:
        """A reply for a name we own, or None when the query must be forwarded."""
        try:
            request = DNSRecord.parse(data)
        except Exception:  # dnslib raises several kinds for garbage; drop the packet
            return b""
        if not request.questions:
            return None
        q = request.q
        ips = lookup(self.records, self.networks_of.get(container_id, []), str(q.qname))
        if ips is None:
            return None
        reply = request.reply()
        reply.header.ra = 1
        if q.qtype in (QTYPE.A, QTYPE.ANY):
            for ip in ips:
                reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
        return reply.pack()

    async def forward(self, data: bytes, container_id: str = "") -> bytes | None:
        """Ask the container's own nameservers (``--dns``, as Docker's embedded DNS does), else the
        host's, in turn; SERVFAIL if none answers in time."""
        loop = asyncio.get_running_loop()
        own = self.upstreams_of.get(container_id)
        servers = own or self.upstreams or [(ip, 53) for ip in nameservers(self.resolv_conf)]
        for server, port in servers:
            family = socket.AF_INET6 if ":" in server else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (server, port))
                await loop.sock_sendall(sock, data)
                return await asyncio.wait_for(loop.sock_recv(sock, 65535), FORWARD_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                log.debug("DNS forward to %s failed: %s", server, exc)
            finally:
                sock.close()
        try:
            reply = DNSRecord.parse(data).reply()
        except Exception:
            return None
        reply.header.rcode = RCODE.SERVFAIL
        return reply.pack()

    async def _tcp(self, container_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(size)
                reply = self.answer(container_id, data)
                if reply is None:
                    reply = await self.forward(data, container_id)
                if not reply:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def resolv_conf(nameservers: list[str], search: list[str] = (), options: list[str] = ()) -> str:
    """A resolv.conf as Docker writes one: nameservers, then ``search`` and ``options`` lines. A
    search list of ``.`` alone means none (Docker's)."""
    lines = [f"nameserver {ip}" for ip in nameservers]
    domains = [d for d in search if d != "."]
    if domains:
        lines.append("search " + " ".join(domains))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def hosts_text(extra_hosts: list[str] = (), own: list[tuple[str, list[str]]] = ()) -> str:
    """/etc/hosts: localhost, the ``HOST:IP`` extra hosts, then the container's own addresses."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for entry in extra_hosts:
        name, _, ip = entry.partition("=" if "=" in entry else ":")
        lines.append(f"{ip.strip('[]')}\t{name}")
    for ip, names in own:
        lines.append(f"{ip}\t{' '.join(n for n in names if n)}")
    return "\n".join(lines) + "\n"


def container_files(directory: Path, container: LocalContainer) -> dict[str, Path]:
    """Write the container's resolv.conf and hosts into ``directory``; return {target: file}.

    The embedded DNS stays the only nameserver (Docker's): it forwards what it does not own to the
    container's ``--dns`` servers; the search domains and options are the container's, with
    ``ndots:0`` unless it sets ndots itself (libnetwork's default for swarm containers)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    options = list(container.dns_options)
    if not any(o.startswith("ndots:") for o in options):
        options.insert(0, "ndots:0")
    resolv = directory / "resolv.conf"
    resolv.write_text(resolv_conf([DNS_IP], list(container.dns_search), options))
    own = [(e.ip, list(dict.fromkeys([container.hostname, container.name, *e.aliases])))
           for e in container.endpoints]
    hosts = directory / "hosts"
    hosts.write_text(hosts_text(list(container.extra_hosts), own))
    for f in (resolv, hosts):
        os.chmod(f, 0o644)
    return {"/etc/resolv.conf": resolv, "/etc/hosts": hosts}
