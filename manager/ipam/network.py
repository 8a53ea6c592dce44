"""The network allocator: subnets and VNIs for networks, VIPs for services, IPs for tasks and nodes.

`NetworkAllocator` is the manager's IPAM, in the shape of SwarmKit's network allocator. It holds the
allocation state in memory and hands back protobuf objects (copies) with the allocation filled in;
the caller writes them to the store. When a store write fails, the caller releases what it was
given (or calls `restore` from the store again).

Invariants, checked by tests/property/test_allocator_properties.py:
- no two networks hold overlapping subnets or the same VNI;
- no address is held twice within a network, and the network, broadcast and gateway addresses of
  each subnet are never handed out;
- every operation either succeeds completely or raises and leaves the state as it was;
- `restore(networks, services, tasks, nodes)` from the objects this allocator produced rebuilds
  the same allocation state, whatever order the objects come in.

Who holds addresses: a service one virtual IP per attached network (none in dnsrr mode; the ingress
network too when it publishes a port in ingress mode), a task one IP per attached network, a node
one "host gateway" IP per network (the unique per-host source address the data plane SNATs to).
Tasks that are dead (desired and observed state both past RUNNING) hold nothing, as in SwarmKit.

No I/O; not thread-safe: call it from the one loop that owns it (the leader's allocator component).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from manager.ipam.addresses import AddressError, Owner, SubnetAddresses
from manager.ipam.errors import (
    AllocatorError, InvalidEndpoint, InvalidNetworkSpec, NetworkInUse, SubnetExhausted,
    UnknownNetwork,
)
from manager.ipam.pools import DEFAULT_ADDR_POOLS, DEFAULT_SUBNET_SIZE, SubnetPool, parse_subnet
from manager.ipam.vni import VNIAllocator, requested_vni
from proto import objects_pb2

log = logging.getLogger(__name__)

OVERLAY_DRIVER = "overlay"
_INGRESS = objects_pb2.PortConfig.PublishMode.INGRESS
_DNSRR = objects_pb2.EndpointSpec.ResolutionMode.DNSRR
_RUNNING = objects_pb2.RUNNING     # not objects_pb2.TaskState.RUNNING: a Python-level lookup per call


def task_holds_addresses(task: objects_pb2.Task) -> bool:
    """Whether a task keeps its network addresses: false once both its desired and its observed
    state are past RUNNING (SwarmKit's `taskDead`)."""
    return not (task.desired_state > _RUNNING and task.status.state > _RUNNING)


def is_attachment(task: objects_pb2.Task) -> bool:
    """Whether ``task`` stands for a one-off container's network attachment (no service)."""
    return task.spec.HasField("attachment")


def network_label(network_id: str, name: str) -> str:
    """'network "backend" (id)' — how messages name a network."""
    return f'network "{name}" ({network_id})' if name else f"network {network_id}"


@dataclass
class _Network:
    id: str
    name: str
    ingress: bool
    vni: int
    subnets: list[SubnetAddresses]

    @property
    def label(self) -> str:
        return network_label(self.id, self.name)

    def subnet_of(self, address: ipaddress.IPv4Address) -> SubnetAddresses | None:
        for subnet in self.subnets:
            if subnet.contains(address):
                return subnet
        return None

    def cidr(self, address: ipaddress.IPv4Address) -> str:
        subnet = self.subnet_of(address)
        assert subnet is not None
        return f"{address}/{subnet.subnet.prefixlen}"


@dataclass(frozen=True)
class AllocationSnapshot:
    """The whole allocation state as plain values; two allocators agree iff their snapshots are equal.

    `networks` maps network id to (vni, ((subnet, gateway), ...)); `addresses` maps network id to
    {address: (owner kind, owner id)}.
    """

    networks: dict[str, tuple[int, tuple[tuple[str, str], ...]]]
    addresses: dict[str, dict[str, tuple[str, str]]]


@dataclass
class RestoreReport:
    """What `restore` could not take over from the store, so the caller can allocate it afresh.

    Empty lists mean the store's allocations were adopted as they are.
    """

    unallocated_networks: list[str] = field(default_factory=list)
    services_to_allocate: list[str] = field(default_factory=list)
    tasks_to_allocate: list[str] = field(default_factory=list)
    nodes_to_allocate: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class NetworkAllocator:
    """IPAM for the cluster's overlay networks (see the module docstring for its invariants)."""

    def __init__(self, default_addr_pools: Sequence[str] = DEFAULT_ADDR_POOLS,
                 subnet_size: int = DEFAULT_SUBNET_SIZE) -> None:
        """Raise InvalidNetworkSpec when the pools or subnet size are unusable."""
        self._pool = SubnetPool(default_addr_pools, subnet_size)
        self._vnis = VNIAllocator()
        self._networks: dict[str, _Network] = {}
        # holder id -> network id -> address, one table per kind of holder
        self._held: dict[str, dict[str, dict[str, ipaddress.IPv4Address]]] = {
            "service": {}, "task": {}, "node": {}}

    @classmethod
    def from_cluster(cls, cluster: objects_pb2.Cluster | objects_pb2.ClusterSpec) -> NetworkAllocator:
        """An allocator using the cluster spec's default_addr_pool and subnet_size (Docker's
        defaults, 10.0.0.0/8 in /24s, where they are unset)."""
        spec = cluster.spec if isinstance(cluster, objects_pb2.Cluster) else cluster
        return cls(tuple(spec.default_addr_pool) or DEFAULT_ADDR_POOLS,
                   spec.subnet_size or DEFAULT_SUBNET_SIZE)

    @property
    def default_addr_pools(self) -> tuple[str, ...]:
        return self._pool.pools

    @property
    def subnet_size(self) -> int:
        return self._pool.subnet_size

    # ---- networks ------------------------------------------------------------------------------

    def allocate_network(self, network: objects_pb2.Network) -> objects_pb2.Network:
        """Give `network` its subnets, gateways and VNI; return a copy with `vni` and `ipam` set.

        User-given subnets (spec.ipam) are validated: IPv4 CIDR with host bits clear, no overlap
        with any other network, gateway a host address inside its subnet (default: the first
        one). With no spec.ipam, one subnet is carved from the default pools. A VNI may be chosen
        with Docker's `com.docker.network.driver.overlay.vxlanid_list` option. Calling it again
        for an allocated network returns the existing allocation. Raises InvalidNetworkSpec,
        SubnetOverlap, AddressPoolExhausted or VNIExhausted with the state unchanged.
        """
        if not network.id:
            raise InvalidNetworkSpec("cannot allocate a network without an id")
        if network.id in self._networks:
            return self._network_object(network)
        spec = network.spec
        label = network_label(network.id, spec.annotations.name)
        if spec.driver not in ("", OVERLAY_DRIVER):
            raise InvalidNetworkSpec(
                f"{label}: driver {spec.driver!r} is not supported for cluster networks; use overlay")
        if spec.ingress:
            self._refuse_second_ingress(label)
        wanted_vni = requested_vni(dict(spec.driver_opts), label)
        configs = list(spec.ipam) or [objects_pb2.IPAMConfig()]
        taken: list[ipaddress.IPv4Network] = []
        subnets: list[SubnetAddresses] = []
        try:
            for config in configs:
                if config.subnet:
                    subnet = parse_subnet(config.subnet, f"{label}: subnet")
                    self._pool.reserve(subnet, label)
                elif config.gateway:
                    raise InvalidNetworkSpec(f"{label}: gateway {config.gateway} given without a subnet")
                else:
                    subnet = self._pool.carve(label)
                taken.append(subnet)
                gateway = _gateway(subnet, config.gateway, label)
                subnets.append(SubnetAddresses(subnet, gateway))
            if wanted_vni is None:
                vni = self._vnis.allocate(label)
            else:
                self._vnis.reserve(wanted_vni, label)
                vni = wanted_vni
        except AllocatorError:
            self._pool.release(taken)
            raise
        self._networks[network.id] = _Network(network.id, spec.annotations.name, spec.ingress,
                                              vni, subnets)
        log.info("allocated %s: vni %d, subnets %s", label, vni,
                 ", ".join(str(s.subnet) for s in subnets))
        return self._network_object(network)

    def release_network(self, network_id: str) -> None:
        """Free a network's subnets, VNI and node IPs. Releasing an unknown network does nothing.

        Raises NetworkInUse, naming holders, while any service or task holds an address on it.
        """
        net = self._networks.get(network_id)
        if net is None:
            return
        users = [f"{kind} {holder}" for kind in ("service", "task")
                 for holder, nets in sorted(self._held[kind].items()) if network_id in nets]
        if users:
            shown = ", ".join(users[:3]) + (f" and {len(users) - 3} more" if len(users) > 3 else "")
            raise NetworkInUse(f"{net.label} is in use by {shown}")
        for nets in self._held["node"].values():
            nets.pop(network_id, None)
        self._pool.release(s.subnet for s in net.subnets)
        self._vnis.release(net.vni)
        del self._networks[network_id]
        log.info("released %s", net.label)

    def is_network_allocated(self, network_id: str) -> bool:
        return network_id in self._networks

    def ingress_network_id(self) -> str | None:
        """The id of the allocated ingress network, if there is one."""
        return next((n.id for n in self._networks.values() if n.ingress), None)

    # ---- services ------------------------------------------------------------------------------

    def allocate_service(self, service: objects_pb2.Service) -> objects_pb2.Endpoint:
        """Give a service one virtual IP on each network it attaches to; return its Endpoint.

        Networks are spec.task.networks targets (network ids, or names known to the allocator),
        preceded by the ingress network when a port is published in ingress mode. Endpoint mode
        dnsrr gets no VIPs (and may not publish ingress ports). VIPs the service already holds are
        kept; VIPs on networks it left are released. Raises UnknownNetwork, InvalidEndpoint or
        SubnetExhausted (naming the network and the service) with the state unchanged.
        """
        spec = service.spec
        owner = Owner("service", service.id, spec.annotations.name or service.id)
        ingress_ports = any(p.publish_mode == _INGRESS for p in spec.endpoint.ports)
        if spec.endpoint.mode == _DNSRR:
            if ingress_ports:
                raise InvalidEndpoint(
                    f"{owner.describe()}: ports published in ingress mode need endpoint mode vip, "
                    f"not dnsrr; publish them with mode=host instead")
            wanted: list[_Network] = []
        else:
            wanted = self._wanted_networks(owner, spec.task.networks, ingress_ports)
        held = self._assign(owner, wanted, "a virtual IP")
        endpoint = objects_pb2.Endpoint()
        endpoint.spec.CopyFrom(spec.endpoint)
        endpoint.ports.extend(spec.endpoint.ports)
        for net in wanted:
            endpoint.virtual_ips.add(network_id=net.id, addr=net.cidr(held[net.id]))
        return endpoint

    def release_service(self, service_id: str) -> None:
        """Free every VIP of a service; an unknown service is a no-op."""
        self._release_holder("service", service_id)

    # ---- tasks ---------------------------------------------------------------------------------

    def allocate_task(self, task: objects_pb2.Task,
                      service: objects_pb2.Service | None = None) -> list[objects_pb2.NetworkAttachment]:
        """Give a task one IP on each network it attaches to; return its network attachments.

        Networks are task.spec.networks targets, preceded by the ingress network when the service
        (or, without `service`, task.endpoint) publishes a port in ingress mode. Addresses the
        task already holds are kept. Raises UnknownNetwork or SubnetExhausted (naming the network
        and the task) with the state unchanged.
        """
        owner = Owner("task", task.id, _task_label(task, service))
        endpoint_spec = service.spec.endpoint if service is not None else task.endpoint.spec
        # Host-mode ports need the task on a network too (its egress veth carries them): with
        # no network of its own, a task that publishes any port joins ingress, as in Swarm.
        ingress_ports = any(p.publish_mode == _INGRESS for p in endpoint_spec.ports) or (
            bool(endpoint_spec.ports) and not task.spec.networks)
        wanted = self._wanted_networks(owner, task.spec.networks, ingress_ports)
        requested = {self._resolve(c.target, owner).id: c.addresses[0] for c in task.spec.networks if c.addresses}
        held = self._assign(owner, wanted, "an IP address", requested)
        aliases = {c.target: list(c.aliases) for c in task.spec.networks}
        attachments = []
        for net in wanted:
            attachment = objects_pb2.NetworkAttachment(network_id=net.id,
                                                       addresses=[net.cidr(held[net.id])])
            attachment.aliases.extend(aliases.get(net.id) or aliases.get(net.name) or [])
            attachments.append(attachment)
        return attachments

    def release_task(self, task_id: str) -> None:
        """Free every IP of a task; an unknown task is a no-op."""
        self._release_holder("task", task_id)

    # ---- nodes ---------------------------------------------------------------------------------

    def allocate_node_ip(self, network: str | objects_pb2.Network, node_id: str,
                         node_name: str = "") -> str:
        """The node's "host gateway" address on `network` (id, name or Network), as "addr/prefix".

        One per node per network, unique in the cluster: the data plane SNATs to it on that
        overlay. Idempotent. Raises UnknownNetwork or SubnetExhausted naming the node.
        """
        network_ref = network.id if isinstance(network, objects_pb2.Network) else network
        owner = Owner("node", node_id, node_name or node_id)
        net = self._resolve(network_ref, owner)
        held = dict(self._held["node"].get(node_id, {}))
        if net.id in held:
            return net.cidr(held[net.id])
        address = self._allocate_in(net, owner, "a host gateway IP")
        self._held["node"].setdefault(node_id, {})[net.id] = address
        return net.cidr(address)

    def release_node(self, node_id: str) -> None:
        """Free the node's addresses on every network (the node left the cluster)."""
        self._release_holder("node", node_id)

    # ---- restore -------------------------------------------------------------------------------

    def restore(self, networks: Iterable[objects_pb2.Network],
                services: Iterable[objects_pb2.Service],
                tasks: Iterable[objects_pb2.Task],
                nodes: Iterable[objects_pb2.Node] = ()) -> RestoreReport:
        """Forget everything and rebuild the state from the store's objects (a new leader's start).

        Deterministic: objects are taken oldest first (meta.created_at, then id), whatever order
        they come in, so on a conflict the older holder keeps its allocation. Networks without
        an allocation, and objects whose addresses conflict or fall outside their network, are
        listed in the report for the caller to allocate afresh. Dead tasks hold nothing.
        """
        self._pool.clear()
        self._vnis.clear()
        self._networks.clear()
        for table in self._held.values():
            table.clear()
        report = RestoreReport()
        for network in _oldest_first(networks):
            if network.vni == 0 or not network.ipam:
                report.unallocated_networks.append(network.id)
                continue
            try:
                self._adopt_network(network)
            except AllocatorError as exc:
                report.problems.append(str(exc))
                report.unallocated_networks.append(network.id)
        for service in _oldest_first(services):
            owner = Owner("service", service.id, service.spec.annotations.name or service.id)
            pairs = [(v.network_id, v.addr) for v in service.endpoint.virtual_ips]
            if not self._adopt_addresses(owner, pairs, report):
                report.services_to_allocate.append(service.id)
        for task in _oldest_first(tasks):
            if not task_holds_addresses(task):
                continue
            owner = Owner("task", task.id, _task_label(task, None))
            pairs = [(a.network_id, addr) for a in task.networks for addr in a.addresses]
            if not self._adopt_addresses(owner, pairs, report):
                report.tasks_to_allocate.append(task.id)
        for node in _oldest_first(nodes):
            owner = Owner("node", node.id, node.description.hostname or node.id)
            pairs = [(a.network_id, addr) for a in node.attachments for addr in a.addresses]
            if not self._adopt_addresses(owner, pairs, report):
                report.nodes_to_allocate.append(node.id)
        log.info("restored %d networks; %d problems", len(self._networks), len(report.problems))
        return report

    # ---- introspection -------------------------------------------------------------------------

    def snapshot(self) -> AllocationSnapshot:
        """The allocation state as plain values (see AllocationSnapshot)."""
        networks = {
            n.id: (n.vni, tuple((str(s.subnet), str(s.gateway)) for s in n.subnets))
            for n in self._networks.values()}
        addresses = {
            n.id: {str(a): (o.kind, o.id) for s in n.subnets for a, o in s.holders().items()}
            for n in self._networks.values()}
        return AllocationSnapshot(networks, addresses)

    def free_addresses(self, network_id: str) -> frozenset[str]:
        """Every address of the network that could be handed out now (enumerates: small subnets)."""
        net = self._networks[network_id]
        return frozenset(str(a) for s in net.subnets for a in s.free_addresses())

    # ---- internals -----------------------------------------------------------------------------

    def _network_object(self, network: objects_pb2.Network) -> objects_pb2.Network:
        net = self._networks[network.id]
        result = objects_pb2.Network()
        result.CopyFrom(network)
        result.vni = net.vni
        del result.ipam[:]
        for subnet in net.subnets:
            result.ipam.add(subnet=str(subnet.subnet), gateway=str(subnet.gateway))
        return result

    def _refuse_second_ingress(self, label: str) -> None:
        existing = self.ingress_network_id()
        if existing is not None:
            raise InvalidNetworkSpec(
                f"{label}: the cluster already has an ingress network, "
                f"{self._networks[existing].label}; remove it first")

    def _adopt_network(self, network: objects_pb2.Network) -> None:
        label = network_label(network.id, network.spec.annotations.name)
        if network.spec.ingress:
            self._refuse_second_ingress(label)
        taken: list[ipaddress.IPv4Network] = []
        subnets: list[SubnetAddresses] = []
        try:
            for config in network.ipam:
                subnet = parse_subnet(config.subnet, f"{label}: stored subnet")
                self._pool.reserve(subnet, label)
                taken.append(subnet)
                subnets.append(SubnetAddresses(subnet, _gateway(subnet, config.gateway, label)))
            self._vnis.reserve(network.vni, label)
        except AllocatorError:
            self._pool.release(taken)
            raise
        self._networks[network.id] = _Network(network.id, network.spec.annotations.name,
                                              network.spec.ingress, network.vni, subnets)

    def _adopt_addresses(self, owner: Owner, pairs: list[tuple[str, str]],
                         report: RestoreReport) -> bool:
        """Reserve stored addresses for `owner`; record problems; say whether all were taken."""
        complete = True
        for network_id, text in pairs:
            net = self._networks.get(network_id)
            if net is None:
                report.problems.append(
                    f"{owner.describe()} has an address on network {network_id}, "
                    f"which is not allocated")
                complete = False
                continue
            try:
                address = ipaddress.ip_interface(text).ip
                subnet = net.subnet_of(address) if address.version == 4 else None
                if subnet is None:
                    raise AddressError(f"{text} is outside the subnets of {net.label}")
                if network_id in self._held[owner.kind].get(owner.id, {}):
                    raise AddressError(f"it already holds an address on {net.label}")
                subnet.reserve(address, owner)
            except (ValueError, AddressError) as exc:
                report.problems.append(f"{owner.describe()}: cannot keep address {text}: {exc}")
                complete = False
                continue
            self._held[owner.kind].setdefault(owner.id, {})[network_id] = address
        return complete

    def _resolve(self, target: str, owner: Owner) -> _Network:
        net = self._networks.get(target)
        if net is not None:
            return net
        named = [n for n in self._networks.values() if n.name == target]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise UnknownNetwork(
                f"{owner.describe()}: network name {target!r} is ambiguous "
                f"({', '.join(sorted(n.id for n in named))}); use the network id")
        raise UnknownNetwork(f"{owner.describe()}: network {target!r} does not exist or is not allocated")

    def _wanted_networks(self, owner: Owner, configs: Iterable[objects_pb2.NetworkAttachmentConfig],
                         with_ingress: bool) -> list[_Network]:
        wanted: list[_Network] = []
        if with_ingress:
            ingress_id = self.ingress_network_id()
            if ingress_id is None:
                raise UnknownNetwork(
                    f"{owner.describe()} publishes ports in ingress mode, but the cluster has "
                    f"no ingress network")
            wanted.append(self._networks[ingress_id])
        for config in configs:
            net = self._resolve(config.target, owner)
            if all(net.id != w.id for w in wanted):
                wanted.append(net)
        return wanted

    def _assign(self, owner: Owner, wanted: list[_Network], purpose: str,
                requested: dict[str, str] | None = None) -> dict[str, ipaddress.IPv4Address]:
        """Make `owner` hold exactly one address on each wanted network (``requested``: the
        address to take on a network, Docker's --ip); all or nothing."""
        current = self._held[owner.kind].get(owner.id, {})
        result: dict[str, ipaddress.IPv4Address] = {}
        fresh: list[tuple[_Network, ipaddress.IPv4Address]] = []
        try:
            for net in wanted:
                if net.id in current:
                    result[net.id] = current[net.id]
                else:
                    if (requested or {}).get(net.id):
                        address = self._reserve_in(net, owner, requested[net.id])
                    else:
                        address = self._allocate_in(net, owner, purpose)
                    fresh.append((net, address))
                    result[net.id] = address
        except AllocatorError:
            for net, address in fresh:
                self._free(net.id, address, owner)
            raise
        for network_id, address in current.items():
            if network_id not in result:
                self._free(network_id, address, owner)
        if result:
            self._held[owner.kind][owner.id] = result
        else:
            self._held[owner.kind].pop(owner.id, None)
        return result

    def _reserve_in(self, net: _Network, owner: Owner, text: str) -> ipaddress.IPv4Address:
        """The requested address ``text`` on ``net`` for ``owner``; InvalidEndpoint names why not."""
        try:
            address = ipaddress.IPv4Address(text.split("/")[0])
        except ValueError:
            raise InvalidEndpoint(f"{owner.describe()}: {text!r} is not an IPv4 address") from None
        subnet = net.subnet_of(address)
        if subnet is None:
            raise InvalidEndpoint(f"{owner.describe()}: no configured subnet contains the IP address {address} "
                                  f"on {net.label}")
        try:
            subnet.reserve(address, owner)
        except AddressError as err:
            raise InvalidEndpoint(f"{owner.describe()}: Address already in use: {err}") from None
        return address

    def _allocate_in(self, net: _Network, owner: Owner, purpose: str) -> ipaddress.IPv4Address:
        for subnet in net.subnets:
            address = subnet.allocate(owner)
            if address is not None:
                return address
        log.warning("%s has no free address for %s", net.label, owner.describe())
        raise SubnetExhausted(
            net.label, owner.describe(), purpose, tuple(str(s.subnet) for s in net.subnets),
            sum(s.in_use for s in net.subnets), sum(s.capacity for s in net.subnets))

    def _free(self, network_id: str, address: ipaddress.IPv4Address, owner: Owner) -> None:
        net = self._networks.get(network_id)
        subnet = net.subnet_of(address) if net else None
        if subnet is not None:
            subnet.release(address, owner)

    def _release_holder(self, kind: str, holder_id: str) -> None:
        nets = self._held[kind].pop(holder_id, {})
        for network_id, address in nets.items():
            self._free(network_id, address, Owner(kind, holder_id))  # type: ignore[arg-type]


def _gateway(subnet: ipaddress.IPv4Network, text: str, label: str) -> ipaddress.IPv4Address:
    """The gateway of `subnet`: `text` validated, or the first host address when empty."""
    if not text:
        return subnet.network_address + 1
    try:
        gateway = ipaddress.ip_address(text.strip())
    except ValueError as exc:
        raise InvalidNetworkSpec(f"{label}: gateway {text!r} is not a valid IP address") from exc
    if gateway not in subnet:
        raise InvalidNetworkSpec(f"{label}: gateway {gateway} is not inside subnet {subnet}")
    if gateway in (subnet.network_address, subnet.broadcast_address):
        raise InvalidNetworkSpec(
            f"{label}: gateway {gateway} is the network or broadcast address of {subnet}")
    return gateway  # type: ignore[return-value]


def _task_label(task: objects_pb2.Task, service: objects_pb2.Service | None) -> str:
    """Swarm's task name: "web.2" for a replica, "web.<node>" for a global task, else the id."""
    if is_attachment(task):
        return f"container {task.spec.attachment.container_id or task.id}"
    if task.annotations.name:
        return task.annotations.name
    if service is not None and service.spec.annotations.name:
        suffix = str(task.slot) if task.slot else task.node_id
        if suffix:
            return f"{service.spec.annotations.name}.{suffix}"
    return task.id


def _oldest_first(objects: Iterable) -> list:
    return sorted(objects, key=lambda o: (o.meta.created_at, o.id))
