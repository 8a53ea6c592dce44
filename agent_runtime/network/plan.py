"""Pure decisions of the data plane: names, which networks are live here, which peers to program.

Nothing here touches the kernel. ``dataplane.py`` asks these functions what the host should hold
and makes it so; the unit tests ask them directly.

Names (kernel interface names are at most 15 characters and only need to be unique inside the
host's network namespace; netns names live in the machine-wide /run/netns, so they carry the
runtime id, a hash of runtimed's --root):

    shov<VNI>        a network's bridge          shvx<VNI>      its VXLAN device
    shoal_gwbridge   the egress bridge           shv<cid:9><n>  host end of a container's veth
    shoal-<rid>-<cid:12>   a container's netns   eth<n>         the container's ends (egress last)
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from agent_runtime.network.model import Network, NetworkState, mac_from_ip

BRIDGE_PREFIX = "shov"
VXLAN_PREFIX = "shvx"
VETH_PREFIX = "shv"
GATEWAY_BRIDGE = "shoal_gwbridge"
NETNS_PREFIX = "shoal-"
VXLAN_PORT = 4789


def runtime_id(root: Path) -> str:
    """A short stable id of one runtimed (from its --root), so its netns names never collide."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]


def netns_name(rid: str, container_id: str) -> str:
    return f"{NETNS_PREFIX}{rid}-{container_id[:12]}"


def bridge_name(vni: int) -> str:
    return f"{BRIDGE_PREFIX}{vni}"


def vxlan_name(vni: int) -> str:
    return f"{VXLAN_PREFIX}{vni}"


def host_veth(container_id: str, index: int | str) -> str:
    """Host end of a container's veth: ``index`` is the network's position, or ``g`` for egress."""
    suffix = index if isinstance(index, str) else f"{index:x}"
    return f"{VETH_PREFIX}{container_id[:9]}{suffix}"


def is_veth_of_ours(ifname: str) -> bool:
    return (ifname.startswith(VETH_PREFIX) and len(ifname) == len(VETH_PREFIX) + 10
            and not ifname.startswith((BRIDGE_PREFIX, VXLAN_PREFIX)))


def vni_of_device(ifname: str) -> int | None:
    """The VNI in an ``shov<VNI>``/``shvx<VNI>`` name, else None."""
    for prefix in (BRIDGE_PREFIX, VXLAN_PREFIX):
        if ifname.startswith(prefix) and ifname[len(prefix):].isdigit():
            return int(ifname[len(prefix):])
    return None


def gateway_bridge_ip(state: NetworkState) -> ipaddress.IPv4Interface:
    net = ipaddress.IPv4Network(state.gateway_bridge_subnet)
    return ipaddress.IPv4Interface(f"{net.network_address + 1}/{net.prefixlen}")


@dataclass(frozen=True)
class LocalEndpoint:
    """A local container's interface on one overlay network."""

    network_id: str
    ip: str
    prefixlen: int
    mac: str
    aliases: tuple[str, ...]
    host_if: str
    ifname: str


@dataclass
class LocalContainer:
    """What the data plane knows of a container on this host that has overlay attachments."""

    id: str
    name: str
    hostname: str
    netns: str
    endpoints: list[LocalEndpoint]
    gateway_ip: str = ""       # on shoal_gwbridge; empty when every network is internal
    gateway_if: str = ""       # the egress interface (eth<number of endpoints> when empty)
    dns_port: int = 0          # the resolver's port inside the netns, once it listens
    # from the spec: the embedded DNS forwards to ``dns`` (else the host's); resolv.conf and hosts
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()
    ports: tuple = ()          # the spec's PortBindings (host ports all assigned)
    running: bool = field(default=False, compare=False)

    def egress_interface(self) -> str:
        return self.gateway_if or f"eth{len(self.endpoints)}"

    def network_ids(self) -> list[str]:
        return [e.network_id for e in self.endpoints]

    def names(self, endpoint: LocalEndpoint | None = None) -> list[str]:
        """Its DNS names: name, hostname, short ID, and the aliases of ``endpoint`` (aliases are
        network-scoped, as Docker's), or of every endpoint when none is given."""
        out = [self.name, self.hostname, self.id[:12]]
        for e in self.endpoints if endpoint is None else [endpoint]:
            out += e.aliases
        return list(dict.fromkeys(n for n in out if n))


def needs_egress(state: NetworkState, network_ids: list[str], publishes: bool = False) -> bool:
    """Egress (the gateway bridge) is given unless every attached network is internal; a
    container on no swarm network that publishes ports has it too (Docker's default bridge)."""
    nets = [state.network(i) for i in network_ids]
    return any(n is not None and not n.internal for n in nets) or (publishes and not network_ids)


