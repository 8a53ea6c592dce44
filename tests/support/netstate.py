"""Objects and documents for tests of the dispatcher's network state (manager/dispatcher/netstate.py)."""

from __future__ import annotations

import json

from agent_runtime.network.model import NetworkState, validate_state
from manager.dispatcher.netstate import encode, network_state_for
from manager.state import Store
from proto import objects_pb2

READY, DOWN = objects_pb2.NodeStatus.READY, objects_pb2.NodeStatus.DOWN
RUNNING, SHUTDOWN = objects_pb2.RUNNING, objects_pb2.SHUTDOWN


def make_node(node_id: str, addr: str, gateways: dict[str, str] | None = None, state=READY) -> objects_pb2.Node:
    node = objects_pb2.Node(id=node_id)
    node.status.state = state
    node.status.addr = addr
    node.description.hostname = f"host-{node_id}"
    for net, ip in (gateways or {}).items():
        node.attachments.add(network_id=net, addresses=[ip])
    return node


def make_network(net_id: str, subnet: str, vni: int, ingress=False, **opts) -> objects_pb2.Network:
    net = objects_pb2.Network(id=net_id, vni=vni)
    net.spec.annotations.name = "ingress" if ingress else f"{net_id}-net"
    net.spec.driver = "overlay"
    net.spec.ingress = ingress
    net.spec.driver_opts.update(opts)
    net.ipam.add(subnet=subnet, gateway=subnet.rsplit(".", 1)[0] + ".1")
    return net


def make_service(service_id: str, name: str, vips: dict[str, str] | None = None, ports=(), dnsrr=False,
                 labels: dict[str, str] | None = None, created_at: float = 1.0) -> objects_pb2.Service:
    service = objects_pb2.Service(id=service_id)
    service.meta.created_at = created_at
    service.spec.annotations.name = name
    service.spec.annotations.labels.update(labels or {})
    if dnsrr:
        service.spec.endpoint.mode = objects_pb2.EndpointSpec.DNSRR
    for target, published, mode in ports:
        service.spec.endpoint.ports.add(target_port=target, published_port=published, publish_mode=mode)
    service.endpoint.spec.CopyFrom(service.spec.endpoint)
    service.endpoint.ports.extend(service.spec.endpoint.ports)
    for net, addr in (vips or {}).items():
        service.endpoint.virtual_ips.add(network_id=net, addr=addr)
        service.spec.task.networks.add(target=net)
    return service


def make_task(task_id: str, service_id: str, node_id: str, addresses: dict[str, str], state=RUNNING,
              desired=RUNNING, health: str = "", slot: int = 1, aliases=()) -> objects_pb2.Task:
    task = objects_pb2.Task(id=task_id, service_id=service_id, node_id=node_id, slot=slot, desired_state=desired)
    task.annotations.name = f"{service_id}-name"
    task.status.state = state
    task.status.health = health
    task.status.container_id = f"c{task_id}" + "0" * 20
    task.spec.container.image = "shoal/busybox:latest"
    for net, addr in addresses.items():
        task.networks.add(network_id=net, addresses=[addr], aliases=list(aliases))
    return task


def state_for(store: Store, node_id: str) -> NetworkState:
    """The document for ``node_id``, checked against the runtime's schema and validation."""
    doc = network_state_for(store.view(), node_id)
    assert doc is not None
    state = NetworkState.from_json(json.loads(encode(doc)))
    validate_state(state)
    return state


def two_node_cluster(*extra):
    """n1 and n2 on 192.0.2.0/24, network "front" with service web (VIP .2) running on both."""
    return (make_node("n1", "192.0.2.11", {"front": "198.18.1.241/24"}),
            make_node("n2", "192.0.2.12", {"front": "198.18.1.242/24"}),
            make_network("front", "198.18.1.0/24", 4097),
            make_service("web", "web", vips={"front": "198.18.1.2/24"}),
            make_task("t1", "web", "n1", {"front": "198.18.1.11/24"}),
            make_task("t2", "web", "n2", {"front": "198.18.1.12/24"}, slot=2),
            *extra)
