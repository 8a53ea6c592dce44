"""The desired network state of one host: what the worker pushes whole with ``network_sync``.

Plain, JSON-serialisable dataclasses (Docker-style field names through ``agent_runtime.spec``'s
``to_json``/``from_json``) and ``validate_state``, which checks everything that needs no I/O and
raises ``InvalidArgument`` naming the field. No kernel work here: the worker imports this module
through ``agent_runtime.api``.

Shape (one document per host, authoritative: anything not in it is removed)::

    NetworkState
      UnderlayIP, UnderlayDev          this host's advertise address (VXLAN local) and, optionally, device
      GatewayBridgeSubnet              the local egress bridge's subnet (Docker's docker_gwbridge)
      Networks[]   ID Name VNI Subnet Gateway HostGatewayIP MTU Internal Attachable Ingress Encrypted Keys[]
      Peers[]      NetworkID IP MacAddress UnderlayIP Names[]     (remote containers and remote host gateways)
      Services[]   ID Name Aliases[] EndpointMode VirtualIPs[{NetworkID, Addr}] Ports[] Backends[] LocalOnly
                   NetworkAliases{network id: [alias]}   (--network name=NET,alias=A: more names, per network)
                   Ports[]    Protocol TargetPort PublishedPort PublishMode (ingress|host)
                   Backends[] TaskID NodeIP Healthy Addresses{network id: ip}

MAC addresses follow Docker: ``02:42:`` and the four bytes of the IPv4 address (``mac_from_ip``); a
peer without ``MacAddress`` gets that one, and each host's overlay bridge uses the MAC of its
``HostGatewayIP``, so the manager can describe remote gateways without asking the host.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from agent_runtime.errors import InvalidArgument
from agent_runtime.spec import from_json, to_json

VXLAN_OVERHEAD = 50
MAX_VNI = (1 << 24) - 1
DEFAULT_GATEWAY_BRIDGE_SUBNET = "172.18.0.0/16"  # Docker's docker_gwbridge
MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,252})$")
PROTOCOLS = ("tcp", "udp")
PUBLISH_MODES = ("ingress", "host")
ENDPOINT_MODES = ("vip", "dnsrr")


def mac_from_ip(ip: str) -> str:
    """Docker's MAC for an IPv4 address: 02:42 then the address bytes (198.18.0.5 -> 02:42:c6:12:00:05)."""
    raw = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in raw)


@dataclass
class EncryptionKey:
    """One key of an encrypted overlay's keyring (Swarm's NetworkBootstrapKeys): hex key, SPI, age."""

    key: str
    spi: int = field(default=0, metadata={"json": "SPI"})
    lamport_time: int = 0


@dataclass
class Network:
    """An overlay network as this host needs it. ``mtu`` 0 means the underlay's MTU minus 50."""

    id: str = field(metadata={"json": "ID"})
    name: str
    vni: int = field(metadata={"json": "VNI"})
    subnet: str
    host_gateway_ip: str = field(default="", metadata={"json": "HostGatewayIP"})
    gateway: str = ""
    mtu: int = field(default=0, metadata={"json": "MTU"})
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    encrypted: bool = False
    keys: list[EncryptionKey] = field(default_factory=list)

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.subnet).prefixlen


@dataclass
class Peer:
    """A remote endpoint on a network: a container or another host's gateway, behind ``underlay_ip``."""

    network_id: str = field(metadata={"json": "NetworkID"})
    ip: str = field(metadata={"json": "IP"})
    underlay_ip: str = field(metadata={"json": "UnderlayIP"})
    mac_address: str = ""
    names: list[str] = field(default_factory=list)

    @property
    def mac(self) -> str:
        return self.mac_address.lower() or mac_from_ip(self.ip)


@dataclass
class PortConfig:
    """A published port (Docker's EndpointSpec.Ports entry)."""

    target_port: int
    published_port: int
    protocol: str = "tcp"
    publish_mode: str = "ingress"


@dataclass
class VirtualIP:
    """A service's VIP on one network; ``addr`` is an address, with or without ``/prefix``."""

    network_id: str = field(metadata={"json": "NetworkID"})
    addr: str

    @property
    def ip(self) -> str:
        return self.addr.split("/")[0]


