"""The data plane one node must hold, computed from the store: ``network_state_for(view, node_id)``.

The result is shoal-runtimed's ``NetworkState`` document (agent_runtime/network/model.py) built as
plain dicts — the manager never imports agent_runtime — and sent whole, as JSON (``encode``), in
``AssignmentsMessage.network_state`` whenever its bytes change. The worker hands it to
``network_sync`` unchanged, so everything here must pass ``validate_state``: entries that would
not (an address outside its network's subnet, a port not yet published, a name another service
already claims) are left out rather than sent.

What a node is told:
- ``UnderlayIP``: its ``status.addr`` (the address its session came from), else the host of its
  ``description.grpc_addr``.
- ``Networks``: each network on which a task of this node has an address and may have a container
  (assigned, status not past RUNNING — so a draining task keeps its network until it has stopped),
  plus the ingress network while any service publishes a port in ingress mode (the routing mesh
  answers on every ready node). Each carries this node's host gateway IP from
  ``node.attachments``; a network whose gateway IP is not allocated yet is left out until it is.
  A network created with ``--opt encrypted`` also carries the cluster's IPsec keyring as ``Keys``
  (``[{"Key": hex, "SPI": n, "LamportTime": n}]``, oldest first; manager/keymanager.py rotates it),
  so only nodes that carry an encrypted network ever receive the keys; other networks get ``[]``.
- ``Peers``: every remote task address on those networks and every remote node's host gateway IP
  on them, behind that node's underlay address, DOWN nodes included: DOWN says only that the
  node's shoald stopped heartbeating (restarting, upgrading, a slow machine), while its runtimed and
  containers keep running. Skipping them cut the routing mesh of a node whose shoald was restarting
  slowly (on a software-emulated VM): requests it received were balanced to remote backends whose
  replies found no way back to it, and the client timed out. A task of a DOWN node that was
  replaced is ORPHANED (manager/reaper.py), which ends it here and frees its address; live nodes
  are listed first, so a live endpoint wins an address a DOWN node's entry also claims.
- ``Services``: services with a VIP, a backend or a spec'd attachment on those networks, with their
  VIPs, published ports, endpoint mode, the stack-local name as alias
  (``com.docker.stack.namespace=shop`` makes ``shop_web`` answer to ``web`` too), and as backends
  the tasks that should and do run (desired and observed state RUNNING) on a node that is not
  DOWN. A task leaves the backends as soon as its desired state moves past RUNNING, which is what
  lets the worker drain it before stopping its container. ``Healthy`` is false once its health
  check says "unhealthy" (or "starting"). ``LocalOnly`` is set when an ingress port has
  ``traffic_policy`` LOCAL (see ``keeps_client_ip``).
- ``NodeIPs``: every node's underlay address, DOWN or not: the node's runtime lets its containers
  reach them only through published ports (docs/container-security.md).
- One-off containers attached to an attachable network (attachment tasks, ``spec.attachment``)
  count as tasks of their node: the node carries the network, peers learn their address and
  their DNS names (the container name the attachment carries and its aliases).

Pure and deterministic: no I/O, no clock; lists are sorted, so equal views give equal bytes.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from manager.keymanager import ipsec_keys
from manager.state import Kind
from proto import objects_pb2

STACK_NAMESPACE_LABEL = "com.docker.stack.namespace"
MTU_OPTION = "com.docker.network.driver.mtu"
ENCRYPTED_OPTION = "encrypted"
HEALTHY = ("", "healthy")

_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,252})$")  # the runtime's rule for DNS names
_DOWN = objects_pb2.NodeStatus.DOWN
_READY = objects_pb2.NodeStatus.READY
_INGRESS = objects_pb2.PortConfig.INGRESS
_LOCAL_POLICY = objects_pb2.PortConfig.LOCAL
_PROTOCOLS = {objects_pb2.PortConfig.TCP: "tcp", objects_pb2.PortConfig.UDP: "udp"}


@dataclass(frozen=True)
class _Net:
    """A network this node carries: its id, its (first) subnet and its entry in ``Networks``."""

    id: str
    name: str
    subnet: ipaddress.IPv4Network
    entry: dict


def uses_networks(task: objects_pb2.Task) -> bool:
    """Whether ``task`` may have a container attached to its networks: it was assigned and its
    observed state is not past RUNNING (whatever its desired state: a task being stopped keeps its
    network until its container has stopped)."""
    return objects_pb2.ASSIGNED <= task.status.state <= objects_pb2.RUNNING


def is_backend(task: objects_pb2.Task) -> bool:
    """Whether ``task`` should get service traffic: it runs and is meant to keep running."""
    return task.desired_state == objects_pb2.RUNNING and task.status.state == objects_pb2.RUNNING


def underlay_ip(node: objects_pb2.Node) -> str | None:
    """The node's IPv4 underlay address: ``status.addr``, else the host of ``description.grpc_addr``;
    None when neither is a usable (non-loopback, IPv4) address."""
    candidates = [node.status.addr, node.description.grpc_addr.rsplit(":", 1)[0]]
    for text in candidates:
        try:
            address = ipaddress.IPv4Address(text.strip("[]"))
        except ValueError:
            continue
        if not (address.is_loopback or address.is_unspecified):
            return str(address)
    return None


def stack_alias(service: objects_pb2.Service) -> str | None:
    """The stack-local name of a service deployed by a stack (``shop_web`` -> ``web``), else None."""
    namespace = service.spec.annotations.labels.get(STACK_NAMESPACE_LABEL, "")
    name = service.spec.annotations.name
    if namespace and name.startswith(namespace + "_") and len(name) > len(namespace) + 1:
        return name[len(namespace) + 1:]
    return None


def task_container_name(task: objects_pb2.Task) -> str:
    """The name the worker gives the task's container (Docker's SERVICE.SLOT.TASKID, or
    SERVICE.NODEID.TASKID for a global task); worker.executor.task_name computes the same."""
    service = task.annotations.name or task.service_id
    if service.count(".") >= 1 and service.endswith(task.id):
        return service
    slot = str(task.slot) if task.slot else task.node_id
    return f"{service}.{slot}.{task.id}"


def _host_ip(text: str, subnet: ipaddress.IPv4Network) -> str | None:
    """The address in ``text`` ("ip" or "ip/prefix") if it is a host address of ``subnet``."""
    try:
        address = ipaddress.ip_interface(text).ip
    except ValueError:
        return None
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        return None
    return str(address)


def _first_ip(addresses: Iterable[str], subnet: ipaddress.IPv4Network) -> str | None:
    """The first of ``addresses`` that is a host address of ``subnet``, as a bare IP."""
    return next((ip for ip in (_host_ip(a, subnet) for a in addresses) if ip), None)


def _publishes_ingress(service: objects_pb2.Service) -> bool:
    return any(p.publish_mode == _INGRESS for p in _ports_of(service))


def _ports_of(service: objects_pb2.Service) -> list[objects_pb2.PortConfig]:
    return list(service.endpoint.ports) if service.HasField("endpoint") else list(service.spec.endpoint.ports)


def keeps_client_ip(service: objects_pb2.Service) -> bool:
    """Whether the routing mesh must keep clients' source addresses for ``service``: one of its
    ingress ports has ``traffic_policy: local``. The data plane then sends that service's published
    traffic only to backends on the receiving node, without SNAT (a node with no local backend
    does not answer); the policy is per service there, so one local port makes them all local."""
    return any(p.publish_mode == _INGRESS and p.traffic_policy == _LOCAL_POLICY for p in _ports_of(service))


def keyring_entries(cluster: objects_pb2.Cluster | None) -> list[dict]:
    """The cluster's IPsec keys as the runtime's ``Network.Keys`` (agent_runtime/network/model.py
    ``EncryptionKey``): hex key, SPI and Lamport time, oldest first; [] without a cluster."""
    return [{"Key": k.key.hex(), "SPI": k.spi, "LamportTime": k.lamport_time} for k in ipsec_keys(cluster)]


def _network_entry(network: objects_pb2.Network, host_gateway_ip: str, keyring: list[dict]) -> dict:
    ipam = network.ipam[0]
    opts = network.spec.driver_opts
    try:
        mtu = int(opts.get(MTU_OPTION, "0") or 0)
    except ValueError:
        mtu = 0
    if mtu and not 576 <= mtu <= 65535:
        mtu = 0
    return {
        "ID": network.id, "Name": network.spec.annotations.name, "VNI": network.vni,
        "Subnet": ipam.subnet, "Gateway": ipam.gateway, "HostGatewayIP": host_gateway_ip,
        "MTU": mtu, "Internal": network.spec.internal, "Attachable": network.spec.attachable,
        "Ingress": network.spec.ingress, "Encrypted": ENCRYPTED_OPTION in opts,
        "Keys": [dict(k) for k in keyring] if ENCRYPTED_OPTION in opts else [],
    }


def _carried_networks(view, node: objects_pb2.Node, wanted: set[str], keyring: list[dict]) -> dict[str, _Net]:
    """The wanted networks that are allocated and on which this node has a host gateway IP."""
    gateways = {a.network_id: list(a.addresses) for a in node.attachments}
    out: dict[str, _Net] = {}
    for network_id in sorted(wanted):
        network = view.get(Kind.NETWORK, network_id)
        if network is None or not network.vni or not network.ipam:
            continue
        try:
            subnet = ipaddress.IPv4Network(network.ipam[0].subnet, strict=True)
        except ValueError:
            continue
        gateway = _first_ip(gateways.get(network_id, ()), subnet)
        gateway_ok = not network.ipam[0].gateway or _host_ip(network.ipam[0].gateway, subnet)
        if gateway is None or not gateway_ok:
            continue
        out[network_id] = _Net(network_id, network.spec.annotations.name, subnet,
                               _network_entry(network, gateway, keyring))
    return out


class Shared:
    """What every node's network state is computed from, derived once per view (the dispatcher
    keeps one per store version, so a commit that wakes many nodes' streams pays for it once).

    ``tasks_by_network``: tasks that may have a container on a network (``uses_networks``) and an
    address on it, by network id, in task id order; ``services``: the services whose names are
    usable, oldest first, with their aliases; ``service_networks``: per service, the networks its
    VIPs, its tasks' addresses and its spec's attachments (by id) are on. Tasks of services without
    any network never enter: the view's per-service index skips them.
    """

    def __init__(self, view) -> None:
        self.view = view
        self.version = view.version
        self.nodes = sorted(view.nodes(), key=lambda n: n.id)
        self.node_ips = {n.id: ip for n in self.nodes if n.status.state != _DOWN and (ip := underlay_ip(n))}
        # peers: live nodes first, then DOWN ones (see the module docstring)
        self.peer_ips = dict(self.node_ips)
        self.peer_ips.update((n.id, ip) for n in self.nodes if n.id not in self.node_ips and (ip := underlay_ip(n)))
        self.all_node_ips = sorted({ip for n in self.nodes if (ip := underlay_ip(n))})
        self.gateways_by_network: dict[str, list[tuple[str, list[str]]]] = {}
        for node in self.nodes:
            for a in node.attachments:
                self.gateways_by_network.setdefault(a.network_id, []).append((node.id, list(a.addresses)))
        all_services = view.services()
        self.publishes_ingress = any(_publishes_ingress(s) for s in all_services)
        self.ingress_ids = [n.id for n in view.networks() if n.spec.ingress]
        self.keyring = keyring_entries(view.cluster())
        services = []
        seen: set[str] = set()
        for s in sorted(all_services, key=lambda s: (s.meta.created_at, s.id)):
            name = s.spec.annotations.name
            if _NAME_RE.match(name) and name.lower() not in seen:  # the ControlAPI keeps names unique
                seen.add(name.lower())
                services.append(s)
        self.services = services
        self.aliases = _service_names(services)
        # Tasks of services that may use networks, of removed services (still stopping) and
        # attachment tasks (no service); never those of services without any network.
        known = {s.id: s for s in all_services}
        sources = [sid for sid in view.task_service_ids()
                   if sid not in known or _may_use_networks(known[sid])]
        self.tasks_by_network: dict[str, list[objects_pb2.Task]] = {}
        self.tasks_by_service: dict[str, list[objects_pb2.Task]] = {}
        self.service_networks: dict[str, set[str]] = {}
        tasks = [t for sid in sources for t in view.tasks(service_id=sid) if t.networks]
        for task in sorted(tasks, key=lambda t: t.id):
            self.tasks_by_service.setdefault(task.service_id, []).append(task)
            ids = {a.network_id for a in task.networks if a.addresses}
            self.service_networks.setdefault(task.service_id, set()).update(ids)
            if uses_networks(task):
                for network_id in ids:
                    self.tasks_by_network.setdefault(network_id, []).append(task)
        for s in all_services:
            nets = self.service_networks.setdefault(s.id, set())
            nets.update(v.network_id for v in s.endpoint.virtual_ips)
            nets.update(c.target for c in s.spec.task.networks)


def _may_use_networks(service: objects_pb2.Service) -> bool:
    """Whether a task of ``service`` may hold a network address: it attaches networks, publishes
    ports (ingress) or has VIPs (a service that dropped its networks keeps them on older tasks)."""
    return bool(service.spec.task.networks or _ports_of(service) or service.endpoint.virtual_ips
                or service.previous_spec.task.networks)


def carried_network_ids(state: dict | None) -> frozenset[str]:
    """The ids of the networks a network state document carries."""
    return frozenset(n["ID"] for n in state["Networks"]) if state else frozenset()


def _peers(node_id: str, nets: dict[str, _Net], shared: Shared) -> list[dict]:
    """Remote task endpoints and remote host gateways on ``nets``, one entry per (network, ip);
    those of live nodes first claim an address, then those of DOWN nodes."""
    taken = {(n.id, n.entry["HostGatewayIP"]) for n in nets.values()}
    for task in shared.view.tasks(node_id=node_id):  # local endpoints are the runtime's own
        if uses_networks(task):
            for a in task.networks:
                if a.network_id in nets:
                    ip = _first_ip(a.addresses, nets[a.network_id].subnet)
                    if ip:
                        taken.add((a.network_id, ip))
    found: dict[tuple[str, str], dict] = {}

    def add(network_id: str, ip: str, underlay: str, names: list[str]) -> None:
        key = (network_id, ip)
        if key not in taken and key not in found:
            found[key] = {"NetworkID": network_id, "IP": ip, "UnderlayIP": underlay, "MacAddress": "",
                          "Names": names}

    for live in (True, False):
        for network_id in sorted(nets):
            net = nets[network_id]
            for task in shared.tasks_by_network.get(network_id, ()):
                if task.node_id == node_id or task.node_id not in shared.peer_ips \
                        or (task.node_id in shared.node_ips) != live:
                    continue
                for a in task.networks:
                    if a.network_id != network_id:
                        continue
                    ip = _first_ip(a.addresses, net.subnet)
                    if ip:
                        if task.spec.HasField("attachment"):    # a one-off container: its name, its aliases
                            names = [task.spec.attachment.container_id, *a.aliases]
                        else:
                            hostname = task.spec.container.hostname or task.id[:12]
                            names = [task_container_name(task), hostname, task.status.container_id[:12],
                                     *a.aliases]
                        add(a.network_id, ip, shared.peer_ips[task.node_id], list(dict.fromkeys(n for n in names if n)))
        for network_id in sorted(nets):
            net = nets[network_id]
            for other_id, addresses in shared.gateways_by_network.get(network_id, ()):
                if other_id == node_id or other_id not in shared.peer_ips or (other_id in shared.node_ips) != live:
                    continue
                ip = _first_ip(addresses, net.subnet)
                if ip:
                    add(network_id, ip, shared.peer_ips[other_id], [])
    return [found[k] for k in sorted(found, key=lambda k: (k[0], ipaddress.IPv4Address(k[1])))]


def _service_names(services: list[objects_pb2.Service]) -> dict[str, list[str]]:
    """Valid, unambiguous DNS aliases per service id. A service's own name always wins; an alias
    that is another service's name, or that two services would both claim, is dropped."""
    names = {s.spec.annotations.name.lower() for s in services}
    claims: dict[str, set[str]] = {}
    for s in services:
        alias = stack_alias(s)
        if alias and _NAME_RE.match(alias) and alias.lower() != s.spec.annotations.name.lower():
            claims.setdefault(alias.lower(), set()).add(s.id)
    out: dict[str, list[str]] = {s.id: [] for s in services}
    for s in services:
        alias = stack_alias(s)
        if alias and alias.lower() in claims and len(claims[alias.lower()]) == 1 and alias.lower() not in names:
            out[s.id].append(alias)
    return out


