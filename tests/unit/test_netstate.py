"""network_state_for: what each node is told about networks, peers and services.

Every document is also parsed and validated with shoal-runtimed's own model (the manager must not
import agent_runtime; the test does, to check the two agree)."""

from __future__ import annotations

import itertools

import pytest

from manager.dispatcher.netstate import encode, network_state_for, task_container_name, underlay_ip
from manager.state import Kind
from proto import objects_pb2
from tests.support.netstate import (DOWN, RUNNING, SHUTDOWN, make_network, make_node, make_service, make_task,
                                    state_for, two_node_cluster)
from tests.support.store import store_with
from worker.executor import task_name


async def test_node_gets_its_network_remote_peers_and_the_service():
    store = await store_with(*two_node_cluster())
    state = state_for(store, "n1")
    assert state.underlay_ip == "192.0.2.11"
    [net] = state.networks
    assert (net.id, net.vni, net.subnet, net.gateway, net.host_gateway_ip) == (
        "front", 4097, "198.18.1.0/24", "198.18.1.1", "198.18.1.241")
    assert [(p.ip, p.underlay_ip) for p in state.peers] == [("198.18.1.12", "192.0.2.12"),
                                                           ("198.18.1.242", "192.0.2.12")]
    assert state.peers[0].names[0] == "web-name.2.t2"
    [web] = state.services
    assert (web.name, web.endpoint_mode, [v.addr for v in web.virtual_ips]) == ("web", "vip", ["198.18.1.2/24"])
    assert [(b.task_id, b.node_ip, b.addresses, b.healthy) for b in web.backends] == [
        ("t1", "192.0.2.11", {"front": "198.18.1.11"}, True), ("t2", "192.0.2.12", {"front": "198.18.1.12"}, True)]
    # the other side sees the mirror image
    other = state_for(store, "n2")
    assert [(p.ip, p.underlay_ip) for p in other.peers] == [("198.18.1.11", "192.0.2.11"),
                                                           ("198.18.1.241", "192.0.2.11")]


async def test_node_without_tasks_on_a_network_carries_nothing():
    store = await store_with(*two_node_cluster(make_node("n3", "192.0.2.13")))
    state = state_for(store, "n3")
    assert (state.networks, state.peers, state.services) == ([], [], [])


async def test_every_node_is_told_every_nodes_address_to_fence_containers_off():
    down = make_node("n4", "192.0.2.14")
    down.status.state = objects_pb2.NodeStatus.DOWN
    store = await store_with(*two_node_cluster(make_node("n3", "192.0.2.13"), down))
    assert state_for(store, "n3").node_ips == ["192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14"]
    assert state_for(store, "n1").node_ips == state_for(store, "n3").node_ips


async def test_network_waits_for_the_nodes_gateway_ip():
    objects = list(two_node_cluster())
    objects[0] = make_node("n1", "192.0.2.11")  # the allocator has not given n1 its gateway IP yet
    store = await store_with(*objects)
    state = state_for(store, "n1")
    assert state.networks == [] and state.services == []
    assert [p.ip for p in state_for(store, "n2").peers] == ["198.18.1.11"]  # no gateway of n1 to program


async def test_every_ready_node_joins_ingress_while_a_port_is_published():
    ingress_port = [(80, 8080, objects_pb2.PortConfig.INGRESS)]
    objects = [make_node("n1", "192.0.2.11", {"ing": "198.18.0.241/24"}),
               make_node("n2", "192.0.2.12", {"ing": "198.18.0.242/24"}),
               make_node("n3", "192.0.2.13"),  # no ingress gateway yet
               make_network("ing", "198.18.0.0/24", 4096, ingress=True),
               make_service("web", "web", vips={"ing": "198.18.0.2/24"}, ports=ingress_port),
               make_task("t1", "web", "n1", {"ing": "198.18.0.11/24"})]
    store = await store_with(*objects)
    state = state_for(store, "n2")  # no task of its own: still serves the routing mesh
    assert [n.id for n in state.networks] == ["ing"] and state.networks[0].ingress
    [web] = state.services
    assert [(p.published_port, p.target_port, p.publish_mode) for p in web.ports] == [(8080, 80, "ingress")]
    assert [b.addresses for b in web.backends] == [{"ing": "198.18.0.11"}]
    assert state_for(store, "n3").networks == []

    def unpublish(tx):
        service = objects_pb2.Service()
        service.CopyFrom(tx.get(Kind.SERVICE, "web"))
        del service.spec.endpoint.ports[:]
        del service.endpoint.ports[:]
        tx.update(service)
    await store.update(unpublish)
    assert state_for(store, "n2").networks == []


async def test_a_draining_task_leaves_the_backends_but_keeps_its_network_until_stopped():
    store = await store_with(*two_node_cluster())

    def set_task(task_id, **fields):
        def fn(tx):
            task = objects_pb2.Task()
            task.CopyFrom(tx.get(Kind.TASK, task_id))
            for key, value in fields.items():
                if key == "state":
                    task.status.state = value
                else:
                    setattr(task, key, value)
            tx.update(task)
        return fn

    await store.update(set_task("t1", desired_state=SHUTDOWN))
    state = state_for(store, "n1")
    assert [n.id for n in state.networks] == ["front"]  # its container still runs
    assert [b.task_id for b in state.services[0].backends] == ["t2"]
    assert "198.18.1.11" in [p.ip for p in state_for(store, "n2").peers]

    await store.update(set_task("t1", state=objects_pb2.SHUTDOWN))
    assert state_for(store, "n1").networks == []
    assert "198.18.1.11" not in [p.ip for p in state_for(store, "n2").peers]


