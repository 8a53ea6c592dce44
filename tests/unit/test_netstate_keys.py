"""Encrypted overlays' keys in the network state: only for networks with ``--opt encrypted``, only
to nodes carrying such a network, new keys after a rotation, never through the ControlAPI. Each
document is parsed with shoal-runtimed's own model into its EncryptionKey objects (pure, no kernel)."""

from __future__ import annotations

import asyncio
import json

from agent_runtime.network.model import EncryptionKey, NetworkState, validate_state
from manager.controlapi import ControlAPI
from manager.dispatcher import Dispatcher
from manager.dispatcher.netstate import encode, network_state_for
from manager.keymanager import ipsec_keys, plan_keyring
from manager.state import Kind, Store
from proto import cluster_pb2, control_pb2, objects_pb2
from tests.support.store import store_with
from tests.support.dispatcher import Context, Leader, authorize

T0 = 1_700_000_000.0
INTERVAL = 12 * 3600.0
RUNNING = objects_pb2.RUNNING


def make_node(node_id: str, addr: str, gateways: dict[str, str]) -> objects_pb2.Node:
    node = objects_pb2.Node(id=node_id)
    node.status.state = objects_pb2.NodeStatus.READY
    node.status.addr = addr
    for net, ip in gateways.items():
        node.attachments.add(network_id=net, addresses=[ip])
    return node


def make_network(net_id: str, subnet: str, vni: int, **opts) -> objects_pb2.Network:
    net = objects_pb2.Network(id=net_id, vni=vni)
    net.spec.annotations.name = net_id
    net.spec.driver = "overlay"
    net.spec.driver_opts.update(opts)
    net.ipam.add(subnet=subnet, gateway=subnet.rsplit(".", 1)[0] + ".1")
    return net


def make_task(task_id: str, node_id: str, addresses: dict[str, str]) -> objects_pb2.Task:
    task = objects_pb2.Task(id=task_id, service_id="web", node_id=node_id, slot=1, desired_state=RUNNING)
    task.status.state = RUNNING
    task.spec.container.image = "shoal/busybox:latest"
    for net, addr in addresses.items():
        task.networks.add(network_id=net, addresses=[addr])
    return task


def cluster_with_keys() -> objects_pb2.Cluster:
    cluster = plan_keyring(objects_pb2.Cluster(id="c1"), T0, INTERVAL)
    cluster.raft_password = b"raft secret"
    cluster.root_ca.ca_key = b"ca key"
    return cluster


def objects():
    """n1 carries "secure" (encrypted) and "plain"; n2 only "plain"; n3 only "secure"."""
    return (cluster_with_keys(),
            make_network("secure", "198.18.1.0/24", 4097, encrypted=""),
            make_network("plain", "198.18.2.0/24", 4098),
            make_node("n1", "192.0.2.11", {"secure": "198.18.1.241/24", "plain": "198.18.2.241/24"}),
            make_node("n2", "192.0.2.12", {"plain": "198.18.2.242/24"}),
            make_node("n3", "192.0.2.13", {"secure": "198.18.1.243/24"}),
            make_task("t1", "n1", {"secure": "198.18.1.11/24", "plain": "198.18.2.11/24"}),
            make_task("t2", "n2", {"plain": "198.18.2.12/24"}),
            make_task("t3", "n3", {"secure": "198.18.1.13/24"}))


def runtime_state(store: Store, node_id: str) -> tuple[NetworkState, bytes]:
    """What runtimed would make of the node's document, and the bytes sent."""
    raw = encode(network_state_for(store.view(), node_id))
    state = NetworkState.from_json(json.loads(raw))
    validate_state(state)
    return state, raw


def expected_keys(cluster: objects_pb2.Cluster) -> list[EncryptionKey]:
    return [EncryptionKey(key=k.key.hex(), spi=k.spi, lamport_time=k.lamport_time) for k in ipsec_keys(cluster)]


async def rotate(store: Store, now: float) -> None:
    def fn(tx):
        tx.update(plan_keyring(tx.get(Kind.CLUSTER, "c1"), now, INTERVAL))
    await store.update(fn)