def _ports(service: objects_pb2.Service, ingress_carried: bool, published: set[tuple[str, int]]) -> list[dict]:
    out = []
    for p in _ports_of(service):
        protocol = _PROTOCOLS.get(p.protocol)
        key = (protocol, p.published_port)
        if (protocol is None or not 1 <= p.target_port <= 65535 or not 1 <= p.published_port <= 65535
                or key in published or (p.publish_mode == _INGRESS and not ingress_carried)):
            continue
        published.add(key)
        out.append({"Protocol": protocol, "TargetPort": p.target_port, "PublishedPort": p.published_port,
                    "PublishMode": "ingress" if p.publish_mode == _INGRESS else "host"})
    return sorted(out, key=lambda d: (d["Protocol"], d["PublishedPort"], d["TargetPort"], d["PublishMode"]))


def _services(nets: dict[str, _Net], shared: Shared) -> list[dict]:
    by_name = {n.name: n.id for n in nets.values() if n.name}
    ingress_carried = any(n.entry["Ingress"] for n in nets.values())
    node_ips = shared.node_ips
    # Older services claim a published port first, as the ControlAPI would have refused the newer.
    published: set[tuple[str, int]] = set()
    out = []
    for s in shared.services:
        on = shared.service_networks.get(s.id, ())
        if not any(n in nets for n in on) and not any(by_name.get(c.target) for c in s.spec.task.networks):
            continue        # nothing of it on this node's networks: no VIP, backend or attachment
        dnsrr = s.spec.endpoint.mode == objects_pb2.EndpointSpec.DNSRR
        vips = [] if dnsrr else [
            {"NetworkID": v.network_id, "Addr": v.addr} for v in s.endpoint.virtual_ips
            if v.network_id in nets and _host_ip(v.addr, nets[v.network_id].subnet)]
        backends = []
        for task in shared.tasks_by_service.get(s.id, ()):
            if not is_backend(task) or task.node_id not in node_ips:
                continue
            addresses = {}
            for a in task.networks:
                ip = _first_ip(a.addresses, nets[a.network_id].subnet) if a.network_id in nets else None
                if ip:
                    addresses[a.network_id] = ip
            if addresses:
                backends.append({"TaskID": task.id, "NodeIP": node_ips[task.node_id], "Addresses": addresses,
                                 "Healthy": task.status.health in HEALTHY})
        attached = any(c.target in nets or by_name.get(c.target) for c in s.spec.task.networks)
        if not (vips or backends or attached):
            continue
        entry = {
            "ID": s.id, "Name": s.spec.annotations.name, "Aliases": shared.aliases[s.id],
            "EndpointMode": "dnsrr" if dnsrr else "vip",
            "VirtualIPs": sorted(vips, key=lambda v: v["NetworkID"]),
            "Ports": _ports(s, ingress_carried, published),
            "Backends": sorted(backends, key=lambda b: b["TaskID"]),
            "LocalOnly": keeps_client_ip(s),
        }
        network_aliases = _network_aliases(s, nets, by_name)
        if network_aliases:             # only when there are some: a runtimed without the field still parses the rest
            entry["NetworkAliases"] = network_aliases
        out.append(entry)
    return sorted(out, key=lambda d: d["ID"])