def port_key(p) -> tuple[str, str, int]:
    """(host ip, protocol, host port) of a PortBinding: "0.0.0.0" for every address."""
    return (p.host_ip or "0.0.0.0", p.protocol, p.host_port)


def ports_clash(a, b) -> bool:
    """Whether two bindings want the same host port (an all-addresses one clashes with any)."""
    ka, kb = port_key(a), port_key(b)
    return ka[1:] == kb[1:] and (ka[0] == kb[0] or "0.0.0.0" in (ka[0], kb[0]))


EPHEMERAL = (32768, 60999)     # Linux's default ip_local_port_range, where dockerd picks


def port_in_use(protocol: str, host_ip: str, port: int) -> str:
    """Why a program of this host (its network namespace) holds the port, or "": a published port
    would take its traffic away (dockerd's proxy fails to bind it the same way)."""
    import errno
    import socket
    if protocol == "sctp":
        return ""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # TIME_WAIT is not "in use"
        try:
            sock.bind((host_ip or "0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"listen {protocol}4 {host_ip}:{port}: bind: cannot assign requested address"
            return f"listen {protocol}4 {host_ip or '0.0.0.0'}:{port}: bind: address already in use"
    return ""


def free_host_port(protocol: str, host_ip: str, taken: list, in_use=port_in_use) -> int:
    """The lowest port of the ephemeral range no binding in ``taken`` and no program holds
    (ValueError if none)."""
    from types import SimpleNamespace
    for port in range(EPHEMERAL[0], EPHEMERAL[1] + 1):
        candidate = SimpleNamespace(host_ip=host_ip, protocol=protocol, host_port=port)
        if not any(ports_clash(candidate, t) for t in taken) and not in_use(protocol, host_ip, port):
            return port
    raise ValueError(f"no free {protocol} port in {EPHEMERAL[0]}-{EPHEMERAL[1]} to publish on")


def endpoints_for(container_id: str, attachments: list) -> list[LocalEndpoint]:
    """LocalEndpoints from a ContainerSpec's ``networks`` list: each on its ``interface`` (by
    default eth<position>), its host end named after that interface's number."""
    out = []
    for index, a in enumerate(attachments):
        iface = ipaddress.IPv4Interface(a.address)
        ifname = getattr(a, "interface", "") or f"eth{index}"
        out.append(LocalEndpoint(network_id=a.network_id, ip=str(iface.ip), prefixlen=iface.network.prefixlen,
                                 mac=(a.mac_address or mac_from_ip(str(iface.ip))).lower(),
                                 aliases=tuple(a.aliases), host_if=host_veth(container_id, int(ifname[3:])),
                                 ifname=ifname))
    return out


def free_interface(taken) -> str:
    """The lowest ``eth<N>`` not in ``taken`` (a network connected later, or the egress interface)."""
    n = 0
    while f"eth{n}" in taken:
        n += 1
    return f"eth{n}"


def wanted_veths(c: LocalContainer) -> set[str]:
    """The host ends of ``c``'s veths: one per endpoint, and the egress one while it has egress."""
    names = {e.host_if for e in c.endpoints}
    if c.gateway_ip:
        names.add(host_veth(c.id, "g"))
    return names


def active_networks(state: NetworkState, containers: list[LocalContainer]) -> list[Network]:
    """Networks this host must carry: those a local container is attached to, plus the ingress
    network while any service publishes an ingress-mode port (the routing mesh answers on every
    node). Networks missing from the state are not carried, even if a container still names one."""
    wanted = {nid for c in containers for nid in c.network_ids()}
    ingress = state.ingress_network()
    if ingress is not None and any(p.publish_mode == "ingress" for s in state.services for p in s.ports):
        wanted.add(ingress.id)
    return [n for n in state.networks if n.id in wanted]


def neighbours(state: NetworkState, active: list[Network]) -> dict[str, set[tuple[str, str, str]]]:
    """Per active network id: the (ip, mac, underlay ip) of each remote endpoint to program as a
    static FDB + neighbour entry. Entries behind this host's own underlay address are skipped."""
    out: dict[str, set[tuple[str, str, str]]] = {n.id: set() for n in active}
    for p in state.peers:
        if p.network_id in out and p.underlay_ip != state.underlay_ip:
            out[p.network_id].add((p.ip, p.mac, p.underlay_ip))
    return out


def allocate_gateway_ip(state: NetworkState, taken: set[str]) -> str:
    """The lowest free address of the gateway bridge subnet (the bridge has the first one)."""
    net = ipaddress.IPv4Network(state.gateway_bridge_subnet)
    bridge = str(gateway_bridge_ip(state).ip)
    for host in net.hosts():
        ip = str(host)
        if ip != bridge and ip not in taken:
            return ip
    raise ValueError(f"gateway bridge subnet {net} is full")