async def test_only_encrypted_networks_carry_the_keyring_parsed_by_the_runtime():
    store = await store_with(*objects())
    state, _ = runtime_state(store, "n1")
    secure, plain = state.network("secure"), state.network("plain")
    assert secure.encrypted and not plain.encrypted
    assert secure.keys == expected_keys(store.view().cluster()) and len(secure.keys) == 3
    assert all(isinstance(k, EncryptionKey) and len(bytes.fromhex(k.key)) == 16 for k in secure.keys)
    assert [k.lamport_time for k in secure.keys] == [1, 2, 3]       # oldest first
    assert plain.keys == []


async def test_nodes_without_an_encrypted_network_never_see_a_key():
    store = await store_with(*objects())
    hex_keys = [k.key.hex().encode() for k in ipsec_keys(store.view().cluster())]
    state, raw = runtime_state(store, "n2")
    assert [n.id for n in state.networks] == ["plain"]
    assert not any(key in raw for key in hex_keys)
    state, raw = runtime_state(store, "n3")
    assert [n.id for n in state.networks] == ["secure"] and len(state.network("secure").keys) == 3


async def test_a_rotation_changes_the_keys_nodes_are_sent():
    store = await store_with(*objects())
    before = expected_keys(store.view().cluster())
    await rotate(store, T0 + INTERVAL)
    state, _ = runtime_state(store, "n1")
    after = state.network("secure").keys
    assert after == expected_keys(store.view().cluster())
    assert after[:2] == before[1:] and after[2] not in before and after[2].lamport_time == 4


async def test_a_network_without_the_option_or_a_cluster_without_keys_sends_no_keys():
    items = [o for o in objects() if not isinstance(o, objects_pb2.Cluster)]
    store = await store_with(objects_pb2.Cluster(id="c1"), *items)
    state, _ = runtime_state(store, "n1")
    assert state.network("secure").encrypted and state.network("secure").keys == []


async def test_get_and_update_cluster_never_return_the_keyring():
    store = await store_with(*objects())
    api = ControlAPI(store, raft=None)
    got = (await api.get_cluster()).cluster
    assert list(got.network_bootstrap_keys) == [] and got.raft_password == b"" and got.root_ca.ca_key == b""
    assert not any(k.key in got.SerializeToString() for k in ipsec_keys(store.view().cluster()))
    spec = objects_pb2.ClusterSpec()
    spec.CopyFrom(got.spec)
    spec.dispatcher.heartbeat_period = 7.0
    updated = (await api.update_cluster(control_pb2.UpdateClusterRequest(spec=spec))).cluster
    assert list(updated.network_bootstrap_keys) == [] and updated.spec.dispatcher.heartbeat_period == 7.0
    assert len(ipsec_keys(store.view().cluster())) == 3            # the store keeps them


async def test_the_assignments_stream_sends_new_keys_after_a_rotation():
    store = await store_with(*objects())
    dispatcher = Dispatcher(store, Leader(), authorize)
    session = dispatcher.Session(cluster_pb2.SessionRequest(), Context())
    stream = None
    try:
        session_id = (await anext(session)).session_id
        stream = dispatcher.Assignments(cluster_pb2.AssignmentsRequest(session_id=session_id), Context())
        first = await asyncio.wait_for(anext(stream), 5)
        keys = {n["ID"]: n["Keys"] for n in json.loads(first.network_state)["Networks"]}
        assert [k["LamportTime"] for k in keys["secure"]] == [1, 2, 3] and keys["plain"] == []

        await rotate(store, T0 + INTERVAL)
        second = await asyncio.wait_for(anext(stream), 5)
        keys = {n["ID"]: n["Keys"] for n in json.loads(second.network_state)["Networks"]}
        assert [k["LamportTime"] for k in keys["secure"]] == [2, 3, 4]
        assert keys["secure"][-1]["Key"] == ipsec_keys(store.view().cluster())[-1].key.hex()
    finally:
        if stream is not None:
            await stream.aclose()
        await session.aclose()