def _network_aliases(service: objects_pb2.Service, nets: dict[str, _Net], by_name: dict[str, str]) -> dict[str, list[str]]:
    """The service's aliases per network id (``--network name=NET,alias=A``, Compose
    ``networks: {NET: {aliases: [A]}}``) on the networks this node carries. As Docker's, they are
    names of the service (its VIP, or its tasks with dnsrr) and give ``tasks.A``; invalid names
    are left out (the runtime would refuse the whole document)."""
    out: dict[str, list[str]] = {}
    for config in service.spec.task.networks:
        network_id = config.target if config.target in nets else by_name.get(config.target)
        if network_id is None:
            continue
        names = out.setdefault(network_id, [])
        names.extend(a for a in config.aliases if _NAME_RE.match(a) and a not in names)
    return {k: v for k, v in sorted(out.items()) if v}


def network_state_for(view, node_id: str, shared: Shared | None = None) -> dict | None:
    """The NetworkState document (JSON-ready dict) for ``node_id`` in ``view`` (see the module
    docstring), or None when the node is unknown or has no usable underlay address yet.

    ``shared``: ``Shared(view)``, when several nodes' documents are computed from one view.
    Pure: depends only on ``view``; equal views give equal documents (and ``encode`` equal bytes).
    The cost is what the document holds (the node's tasks and its networks' tasks and services).
    """
    node = view.get(Kind.NODE, node_id)
    if node is None:
        return None
    local_underlay = underlay_ip(node)
    if local_underlay is None:
        return None
    if shared is None or shared.version != view.version:
        shared = Shared(view)
    wanted = {a.network_id for t in view.tasks(node_id=node_id) if uses_networks(t)
              for a in t.networks if a.addresses}
    if node.status.state == _READY and shared.publishes_ingress:
        wanted.update(shared.ingress_ids)
    nets = _carried_networks(view, node, wanted, shared.keyring)
    return {
        "UnderlayIP": local_underlay,
        "Networks": [nets[k].entry for k in sorted(nets)],
        "Peers": _peers(node_id, nets, shared),
        "Services": _services(nets, shared) if nets else [],
        "NodeIPs": shared.all_node_ips,
    }


def encode(state: dict | None) -> bytes:
    """The bytes sent in ``AssignmentsMessage.network_state``: canonical JSON (sorted keys, no
    spaces), or b"" for None (nothing to send)."""
    if state is None:
        return b""
    return json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
