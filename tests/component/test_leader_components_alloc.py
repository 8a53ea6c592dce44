"""The Allocator and the TaskReaper against the store (the Lab of tests/support/leader_lab.py):
networks, VIPs, task and node addresses, exhaustion and release, restore after a leader change;
which tasks the reaper deletes and which it must not."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from manager.orchestrator.task import new_task
from manager.scheduler.testing import make_service
from manager.state import Kind, copy_of
from proto import objects_pb2
from tests.support.leader_lab import TS, Lab, converged

_ids = itertools.count(1)


@pytest.fixture
async def lab():
    lab = Lab()
    await lab.start()
    try:
        yield lab
    finally:
        await lab.stop()


@pytest.fixture
async def allocator_only():
    lab = Lab(components=("allocator",))
    await lab.start()
    try:
        yield lab
    finally:
        await lab.stop()


async def create_network(lab: Lab, name: str, subnet: str = "") -> str:
    network = objects_pb2.Network(id=f"net-{name}")
    network.spec.annotations.name = name
    network.spec.driver = "overlay"
    if subnet:
        network.spec.ipam.add(subnet=subnet)
    await lab.store.update(lambda tx: tx.create(network))
    return network.id


async def add_service(lab: Lab, name: str, *, networks=(), ingress_port: int = 0,
                      dnsrr: bool = False) -> objects_pb2.Service:
    service = make_service(f"svc-{name}", name=name, restart="any")
    service.meta.version = 0
    for target in networks:
        service.spec.task.networks.add(target=target)
    if ingress_port:
        service.spec.endpoint.ports.add(target_port=80, published_port=ingress_port,
                                        publish_mode=objects_pb2.PortConfig.INGRESS)
    if dnsrr:
        service.spec.endpoint.mode = objects_pb2.EndpointSpec.DNSRR
    await lab.store.update(lambda tx: tx.create(service))
    return lab.service(service.id)


async def add_tasks(lab: Lab, service: objects_pb2.Service, slots) -> list[str]:
    """NEW tasks, as the orchestrator writes them."""
    tasks = [new_task(service, slot=slot, now=lab.clock(), ids=lambda: f"task-{next(_ids):04d}")
             for slot in slots]

    def fn(tx):
        for task in tasks:
            tx.create(task)
    await lab.store.update(fn)
    return [t.id for t in tasks]


def address(attachment: objects_pb2.NetworkAttachment) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(attachment.addresses[0])


def states(lab: Lab, service_id: str) -> dict[int, int]:
    return {t.slot: t.status.state for t in lab.tasks(service_id)}


# ---- the allocator --------------------------------------------------------------------------------


async def test_networks_vips_task_and_node_addresses_are_allocated(lab):
    backend = await create_network(lab, "backend")
    service = await add_service(lab, "web", networks=["backend"], ingress_port=8080)
    await lab.scale(service.id, 3)

    await lab.wait_for(converged(lab, service.id, 3), "three replicas running", work=True)
    view = lab.view()
    networks = {n.spec.annotations.name: n for n in view.networks()}
    assert set(networks) == {"ingress", "backend"}, "the default ingress network was created"
    ingress = networks["ingress"]
    assert ingress.spec.ingress and ingress.vni >= 4096 and networks["backend"].vni >= 4096
    assert ingress.vni != networks["backend"].vni
    subnets = {name: ipaddress.ip_network(n.ipam[0].subnet) for name, n in networks.items()}
    assert all(s.subnet_of(ipaddress.ip_network("198.18.0.0/15")) for s in subnets.values())
    assert subnets["ingress"] == ipaddress.ip_network("198.18.0.0/24"), "ingress takes the first subnet"

    endpoint = lab.service(service.id).endpoint
    assert [v.network_id for v in endpoint.virtual_ips] == [ingress.id, backend]
    assert [(p.target_port, p.published_port) for p in endpoint.ports] == [(80, 8080)]

    taken = [ipaddress.IPv4Interface(v.addr).ip for v in endpoint.virtual_ips]
    for task in lab.tasks(service.id):
        assert [a.network_id for a in task.networks] == [ingress.id, backend]
        assert list(task.endpoint.virtual_ips) == list(endpoint.virtual_ips)
        taken += [address(a).ip for a in task.networks]
    for node in view.nodes():
        got = {a.network_id: address(a) for a in node.attachments}
        assert set(got) == {ingress.id, backend}, f"{node.id} carries a task on both networks"
        taken += [a.ip for a in got.values()]
    assert len(taken) == len(set(taken)) == 2 + 6 + 6, "no address is handed out twice"


async def test_a_full_subnet_leaves_tasks_new_with_the_reason_until_addresses_are_freed(allocator_only):
    lab = allocator_only
    await create_network(lab, "tiny", subnet="198.19.0.0/29")   # 5 usable: a VIP and 4 tasks
    service = await add_service(lab, "web", networks=["tiny"])
    ids = await add_tasks(lab, service, range(1, 7))

    def split(pending: int, new: int):
        return lambda: (sum(s == TS.PENDING for s in states(lab, service.id).values()) == pending
                        and sum(s == TS.NEW for s in states(lab, service.id).values()) == new)
    await lab.wait_for(split(4, 2), "four tasks allocated, two blocked")
    assert len(lab.service(service.id).endpoint.virtual_ips) == 1
    blocked = [t for t in lab.tasks(service.id) if t.status.state == TS.NEW]
    for task in blocked:
        assert task.status.err.startswith(f"cannot allocate an IP address for task {task.annotations.name}")
        assert "is full" in task.status.err and task.status.message == "network allocation failed"

    first = lab.view().get(Kind.TASK, ids[0])
    await lab.store.update(lambda tx: tx.delete(first))
    await lab.wait_for(split(4, 1), "a deleted task's address goes to a blocked task")

    second = copy_of(lab.view().get(Kind.TASK, ids[1]))
    second.desired_state = TS.SHUTDOWN
    second.status.state = TS.SHUTDOWN
    await lab.store.update(lambda tx: tx.update(second))
    await lab.wait_for(split(4, 0), "a dead task's address goes to the last blocked task")
    live = [t for t in lab.tasks(service.id) if t.status.state == TS.PENDING]
    addresses = [address(t.networks[0]).ip for t in live]
    assert len(set(addresses)) == 4 and not any(t.status.err for t in live)


async def test_exhaustion_is_reported_on_the_service_and_cleared_once_allocated(allocator_only):
    lab = allocator_only
    await create_network(lab, "tiny", subnet="198.19.0.0/29")   # 5 usable: a VIP and 4 tasks
    web = await add_service(lab, "web", networks=["tiny"])
    ids = await add_tasks(lab, web, range(1, 7))
    await lab.wait_for(lambda: "is full" in lab.service(web.id).allocation_error, "web says its subnet is full")
    blocked = sorted(t.id for t in lab.tasks(web.id) if t.status.state == TS.NEW)
    first = lab.view().get(Kind.TASK, blocked[0])
    assert lab.service(web.id).allocation_error == f"{first.status.err} (and 1 more task)"
    assert first.status.err.startswith(f"cannot allocate an IP address for task {first.annotations.name}")

    # A second service finds no address for its VIP: its endpoint's problem is its error.
    api = await add_service(lab, "api", networks=["tiny"])
    await add_tasks(lab, api, [1])
    await lab.wait_for(lambda: lab.service(api.id).allocation_error, "api explained")
    assert lab.service(api.id).allocation_error.startswith("cannot allocate a virtual IP for service api")
    assert "is full" in lab.service(api.id).allocation_error

    # Freeing addresses clears web's error once every task has one (api's VIP takes one first).
    await lab.store.update(lambda tx: [tx.delete(lab.view().get(Kind.TASK, i)) for i in ids[:4]])
    await lab.wait_for(lambda: not lab.service(web.id).allocation_error
                       and not lab.service(api.id).allocation_error, "both services allocated")
    assert all(t.status.state == TS.PENDING for t in lab.tasks(web.id) + lab.tasks(api.id))


async def test_an_invalid_endpoint_blocks_its_tasks_but_not_other_services(allocator_only):
    lab = allocator_only
    bad = await add_service(lab, "bad", ingress_port=8080, dnsrr=True)
    good = await add_service(lab, "good", ingress_port=8081)
    await add_tasks(lab, bad, [1, 2])
    await add_tasks(lab, good, [1, 2])

    await lab.wait_for(lambda: set(states(lab, good.id).values()) == {TS.PENDING}, "the good service's tasks pending")
    await lab.wait_for(lambda: all(t.status.err for t in lab.tasks(bad.id)), "the bad service's tasks explained")
    for task in lab.tasks(bad.id):
        assert task.status.state == TS.NEW
        assert "need endpoint mode vip, not dnsrr" in task.status.err
        assert f"service bad ({bad.id})" in task.status.err
    assert not lab.service(bad.id).endpoint.virtual_ips

    def fix(spec):
        spec.endpoint.mode = objects_pb2.EndpointSpec.VIP
    await lab.update_service(bad.id, fix, new_version=False)
    await lab.wait_for(lambda: set(states(lab, bad.id).values()) == {TS.PENDING}, "fixed: its tasks go on")
    assert len(lab.service(bad.id).endpoint.virtual_ips) == 1


async def test_a_new_allocator_restores_what_the_store_holds(allocator_only):
    lab = allocator_only
    await create_network(lab, "backend")
    service = await add_service(lab, "web", networks=["backend"])
    await add_tasks(lab, service, [1, 2, 3])
    await lab.wait_for(lambda: set(states(lab, service.id).values()) == {TS.PENDING}, "first three allocated")
    await lab.stop_component("allocator")
    before = {t.id: address(t.networks[0]).ip for t in lab.tasks(service.id)}

    await add_tasks(lab, service, [4, 5, 6])
    lab.start_component("allocator")        # a new leader
    await lab.wait_for(lambda: len(states(lab, service.id)) == 6
                       and set(states(lab, service.id).values()) == {TS.PENDING}, "the rest allocated")
    after = {t.id: address(t.networks[0]).ip for t in lab.tasks(service.id)}
    assert {k: after[k] for k in before} == before, "allocated tasks keep their addresses"
    vip = ipaddress.IPv4Interface(lab.service(service.id).endpoint.virtual_ips[0].addr).ip
    assert len(set(after.values()) | {vip}) == 7, "no address handed out twice after restore"
    assert sum(n.spec.ingress for n in lab.view().networks()) == 1, "one ingress network, not two"


# ---- the reaper ------------------------------------------------------------------------------------


def task(task_id: str, service_id: str, *, slot: int = 1, node: str = "node-1", state=TS.RUNNING,
         desired=TS.RUNNING, created: float = 0.0) -> objects_pb2.Task:
    t = objects_pb2.Task(id=task_id, service_id=service_id, slot=slot, node_id=node,
                         desired_state=desired)
    t.status.state = state
    t.meta.created_at = created
    return t


async def test_the_reaper_deletes_stopped_unwanted_tasks_and_history_beyond_the_limit():
    lab = Lab(components=())
    await lab.start()
    try:
        await lab.set_node("node-3", state=objects_pb2.NodeStatus.DOWN)
        cluster = copy_of(lab.view().cluster())
        cluster.spec.orchestration.task_history_retention_limit = 2
        live = make_service("svc-live", name="live")
        live.meta.version = 0
        doomed = [
            task("orphan-stopped", "svc-gone", state=TS.SHUTDOWN),
            task("removed-stopped", "svc-live", slot=2, state=TS.SHUTDOWN, desired=TS.REMOVE),
            task("removed-on-down-node", "svc-live", slot=3, node="node-3", desired=TS.REMOVE),
            task("removed-never-placed", "svc-live", slot=4, node="", state=TS.PENDING, desired=TS.REMOVE),
        ] + [task(f"history-{i}", "svc-live", state=TS.FAILED, desired=TS.SHUTDOWN, created=float(i))
             for i in (1, 2, 3)]
        kept = [
            task("orphan-running", "svc-gone", slot=2),
            task("removed-running", "svc-live", slot=5, desired=TS.REMOVE),
            task("history-4", "svc-live", state=TS.FAILED, desired=TS.SHUTDOWN, created=4.0),
            task("newest", "svc-live", created=5.0),
        ]

        def fn(tx):
            tx.update(cluster)
            tx.create(live)
            for t in doomed + kept:
                tx.create(t).meta.created_at = t.meta.created_at   # keep the history's order
        await lab.store.update(fn)

        lab.start_component("reaper")
        ids = lambda: {t.id for t in lab.tasks()}   # noqa: E731
        await lab.wait_for(lambda: not ids() & {t.id for t in doomed}, "the doomed tasks deleted")
        assert ids() == {t.id for t in kept}, "nothing that may still run, nor recent history, is deleted"
        assert lab.components["reaper"].deleted == len(doomed)

        await lab.report("removed-running", TS.SHUTDOWN)
        await lab.wait_for(lambda: "removed-running" not in ids(), "deleted once the worker reports it stopped")
        assert ids() == {"orphan-running", "history-4", "newest"}
    finally:
        await lab.stop()


async def test_unwanted_tasks_stuck_on_a_down_node_are_orphaned_and_their_addresses_freed():
    """Issue 11: tasks told to shut down on a node that went DOWN before reporting an end stayed
    ASSIGNED for good, kept their overlay addresses (a full subnet) and were never pruned."""
    lab = Lab(components=("allocator", "scheduler"))
    await lab.start()
    try:
        network_id = await create_network(lab, "backend")
        service = await add_service(lab, "web", networks=["backend"])
        await add_tasks(lab, service, range(1, 7))
        await lab.wait_for(lambda: set(states(lab, service.id).values()) == {TS.ASSIGNED}, "six tasks assigned")
        await lab.stop_component("scheduler")
        stuck = [t for t in lab.tasks(service.id) if t.node_id == "node-1"]
        alive = [t for t in lab.tasks(service.id) if t.node_id == "node-2"]
        assert len(stuck) == len(alive) == 2
        held = {t.id: str(address(t.networks[0]).ip) for t in stuck + alive}
        allocator = lab.components["allocator"]._alloc
        assert not set(held.values()) & allocator.free_addresses(network_id)

        # node-1 dies before its tasks ever ran; they (and node-2's) are told to shut down
        await lab.set_node("node-1", state=objects_pb2.NodeStatus.DOWN)

        def shut_down(tx):
            for t in stuck + alive:
                new = copy_of(tx.get(Kind.TASK, t.id))
                new.desired_state = TS.SHUTDOWN
                tx.update(new)
        await lab.store.update(shut_down)

        lab.start_component("reaper")
        by_id = lambda: {t.id: t for t in lab.tasks(service.id)}   # noqa: E731
        await lab.wait_for(lambda: all(by_id()[t.id].status.state == TS.ORPHANED for t in stuck),
                           "the stuck tasks orphaned")
        assert all("node-1 is down" in by_id()[t.id].status.message for t in stuck)
        await lab.wait_for(lambda: {held[t.id] for t in stuck} <= allocator.free_addresses(network_id),
                           "their addresses freed")
        # a node that is up will still report its tasks stopped: those keep their state and addresses
        assert all(by_id()[t.id].status.state == TS.ASSIGNED for t in alive)
        assert not {held[t.id] for t in alive} & allocator.free_addresses(network_id)
        assert lab.components["reaper"].orphaned == 2
    finally:
        await lab.stop()
