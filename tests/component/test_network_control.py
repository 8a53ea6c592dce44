"""NetworkControl against a store with a LocalProposer, with the allocator component running where
a test needs networks allocated: create (waits for the VNI), list and filters, lookup by name and
ID prefix, refusals that leave the store unchanged, and removal refused while in use."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from manager.allocator.component import Allocator
from manager.controlapi import ControlError
from manager.controlapi.networks import NetworkControl
from manager.controlapi.services import ServiceControl
from manager.state import Kind, LocalProposer, MemoryStore, Store
from proto import control_pb2, objects_pb2 as pb

LAB_POOL = "198.18.0.0/15"


@pytest.fixture
async def store():
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory), clock=lambda: 1000.0)
    cluster = pb.Cluster(id="cluster0000000000000000000")
    cluster.spec.default_addr_pool.append(LAB_POOL)
    cluster.spec.subnet_size = 24
    await store.update(lambda tx: tx.create(cluster))
    return store


@pytest.fixture
def control(store):
    # Without an allocator running, create returns the unallocated network almost at once.
    return NetworkControl(store, allocation_timeout=0.01)


@pytest.fixture
async def allocated(store):
    """A NetworkControl with the allocator component running (it creates `ingress` first)."""
    task = asyncio.create_task(Allocator(store).run())
    try:
        await wait_for(lambda: any(n.vni for n in store.view().networks() if n.spec.ingress))
        yield NetworkControl(store)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(predicate, limit: int = 500) -> None:
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


def make_spec(name, *subnets, driver="", **flags) -> pb.NetworkSpec:
    spec = pb.NetworkSpec(driver=driver, **flags)
    spec.annotations.name = name
    for subnet in subnets:
        cidr, _, gateway = subnet.partition(" via ")
        spec.ipam.add(subnet=cidr, gateway=gateway)
    return spec


async def create(control, name, *subnets, **kwargs) -> pb.Network:
    request = control_pb2.CreateNetworkRequest(spec=make_spec(name, *subnets, **kwargs))
    return (await control.create_network(request)).network


async def refused(coro) -> ControlError:
    with pytest.raises(ControlError) as err:
        await coro
    return err.value


def names(store) -> list[str]:
    return sorted(n.spec.annotations.name for n in store.view().networks())


# ---- create --------------------------------------------------------------------------------

async def test_create_waits_for_the_allocator_and_returns_the_allocated_network(allocated, store):
    network = await create(allocated, "backend")
    assert len(network.id) == 25 and network.spec.driver == "overlay"
    assert network.vni >= 4096
    assert [c.subnet for c in network.ipam] == ["198.18.1.0/24"]    # ingress took 198.18.0.0/24
    assert network.ipam[0].gateway == "198.18.1.1"
    assert store.view().get(Kind.NETWORK, network.id) == network


async def test_create_keeps_the_given_subnet_gateway_flags_options_and_labels(allocated):
    spec = make_spec("secure", "198.19.8.0/24 via 198.19.8.254", attachable=True, internal=True)
    spec.driver_opts["encrypted"] = ""
    spec.annotations.labels["tier"] = "db"
    network = (await allocated.create_network(control_pb2.CreateNetworkRequest(spec=spec))).network
    assert [(c.subnet, c.gateway) for c in network.ipam] == [("198.19.8.0/24", "198.19.8.254")]
    assert network.spec.attachable and network.spec.internal
    assert dict(network.spec.driver_opts) == {"encrypted": ""}
    assert dict(network.spec.annotations.labels) == {"tier": "db"}


async def test_create_returns_the_network_unallocated_when_no_allocator_answers(control, store):
    network = await create(control, "backend")
    assert network.vni == 0 and store.view().get(Kind.NETWORK, network.id) is not None


async def test_create_refuses_a_duplicate_name(control, store):
    await create(control, "backend")
    err = await refused(create(control, "backend", "198.18.9.0/24"))
    assert err.code == "conflict" and str(err) == "network with name backend already exists"
    assert names(store) == ["backend"]


@pytest.mark.parametrize("kwargs, words", [
    ({"name": ""}, ["name is required"]),
    ({"driver": "bridge"}, ["driver 'bridge'", "overlay"]),
    ({"subnets": ["198.18.9.5/24"]}, ["host bits", "198.18.9.0/24"]),
    ({"subnets": ["198.18.9.0"]}, ["no prefix length"]),
    ({"subnets": ["banana/24"]}, ["not a valid CIDR"]),
    ({"subnets": ["2001:db8::/64"]}, ["IPv6"]),
    ({"subnets": ["198.18.9.0/24 via 198.18.10.1"]}, ["gateway 198.18.10.1 is not inside subnet 198.18.9.0/24"]),
    ({"subnets": ["198.18.9.0/24 via 198.18.9.255"]}, ["broadcast"]),
])
async def test_create_refuses_bad_specs_and_writes_nothing(control, store, kwargs, words):
    err = await refused(create(control, kwargs.get("name", "bad"), *kwargs.get("subnets", []),
                               driver=kwargs.get("driver", "")))
    assert err.code == "invalid"
    for word in words:
        assert word in str(err)
    assert names(store) == []


async def test_create_refuses_unknown_options(control, store):
    spec = make_spec("bad")
    spec.driver_opts["mtu"] = "1400"
    err = await refused(control.create_network(control_pb2.CreateNetworkRequest(spec=spec)))
    assert err.code == "invalid" and "'mtu'" in str(err) and "encrypted" in str(err)
    assert names(store) == []


async def test_overlap_with_a_network_not_yet_allocated_names_both(control, store):
    first = await create(control, "front", "198.18.4.0/22")
    assert first.vni == 0
    err = await refused(create(control, "back", "198.18.5.0/24"))
    assert err.code == "invalid"
    assert "back" in str(err) and "front" in str(err) and first.id in str(err)
    assert "198.18.5.0/24" in str(err) and "198.18.4.0/22" in str(err)
    assert names(store) == ["front"]


async def test_overlap_with_an_allocated_subnet_from_the_pool_names_both(allocated, store):
    backend = await create(allocated, "backend")
    assert [c.subnet for c in backend.ipam] == ["198.18.1.0/24"]
    err = await refused(create(allocated, "other", "198.18.1.128/25"))
    assert err.code == "invalid"
    assert '"other"' in str(err) and '"backend"' in str(err) and backend.id in str(err)
    assert "198.18.1.128/25" in str(err) and "198.18.1.0/24" in str(err)
    assert names(store) == ["backend", "ingress"]


async def test_a_second_ingress_network_is_refused(allocated, store):
    err = await refused(create(allocated, "mesh", ingress=True))
    assert err.code == "invalid" and "ingress" in str(err)
    assert names(store) == ["ingress"]


# ---- get and list ------------------------------------------------------------------------------

async def test_get_by_id_name_and_unique_prefix(control):
    network = await create(control, "backend")
    for ref in (network.id, "backend", network.id[:6]):
        got = (await control.get_network(control_pb2.GetNetworkRequest(network_id=ref))).network
        assert got.id == network.id
    err = await refused(control.get_network(control_pb2.GetNetworkRequest(network_id="nope")))
    assert err.code == "not_found" and "nope" in str(err)


async def test_list_sorts_by_name_and_filters(allocated):
    await create(allocated, "zeta")
    labelled = make_spec("alpha")
    labelled.annotations.labels["tier"] = "db"
    await allocated.create_network(control_pb2.CreateNetworkRequest(spec=labelled))

    async def listed(**filters):
        response = await allocated.list_networks(control_pb2.ListNetworksRequest(filters=filters))
        return [n.spec.annotations.name for n in response.networks]

    assert await listed() == ["alpha", "ingress", "zeta"]
    assert await listed(name="et") == ["zeta"]
    assert await listed(label="tier=db") == ["alpha"]
    assert await listed(type="builtin") == ["ingress"]
    assert await listed(type="custom") == ["alpha", "zeta"]
    assert await listed(driver="bridge") == []
    assert await listed(scope="local") == []
    err = await refused(allocated.list_networks(control_pb2.ListNetworksRequest(filters={"colour": "x"})))
    assert err.code == "invalid"


# ---- remove ------------------------------------------------------------------------------------

def service_spec(name, *networks, ports=()) -> pb.ServiceSpec:
    spec = pb.ServiceSpec(mode=pb.ServiceSpec.REPLICATED, replicas=1)
    spec.annotations.name = name
    spec.task.container.image = "busybox:1.36"
    for target in networks:
        spec.task.networks.add(target=target)
    for port in ports:
        spec.endpoint.ports.add(target_port=port, published_port=port)
    return spec


async def test_remove_is_refused_while_a_service_uses_the_network_then_allowed(control, store):
    network = await create(control, "backend")
    services = ServiceControl(store)
    web = (await services.create_service(control_pb2.CreateServiceRequest(
        spec=service_spec("web", "backend")))).service
    err = await refused(control.remove_network(control_pb2.RemoveNetworkRequest(network_id="backend")))
    assert err.code == "precondition" and str(err) == "network backend is in use by service web"
    assert names(store) == ["backend"]

    await services.remove_service(control_pb2.RemoveServiceRequest(service_id=web.id))
    await control.remove_network(control_pb2.RemoveNetworkRequest(network_id=network.id[:8]))
    assert names(store) == []


async def test_remove_is_refused_while_a_task_still_holds_an_address(control, store):
    network = await create(control, "backend")
    task = pb.Task(id="task00000000000000000000001", service_id="gone", slot=1,
                   desired_state=pb.SHUTDOWN)
    task.status.state = pb.RUNNING            # still running: it keeps its address
    task.networks.add(network_id=network.id, addresses=["198.18.1.2/24"])
    await store.update(lambda tx: tx.create(task))
    err = await refused(control.remove_network(control_pb2.RemoveNetworkRequest(network_id="backend")))
    assert err.code == "precondition" and "task gone.1" in str(err)

    stopped = pb.Task()
    stopped.CopyFrom(store.view().get(Kind.TASK, task.id))
    stopped.status.state = pb.SHUTDOWN
    await store.update(lambda tx: tx.update(stopped))
    await control.remove_network(control_pb2.RemoveNetworkRequest(network_id="backend"))
    assert names(store) == []


async def test_ingress_cannot_be_removed_while_a_service_publishes_a_port(allocated, store):
    services = ServiceControl(store)
    await services.create_service(control_pb2.CreateServiceRequest(spec=service_spec("web", ports=[8080])))
    err = await refused(allocated.remove_network(control_pb2.RemoveNetworkRequest(network_id="ingress")))
    assert err.code == "precondition" and "service web" in str(err)
    assert names(store) == ["ingress"]


async def test_remove_unknown_network_is_not_found(control):
    err = await refused(control.remove_network(control_pb2.RemoveNetworkRequest(network_id="nope")))
    assert err.code == "not_found"