@dataclass
class Backend:
    """One task of a service: its address on each network, its node and whether it may get traffic."""

    task_id: str = field(metadata={"json": "TaskID"})
    node_ip: str = field(metadata={"json": "NodeIP"})
    addresses: dict[str, str] = field(default_factory=dict)
    healthy: bool = True

    def ip_on(self, network_id: str) -> str:
        return self.addresses.get(network_id, "").split("/")[0]


@dataclass
class Service:
    """A service's endpoints. ``aliases`` are extra DNS names (the stack-local name, ``web`` for
    ``mystack_web``). ``local_only`` sends ingress traffic only to this host's backends, without
    SNAT, so they see the client's address (Kubernetes' externalTrafficPolicy: Local)."""

    id: str = field(metadata={"json": "ID"})
    name: str
    aliases: list[str] = field(default_factory=list)
    endpoint_mode: str = "vip"
    virtual_ips: list[VirtualIP] = field(default_factory=list, metadata={"json": "VirtualIPs"})
    ports: list[PortConfig] = field(default_factory=list)
    backends: list[Backend] = field(default_factory=list)
    local_only: bool = False
    network_aliases: dict[str, list[str]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [self.name] + [a for a in self.aliases if a != self.name]

    def names_on(self, network_id: str) -> list[str]:
        """Its names on one network: ``names()`` and that network's aliases."""
        own = self.names()
        return own + [a for a in self.network_aliases.get(network_id, ()) if a not in own]

    def healthy(self) -> list[Backend]:
        return [b for b in self.backends if b.healthy]


@dataclass
class NetworkState:
    """Everything the host's data plane must hold; applied idempotently by ``network_sync``."""

    underlay_ip: str = field(default="", metadata={"json": "UnderlayIP"})
    underlay_dev: str = ""
    gateway_bridge_subnet: str = DEFAULT_GATEWAY_BRIDGE_SUBNET
    networks: list[Network] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    # every node's underlay address: containers reach them only through published ports
    node_ips: list[str] = field(default_factory=list, metadata={"json": "NodeIPs"})

    def to_json(self) -> dict:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Any) -> "NetworkState":
        return from_json(cls, data, "NetworkState")

    def network(self, network_id: str) -> Network | None:
        return next((n for n in self.networks if n.id == network_id), None)

    def ingress_network(self) -> Network | None:
        return next((n for n in self.networks if n.ingress), None)


