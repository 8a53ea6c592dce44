"""Property tests of manager.ipam: a hypothesis state machine drives random network, service,
task and node allocations and releases against small pools (so exhaustion happens), and checks:

- no two live allocations share an address, no two networks' subnets overlap, VNIs are unique;
- network, broadcast and gateway addresses are never handed out;
- failed operations leave the state unchanged; release + reallocate cycles never collide;
- restore() from the objects (in any order) yields the same state, hence the same free set.
"""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from manager.ipam import AllocatorError, NetworkAllocator, NetworkInUse, ingress_network
from proto import objects_pb2 as pb

# A /25 of TEST-NET space carved into /28s: at most 8 networks of 13 usable addresses each.
POOL = ("198.18.0.0/25",)
SUBNET_SIZE = 28
USER_SUBNETS = ["198.18.0.0/28", "198.18.0.16/28", "198.18.0.32/27", "198.18.0.96/29", "198.18.1.0/29"]
NETWORK_IDS = [f"net{i}" for i in range(6)]
SERVICE_IDS = [f"svc{i}" for i in range(6)]
TASK_IDS = [f"task{i}" for i in range(12)]
NODE_IDS = ["node-a", "node-b", "node-c"]


class AllocatorMachine(RuleBasedStateMachine):
    """Keeps the objects a controller would write to the store next to a live allocator."""

    @initialize(with_ingress=st.booleans())
    def start(self, with_ingress: bool) -> None:
        self.allocator = NetworkAllocator(POOL, SUBNET_SIZE)
        self.networks: dict[str, pb.Network] = {}
        self.services: dict[str, pb.Service] = {}
        self.tasks: dict[str, pb.Task] = {}
        self.nodes: dict[str, pb.Node] = {}
        self.clock = 0.0
        if with_ingress:
            self._create_network(pb.Network(id="ingress-id", spec=ingress_network()))

    def _tick(self) -> float:
        self.clock += 1.0
        return self.clock

    def _create_network(self, network: pb.Network) -> None:
        network.meta.created_at = self._tick()
        before = self.allocator.snapshot()
        try:
            self.networks[network.id] = self.allocator.allocate_network(network)
        except AllocatorError:
            assert self.allocator.snapshot() == before

    # ---- rules ---------------------------------------------------------------------------------

    @rule(network_id=st.sampled_from(NETWORK_IDS), subnet=st.none() | st.sampled_from(USER_SUBNETS))
    def create_network(self, network_id: str, subnet: str | None) -> None:
        if network_id in self.networks:
            return
        network = pb.Network(id=network_id)
        network.spec.annotations.name = network_id
        if subnet:
            network.spec.ipam.add(subnet=subnet)
        self._create_network(network)

    @rule(network_id=st.sampled_from(NETWORK_IDS))
    def remove_network(self, network_id: str) -> None:
        if network_id not in self.networks:
            return
        users = [o.id for o in list(self.services.values()) + list(self.tasks.values())
                 if network_id in _addressed_networks(o)]
        try:
            self.allocator.release_network(network_id)
        except NetworkInUse:
            assert users
            return
        assert not users
        del self.networks[network_id]
        for node in self.nodes.values():
            kept = [a for a in node.attachments if a.network_id != network_id]
            del node.attachments[:]
            node.attachments.extend(kept)

    @precondition(lambda self: self.networks)
    @rule(service_id=st.sampled_from(SERVICE_IDS), data=st.data(), publish=st.booleans(),
          dnsrr=st.booleans())
    def create_or_update_service(self, service_id: str, data, publish: bool, dnsrr: bool) -> None:
        user_networks = [n for n in sorted(self.networks) if not self.networks[n].spec.ingress]
        targets = data.draw(st.lists(st.sampled_from(user_networks), max_size=3, unique=True)) \
            if user_networks else []
        service = pb.Service(id=service_id)
        service.meta.created_at = self.services[service_id].meta.created_at \
            if service_id in self.services else self._tick()
        service.spec.annotations.name = service_id
        for target in targets:
            service.spec.task.networks.add(target=target)
        if publish:
            service.spec.endpoint.ports.add(target_port=80, published_port=8080)
        if dnsrr:
            service.spec.endpoint.mode = pb.EndpointSpec.DNSRR
        if service_id in self.services:
            service.endpoint.CopyFrom(self.services[service_id].endpoint)
        before = self.allocator.snapshot()
        try:
            service.endpoint.CopyFrom(self.allocator.allocate_service(service))
        except AllocatorError:
            assert self.allocator.snapshot() == before
            return
        self.services[service_id] = service

    @rule(service_id=st.sampled_from(SERVICE_IDS))
    def remove_service(self, service_id: str) -> None:
        if self.services.pop(service_id, None) is not None:
            self.allocator.release_service(service_id)

    @precondition(lambda self: self.services)
    @rule(task_id=st.sampled_from(TASK_IDS), data=st.data())
    def create_task(self, task_id: str, data) -> None:
        if task_id in self.tasks:
            return
        service = self.services[data.draw(st.sampled_from(sorted(self.services)))]
        task = pb.Task(id=task_id, service_id=service.id, slot=1)
        task.meta.created_at = self._tick()
        task.spec.CopyFrom(service.spec.task)
        before = self.allocator.snapshot()
        try:
            task.networks.extend(self.allocator.allocate_task(task, service))
        except AllocatorError:
            assert self.allocator.snapshot() == before
            return
        self.tasks[task_id] = task

    @rule(task_id=st.sampled_from(TASK_IDS), mark_dead=st.booleans())
    def finish_task(self, task_id: str, mark_dead: bool) -> None:
        task = self.tasks.pop(task_id, None)
        if task is None:
            return
        self.allocator.release_task(task_id)
        if mark_dead:  # a dead task stays in the store with its old addresses; it holds nothing
            task.desired_state = task.status.state = pb.SHUTDOWN
            self.tasks["dead-" + task_id + str(self.clock)] = task
            task.id = "dead-" + task_id + str(self.clock)

    @precondition(lambda self: self.networks)
    @rule(node_id=st.sampled_from(NODE_IDS), data=st.data())
    def allocate_node_ip(self, node_id: str, data) -> None:
        network_id = data.draw(st.sampled_from(sorted(self.networks)))
        node = self.nodes.setdefault(node_id, pb.Node(id=node_id))
        before = self.allocator.snapshot()
        try:
            address = self.allocator.allocate_node_ip(network_id, node_id)
        except AllocatorError:
            assert self.allocator.snapshot() == before
            return
        existing = [a for a in node.attachments if a.network_id == network_id]
        if existing:
            assert list(existing[0].addresses) == [address]
        else:
            node.attachments.add(network_id=network_id, addresses=[address])

    @rule(node_id=st.sampled_from(NODE_IDS))
    def release_node(self, node_id: str) -> None:
        if self.nodes.pop(node_id, None) is not None:
            self.allocator.release_node(node_id)

    # ---- invariants ----------------------------------------------------------------------------

    @invariant()
    def subnets_never_overlap_and_vnis_are_unique(self) -> None:
        snapshot = self.allocator.snapshot()
        subnets = [ipaddress.ip_network(s) for _, configs in snapshot.networks.values() for s, _ in configs]
        for i, a in enumerate(subnets):
            for b in subnets[i + 1:]:
                assert not a.overlaps(b), (a, b)
        vnis = [vni for vni, _ in snapshot.networks.values()]
        assert len(vnis) == len(set(vnis))

    @invariant()
    def live_objects_never_share_an_address(self) -> None:
        seen: dict[tuple[str, str], str] = {}
        holders = [(s.id, (v.network_id, v.addr) ) for s in self.services.values()
                   for v in s.endpoint.virtual_ips]
        holders += [(t.id, (a.network_id, addr)) for t in self.tasks.values()
                    if not t.id.startswith("dead-") for a in t.networks for addr in a.addresses]
        holders += [(n.id, (a.network_id, addr)) for n in self.nodes.values()
                    for a in n.attachments for addr in a.addresses]
        for holder, (network_id, addr) in holders:
            key = (network_id, addr.split("/")[0])
            assert key not in seen, f"{key} held by {seen.get(key)} and {holder}"
            seen[key] = holder
            configs = self.allocator.snapshot().networks[network_id][1]
            address = ipaddress.ip_interface(addr)
            subnet = next(ipaddress.ip_network(s) for s, _ in configs if address.ip in ipaddress.ip_network(s))
            gateway = next(g for s, g in configs if ipaddress.ip_network(s) == subnet)
            assert address.ip not in (subnet.network_address, subnet.broadcast_address)
            assert str(address.ip) != gateway

    @invariant()
    def restore_from_the_objects_rebuilds_the_same_state(self) -> None:
        fresh = NetworkAllocator(POOL, SUBNET_SIZE)
        report = fresh.restore(reversed(list(self.networks.values())), list(self.services.values()),
                               reversed(list(self.tasks.values())), list(self.nodes.values()))
        assert report.problems == []
        assert fresh.snapshot() == self.allocator.snapshot()
        for network_id in self.networks:
            assert fresh.free_addresses(network_id) == self.allocator.free_addresses(network_id)


def _addressed_networks(obj: pb.Service | pb.Task) -> set[str]:
    if isinstance(obj, pb.Service):
        return {v.network_id for v in obj.endpoint.virtual_ips}
    if obj.id.startswith("dead-"):
        return set()
    return {a.network_id for a in obj.networks}


AllocatorMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestAllocatorMachine = AllocatorMachine.TestCase
