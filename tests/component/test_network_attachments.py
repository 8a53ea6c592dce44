"""One-off containers joining attachable networks (`shoal run --network NET`): NetworkControl's
AttachNetwork/DetachNetwork with the allocator, scheduler and task reaper running against a store
with a LocalProposer, and the network state the dispatcher then sends each node."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from manager.allocator.component import Allocator
from manager.controlapi import ControlError
from manager.controlapi.networks import NetworkControl
from manager.dispatcher.netstate import network_state_for
from manager.reaper import TaskReaper
from manager.scheduler.component import Scheduler
from manager.scheduler.testing import make_node
from manager.state import Kind, LocalProposer, MemoryStore, Store, copy_of
from proto import control_pb2, objects_pb2 as pb

LAB_POOL = "198.18.0.0/15"


@pytest.fixture
async def store():
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    cluster = pb.Cluster(id="cluster0000000000000000000")
    cluster.spec.default_addr_pool.append(LAB_POOL)
    cluster.spec.subnet_size = 24
    nodes = []
    for i, name in enumerate(("node-a", "node-b"), start=1):
        node = make_node(name, hostname=name)
        node.meta.version = 0
        node.status.addr = f"192.0.2.{10 + i}"
        nodes.append(node)

    def fn(tx):
        tx.create(cluster)
        for node in nodes:
            tx.create(node)
    await store.update(fn)
    return store


@pytest.fixture
async def control(store):
    """NetworkControl with the allocator, the scheduler and the reaper running."""
    runners = [asyncio.create_task(c.run()) for c in (Allocator(store), Scheduler(store), TaskReaper(store))]
    try:
        await wait_for(lambda: any(n.vni for n in store.view().networks() if n.spec.ingress))
        yield NetworkControl(store, allocation_timeout=2.0)
    finally:
        for runner in runners:
            runner.cancel()
        for runner in runners:
            with contextlib.suppress(asyncio.CancelledError):
                await runner


async def wait_for(predicate, limit: int = 300) -> None:
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


async def create(control, name, subnet, attachable=True) -> pb.Network:
    spec = pb.NetworkSpec(attachable=attachable)
    spec.annotations.name = name
    spec.ipam.add(subnet=subnet)
    return (await control.create_network(control_pb2.CreateNetworkRequest(spec=spec))).network


async def attach(control, network, container, node="node-a", aliases=()) -> control_pb2.AttachNetworkResponse:
    return await control.attach_network(control_pb2.AttachNetworkRequest(
        network_id=network, container_id=container, aliases=list(aliases), node_id=node))


def attachment_tasks(store) -> list[pb.Task]:
    return [t for t in store.view().tasks() if t.spec.HasField("attachment")]


async def test_attach_allocates_an_address_and_places_the_task_on_the_calling_node(control, store):
    network = await create(control, "shared", "198.19.20.0/24")
    response = await attach(control, "shared", "probe", aliases=["db-client"])
    assert response.attachment.network_id == network.id
    assert response.attachment.addresses[0].startswith("198.19.20.")
    assert list(response.attachment.aliases) == ["db-client"]
    task = store.view().get(Kind.TASK, response.attachment_id)
    assert task.node_id == "node-a" and not task.service_id
    assert task.spec.attachment.container_id == "probe" and task.desired_state == pb.RUNNING
    # The scheduler assigns it where it is; the reaper leaves it (it has no service).
    await wait_for(lambda: store.view().get(Kind.TASK, task.id).status.state == pb.ASSIGNED)
    await asyncio.sleep(0.4)    # more than the reaper's interval
    assert store.view().get(Kind.TASK, task.id) is not None

    # The node reports it RUNNING (the worker does that for attachment tasks).
    running = copy_of(store.view().get(Kind.TASK, task.id))
    running.status.state = pb.RUNNING
    await store.update(lambda tx: tx.update(running))
    # node-a carries the network (with a host gateway IP); node-b knows the address and names.
    await wait_for(lambda: any(a.network_id == network.id for a in store.view().get(Kind.NODE, "node-a").attachments))
    here = network_state_for(store.view(), "node-a")
    assert [n["ID"] for n in here["Networks"] if not n["Ingress"]] == [network.id]
    assert not [p for p in here["Peers"] if p["NetworkID"] == network.id]   # its own endpoint is local
    other = copy_of(store.view().get(Kind.TASK, task.id))    # a second container, on node-b
    second = await attach(control, "shared", "peer", node="node-b")
    await wait_for(lambda: store.view().get(Kind.TASK, second.attachment_id).status.state == pb.ASSIGNED)
    await wait_for(lambda: any(a.network_id == network.id for a in store.view().get(Kind.NODE, "node-b").attachments))
    there = network_state_for(store.view(), "node-b")
    peers = {p["IP"]: p for p in there["Peers"] if p["NetworkID"] == network.id}
    ip = other.networks[0].addresses[0].split("/")[0]
    assert peers[ip]["Names"] == ["probe", "db-client"] and peers[ip]["UnderlayIP"] == "192.0.2.11"


async def test_a_network_not_created_attachable_is_refused_in_dockers_words(control, store):
    await create(control, "private", "198.19.21.0/24", attachable=False)
    with pytest.raises(ControlError) as err:
        await attach(control, "private", "probe")
    assert err.value.code == "precondition"
    assert str(err.value) == "Could not attach to network private: network private not manually attachable"
    assert attachment_tasks(store) == []
    with pytest.raises(ControlError) as err:
        await attach(control, "ingress", "probe")
    assert "not manually attachable" in str(err.value)


async def test_network_rm_is_refused_until_the_attachment_is_detached(control, store):
    await create(control, "shared", "198.19.22.0/24")
    response = await attach(control, "shared", "probe")
    with pytest.raises(ControlError) as err:
        await control.remove_network(control_pb2.RemoveNetworkRequest(network_id="shared"))
    assert err.value.code == "precondition" and "in use by container probe" in str(err.value)
    with pytest.raises(ControlError) as err:        # another node may not detach it
        await control.detach_network(control_pb2.DetachNetworkRequest(attachment_id=response.attachment_id),
                                     node_id="node-b")
    assert err.value.code == "precondition"
    await control.detach_network(control_pb2.DetachNetworkRequest(attachment_id=response.attachment_id),
                                 node_id="node-a")
    assert attachment_tasks(store) == []
    await control.detach_network(control_pb2.DetachNetworkRequest(attachment_id=response.attachment_id))
    await control.remove_network(control_pb2.RemoveNetworkRequest(network_id="shared"))
    assert "shared" not in [n.spec.annotations.name for n in store.view().networks()]


async def test_a_full_network_refuses_the_attachment_and_leaves_no_task(control, store):
    await create(control, "tiny", "198.19.23.0/30")      # one usable address besides the gateway
    await attach(control, "tiny", "first")
    with pytest.raises(ControlError) as err:
        await attach(control, "tiny", "probe")
    assert err.value.code == "unavailable"
    assert "cannot allocate an IP address for task container probe" in str(err.value) and "is full" in str(err.value)
    await wait_for(lambda: [t.spec.attachment.container_id for t in attachment_tasks(store)] == ["first"])


async def test_attach_needs_a_container_and_a_known_node(control, store):
    await create(control, "shared", "198.19.24.0/24")
    for kwargs, words in (({"container": ""}, "container_id and node_id are required"),
                          ({"node": "node-z"}, "node node-z is not in the cluster")):
        with pytest.raises(ControlError) as err:
            await attach(control, "shared", kwargs.get("container", "probe"), node=kwargs.get("node", "node-a"))
        assert words in str(err.value)
    assert attachment_tasks(store) == []