@pytest.mark.parametrize("state, health, backend, healthy", [
    (RUNNING, "", True, True),
    (RUNNING, "healthy", True, True),
    (RUNNING, "unhealthy", True, False),
    (objects_pb2.STARTING, "starting", False, None),
    (objects_pb2.FAILED, "", False, None),
])
async def test_backends_are_running_tasks_with_their_health(state, health, backend, healthy):
    store = await store_with(*two_node_cluster(), make_task("t3", "web", "n2", {"front": "198.18.1.13/24"},
                                                           state=state, health=health, slot=3))
    backends = {b.task_id: b for b in state_for(store, "n1").services[0].backends}
    assert ("t3" in backends) == backend
    if backend:
        assert backends["t3"].healthy == healthy


async def test_tasks_on_a_down_node_stay_peers_but_are_no_backends():
    """DOWN means its shoald stopped heartbeating (a slow restart): its containers and routing mesh
    still run, so replies to them must still find their way; new connections go elsewhere."""
    objects = list(two_node_cluster())
    objects[1] = make_node("n2", "192.0.2.12", {"front": "198.18.1.242/24"}, state=DOWN)
    store = await store_with(*objects)
    state = state_for(store, "n1")
    assert [(p.ip, p.underlay_ip) for p in state.peers] == [("198.18.1.12", "192.0.2.12"),
                                                           ("198.18.1.242", "192.0.2.12")]
    assert [b.task_id for b in state.services[0].backends] == ["t1"]


async def test_a_live_nodes_endpoint_wins_an_address_a_down_node_still_claims():
    objects = list(two_node_cluster(make_node("n3", "192.0.2.13", {"front": "198.18.1.243/24"}),
                                    make_task("t3", "web", "n3", {"front": "198.18.1.12/24"}, slot=3)))
    objects[1] = make_node("n2", "192.0.2.12", {"front": "198.18.1.242/24"}, state=DOWN)
    store = await store_with(*objects)
    peers = {p.ip: p.underlay_ip for p in state_for(store, "n1").peers}
    assert peers["198.18.1.12"] == "192.0.2.13"


async def test_stack_services_answer_to_their_stack_local_name_unless_it_is_taken():
    stack = {"com.docker.stack.namespace": "shop"}
    store = await store_with(*two_node_cluster(
        make_service("api", "shop_api", vips={"front": "198.18.1.3/24"}, labels=stack),
        make_service("db", "shop_web", vips={"front": "198.18.1.4/24"}, labels=stack)))  # "web" is taken
    aliases = {s.name: s.aliases for s in state_for(store, "n1").services}
    assert aliases == {"web": [], "shop_api": ["api"], "shop_web": []}


async def test_dnsrr_services_have_no_vip_but_keep_their_backends():
    store = await store_with(*two_node_cluster(
        make_service("rr", "rr", vips={"front": "198.18.1.5/24"}, dnsrr=True),
        make_task("t9", "rr", "n2", {"front": "198.18.1.19/24"})))
    rr = next(s for s in state_for(store, "n1").services if s.id == "rr")
    assert rr.endpoint_mode == "dnsrr" and rr.virtual_ips == []
    assert [b.task_id for b in rr.backends] == ["t9"]


async def test_unusable_ports_and_addresses_are_left_out_rather_than_sent():
    host = objects_pb2.PortConfig.HOST
    store = await store_with(*two_node_cluster(
        make_service("a", "a", vips={"front": "198.18.1.6/24"}, ports=[(80, 9000, host), (81, 0, host)],
                     created_at=1.0),
        make_service("b", "b", vips={"front": "198.18.9.7/24"}, ports=[(80, 9000, host)], created_at=2.0),
        make_task("t7", "b", "n2", {"front": "198.18.2.7/24"})))  # outside front's subnet
    services = {s.id: s for s in state_for(store, "n1").services}
    assert [p.published_port for p in services["a"].ports] == [9000]  # 0: not published yet
    assert services["b"].ports == [] and services["b"].virtual_ips == [] and services["b"].backends == []


async def test_equal_views_give_equal_bytes_whatever_the_insertion_order():
    objects = two_node_cluster(make_task("t3", "web", "n2", {"front": "198.18.1.13/24"}, slot=3),
                               make_node("n3", "192.0.2.13", {"front": "198.18.1.243/24"}))
    encoded = set()
    for order in itertools.islice(itertools.permutations(objects), 0, None, 997):
        store = await store_with(*order)
        encoded.add(encode(network_state_for(store.view(), "n1")))
    assert len(encoded) == 1


async def test_unknown_node_or_one_without_an_address_gets_nothing():
    store = await store_with(make_node("n1", ""))
    assert network_state_for(store.view(), "n1") is None
    assert network_state_for(store.view(), "nope") is None
    assert encode(None) == b""


def test_underlay_ip_falls_back_to_the_advertised_grpc_address():
    node = make_node("n1", "127.0.0.1")
    assert underlay_ip(node) is None
    node.description.grpc_addr = "192.0.2.21:2377"
    assert underlay_ip(node) == "192.0.2.21"
    node.status.addr = "192.0.2.22"
    assert underlay_ip(node) == "192.0.2.22"


def test_peer_names_use_the_workers_container_name():
    for slot, node in ((3, ""), (0, "n7")):
        task = make_task("tid", "svc", node, {}, slot=slot)
        assert task_container_name(task) == task_name(task)


async def test_service_network_aliases_are_carried_per_network():
    web = make_service("web", "web", vips={"front": "198.18.1.2/24"})
    web.spec.task.networks[0].aliases.extend(["db", "bad name", "db"])
    objects = [web if getattr(o, "id", None) == "web" and isinstance(o, objects_pb2.Service) else o
               for o in two_node_cluster()]
    store = await store_with(*objects)
    [service] = state_for(store, "n1").services
    assert service.network_aliases == {"front": ["db"]}      # the invalid name left out, no repeat