# validation ------------------------------------------------------------------------------------
def _ipv4(value: str, where: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise InvalidArgument(f"{where}: {value!r} is not an IPv4 address") from None


def _subnet(value: str, where: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise InvalidArgument(f"{where}: {value!r} is not an IPv4 subnet ({exc})") from None


def _in(ip: str, net: ipaddress.IPv4Network, where: str) -> ipaddress.IPv4Address:
    addr = _ipv4(ip.split("/")[0], where)
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        raise InvalidArgument(f"{where}: {addr} is not a host address of {net}")
    return addr


def _port(value: int, where: str) -> None:
    if not 1 <= value <= 65535:
        raise InvalidArgument(f"{where}: port {value} is outside 1-65535")


def _validate_networks(state: NetworkState) -> dict[str, ipaddress.IPv4Network]:
    subnets: dict[str, ipaddress.IPv4Network] = {}
    vnis: dict[int, str] = {}
    gw = _subnet(state.gateway_bridge_subnet, "NetworkState.GatewayBridgeSubnet")
    if gw.num_addresses < 4:
        raise InvalidArgument("NetworkState.GatewayBridgeSubnet: needs room for a gateway and containers")
    for i, n in enumerate(state.networks):
        where = f"Networks[{i}] ({n.name or n.id})"
        if not n.id or n.id in subnets:
            raise InvalidArgument(f"{where}.ID: missing or duplicate network id {n.id!r}")
        if not 1 <= n.vni <= MAX_VNI or n.vni in vnis:
            raise InvalidArgument(f"{where}.VNI: {n.vni} is outside 1-{MAX_VNI} or already used by {vnis.get(n.vni)}")
        net = _subnet(n.subnet, f"{where}.Subnet")
        for other_id, other in subnets.items():
            if net.overlaps(other):
                raise InvalidArgument(f"{where}.Subnet: {net} overlaps network {other_id}'s {other}")
        if net.overlaps(gw):
            raise InvalidArgument(f"{where}.Subnet: {net} overlaps the gateway bridge subnet {gw}")
        if not n.host_gateway_ip:
            raise InvalidArgument(f"{where}.HostGatewayIP: required (a unique per-host address in {net})")
        _in(n.host_gateway_ip, net, f"{where}.HostGatewayIP")
        if n.gateway:
            _in(n.gateway, net, f"{where}.Gateway")
        if n.mtu and not 576 <= n.mtu <= 65535:
            raise InvalidArgument(f"{where}.MTU: {n.mtu} is outside 576-65535")
        subnets[n.id] = net
        vnis[n.vni] = n.id
    ingress = [n.id for n in state.networks if n.ingress]
    if len(ingress) > 1:
        raise InvalidArgument(f"Networks: more than one ingress network ({', '.join(ingress)})")
    return subnets


def _validate_services(state: NetworkState, subnets: dict[str, ipaddress.IPv4Network]) -> None:
    names: dict[str, str] = {}
    published: dict[tuple[str, int], str] = {}
    for i, s in enumerate(state.services):
        where = f"Services[{i}] ({s.name})"
        for name in s.names():
            if not NAME_RE.match(name):
                raise InvalidArgument(f"{where}: {name!r} is not a valid DNS name")
            if names.setdefault(name.lower(), s.id) != s.id:
                raise InvalidArgument(f"{where}: name {name!r} is already used by service {names[name.lower()]}")
        if s.endpoint_mode not in ENDPOINT_MODES:
            raise InvalidArgument(f"{where}.EndpointMode: {s.endpoint_mode!r} is not vip or dnsrr")
        for net_id, aliases in s.network_aliases.items():
            if net_id not in subnets:
                raise InvalidArgument(f"{where}.NetworkAliases: unknown network {net_id!r}")
            for alias in aliases:
                if not NAME_RE.match(alias):
                    raise InvalidArgument(f"{where}.NetworkAliases[{net_id}]: {alias!r} is not a valid DNS name")
        for j, vip in enumerate(s.virtual_ips):
            if vip.network_id not in subnets:
                raise InvalidArgument(f"{where}.VirtualIPs[{j}].NetworkID: unknown network {vip.network_id!r}")
            _in(vip.addr, subnets[vip.network_id], f"{where}.VirtualIPs[{j}].Addr")
        for j, p in enumerate(s.ports):
            pw = f"{where}.Ports[{j}]"
            if p.protocol not in PROTOCOLS:
                raise InvalidArgument(f"{pw}.Protocol: {p.protocol!r} is not tcp or udp")
            if p.publish_mode not in PUBLISH_MODES:
                raise InvalidArgument(f"{pw}.PublishMode: {p.publish_mode!r} is not ingress or host")
            _port(p.target_port, f"{pw}.TargetPort")
            _port(p.published_port, f"{pw}.PublishedPort")
            key = (p.protocol, p.published_port)
            if published.setdefault(key, s.name) != s.name:
                raise InvalidArgument(f"{pw}: {p.published_port}/{p.protocol} is already published by "
                                      f"service {published[key]}")
            if p.publish_mode == "ingress" and state.ingress_network() is None:
                raise InvalidArgument(f"{pw}: an ingress-mode port needs a network with Ingress set")
        for j, b in enumerate(s.backends):
            _ipv4(b.node_ip, f"{where}.Backends[{j}].NodeIP")
            for net_id, addr in b.addresses.items():
                if net_id not in subnets:
                    raise InvalidArgument(f"{where}.Backends[{j}].Addresses: unknown network {net_id!r}")
                _in(addr, subnets[net_id], f"{where}.Backends[{j}].Addresses[{net_id}]")


def validate_state(state: NetworkState) -> None:
    """Check a whole NetworkState; raise InvalidArgument naming the first bad field. No I/O."""
    _ipv4(state.underlay_ip, "NetworkState.UnderlayIP")
    for i, ip in enumerate(state.node_ips):
        _ipv4(ip, f"NetworkState.NodeIPs[{i}]")
    subnets = _validate_networks(state)
    for i, p in enumerate(state.peers):
        where = f"Peers[{i}]"
        if p.network_id not in subnets:
            raise InvalidArgument(f"{where}.NetworkID: unknown network {p.network_id!r}")
        _in(p.ip, subnets[p.network_id], f"{where}.IP")
        _ipv4(p.underlay_ip, f"{where}.UnderlayIP")
        if p.mac_address and not MAC_RE.match(p.mac_address.lower()):
            raise InvalidArgument(f"{where}.MacAddress: {p.mac_address!r} is not a MAC address")
    _validate_services(state, subnets)
