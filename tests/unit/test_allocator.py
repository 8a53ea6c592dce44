"""Unit tests of manager.ipam: pools, subnet validation, VNIs, VIPs, task and node IPs, restore."""

from __future__ import annotations

import pytest

from manager.ipam import (
    AddressPoolExhausted, InvalidEndpoint, InvalidNetworkSpec, NetworkAllocator, NetworkInUse,
    SubnetExhausted, SubnetOverlap, UnknownNetwork, VNIExhausted, ingress_network,
    task_holds_addresses,
)
from manager.ipam.vni import VNIAllocator
from proto import objects_pb2 as pb

LAB_POOL = ("198.18.0.0/15",)


# ---- builders -----------------------------------------------------------------------------------

def make_network(network_id: str, name: str = "", subnet: str = "", gateway: str = "",
                 driver: str = "overlay", opts: dict[str, str] | None = None,
                 created_at: float = 0.0) -> pb.Network:
    network = pb.Network(id=network_id)
    network.meta.created_at = created_at
    network.spec.annotations.name = name or network_id
    network.spec.driver = driver
    network.spec.driver_opts.update(opts or {})
    if subnet or gateway:
        network.spec.ipam.add(subnet=subnet, gateway=gateway)
    return network


def make_service(service_id: str, name: str, networks: list[str] = (), ports: list[tuple] = (),
                 dnsrr: bool = False) -> pb.Service:
    service = pb.Service(id=service_id)
    service.spec.annotations.name = name
    for target in networks:
        service.spec.task.networks.add(target=target)
    for published, target, mode in ports:
        service.spec.endpoint.ports.add(published_port=published, target_port=target,
                                        publish_mode=mode)
    if dnsrr:
        service.spec.endpoint.mode = pb.EndpointSpec.DNSRR
    return service


def make_task(task_id: str, service: pb.Service, slot: int = 1,
              aliases: dict[str, list[str]] | None = None) -> pb.Task:
    task = pb.Task(id=task_id, service_id=service.id, slot=slot)
    task.spec.CopyFrom(service.spec.task)
    for config in task.spec.networks:
        config.aliases.extend((aliases or {}).get(config.target, []))
    return task


def ingress(network_id: str = "ing") -> pb.Network:
    return pb.Network(id=network_id, spec=ingress_network())


# ---- pools and subnets --------------------------------------------------------------------------

def test_docker_defaults_carve_slash24s_from_ten_slash_eight_with_ingress_first():
    allocator = NetworkAllocator()
    assert allocator.allocate_network(ingress()).ipam[0].subnet == "10.0.0.0/24"
    first = allocator.allocate_network(make_network("n1"))
    second = allocator.allocate_network(make_network("n2"))
    assert [(c.subnet, c.gateway) for c in first.ipam] == [("10.0.1.0/24", "10.0.1.1")]
    assert second.ipam[0].subnet == "10.0.2.0/24"


def test_cluster_spec_pools_and_mask_length_are_used():
    cluster = pb.Cluster(id="c")
    cluster.spec.default_addr_pool.extend(LAB_POOL)
    cluster.spec.subnet_size = 26
    allocator = NetworkAllocator.from_cluster(cluster)
    assert allocator.allocate_network(ingress()).ipam[0].subnet == "198.18.0.0/26"
    assert allocator.allocate_network(make_network("n1")).ipam[0].subnet == "198.18.0.64/26"


def test_carving_skips_user_subnets_and_continues_in_the_next_pool():
    allocator = NetworkAllocator(("198.18.0.0/23", "192.0.2.0/24"), 24)
    allocator.allocate_network(make_network("user", subnet="198.18.0.0/24"))
    assert allocator.allocate_network(make_network("a")).ipam[0].subnet == "198.18.1.0/24"
    assert allocator.allocate_network(make_network("b")).ipam[0].subnet == "192.0.2.0/24"


@pytest.mark.parametrize("pools, size, fragment", [
    (("198.18.0.0",), 24, "no prefix length"),
    (("198.18.0.0/15",), 14, "between"),
    (("198.18.0.0/15",), 30, "between"),
    (("198.18.0.0/15", "198.19.0.0/16"), 24, "overlap"),
    (("2001:db8::/32",), 64, "IPv6"),
    (("198.18.0.1/15",), 24, "host bits"),
])
def test_unusable_default_pools_are_refused(pools, size, fragment):
    with pytest.raises(InvalidNetworkSpec, match=fragment):
        NetworkAllocator(pools, size)


@pytest.mark.parametrize("subnet, gateway, fragment", [
    ("banana", "", "not a valid CIDR"),
    ("198.18.5.0", "", "no prefix length"),
    ("198.18.5.7/24", "", "host bits set; did you mean 198.18.5.0/24"),
    ("2001:db8::/64", "", "IPv6"),
    ("198.18.5.0/31", "", "too small"),
    ("198.18.5.0/24", "198.18.6.1", "not inside subnet 198.18.5.0/24"),
    ("198.18.5.0/24", "198.18.5.0", "network or broadcast"),
    ("198.18.5.0/24", "198.18.5.255", "network or broadcast"),
    ("198.18.5.0/24", "nope", "not a valid IP"),
    ("", "198.18.5.1", "without a subnet"),
])
def test_bad_user_subnets_and_gateways_are_refused_naming_the_network(subnet, gateway, fragment):
    allocator = NetworkAllocator(LAB_POOL)
    before = allocator.snapshot()
    with pytest.raises(InvalidNetworkSpec, match=fragment) as info:
        allocator.allocate_network(make_network("n1", "backend", subnet, gateway))
    assert 'network "backend" (n1)' in str(info.value)
    assert allocator.snapshot() == before


@pytest.mark.parametrize("existing, requested", [
    ("198.18.4.0/24", "198.18.4.0/24"),
    ("198.18.4.0/24", "198.18.0.0/16"),
    ("198.18.0.0/16", "198.18.200.128/25"),
])
def test_overlapping_subnets_are_refused_naming_both_networks(existing, requested):
    allocator = NetworkAllocator(LAB_POOL)
    allocator.allocate_network(make_network("old", "frontend", existing))
    with pytest.raises(SubnetOverlap) as info:
        allocator.allocate_network(make_network("new", "backend", requested))
    assert 'network "backend" (new)' in str(info.value)
    assert 'network "frontend" (old)' in str(info.value)


def test_a_given_gateway_is_kept_and_never_handed_out():
    allocator = NetworkAllocator(LAB_POOL)
    network = allocator.allocate_network(make_network("n1", subnet="198.18.9.0/29", gateway="198.18.9.3"))
    assert network.ipam[0].gateway == "198.18.9.3"
    handed = {allocator.allocate_node_ip("n1", f"node{i}") for i in range(5)}
    assert handed == {f"198.18.9.{i}/29" for i in (1, 2, 4, 5, 6)}


def test_address_pool_exhaustion_names_the_network_and_leaves_state_unchanged():
    allocator = NetworkAllocator(("198.18.0.0/23",), 24)
    allocator.allocate_network(make_network("a"))
    allocator.allocate_network(make_network("b"))
    before = allocator.snapshot()
    with pytest.raises(AddressPoolExhausted, match=r'network "backend" \(c\).*198\.18\.0\.0/23.*/24'):
        allocator.allocate_network(make_network("c", "backend"))
    assert allocator.snapshot() == before


def test_unsupported_driver_and_second_ingress_are_refused():
    allocator = NetworkAllocator(LAB_POOL)
    with pytest.raises(InvalidNetworkSpec, match="driver 'bridge'"):
        allocator.allocate_network(make_network("b", driver="bridge"))
    allocator.allocate_network(ingress("ing1"))
    with pytest.raises(InvalidNetworkSpec, match="already has an ingress network"):
        allocator.allocate_network(ingress("ing2"))


def test_allocating_a_network_twice_returns_the_same_allocation():
    allocator = NetworkAllocator(LAB_POOL)
    first = allocator.allocate_network(make_network("n1"))
    assert allocator.allocate_network(make_network("n1")) == first


# ---- VNIs ---------------------------------------------------------------------------------------

def test_vnis_start_at_4096_and_are_not_reused_while_held():
    allocator = NetworkAllocator(LAB_POOL)
    vnis = [allocator.allocate_network(make_network(f"n{i}")).vni for i in range(3)]
    assert vnis == [4096, 4097, 4098]
    allocator.release_network("n1")
    assert allocator.allocate_network(make_network("n9")).vni == 4097
    assert allocator.allocate_network(make_network("n10")).vni == 4099


@pytest.mark.parametrize("option, fragment", [
    ("12", "outside the range"),
    ("16777216", "outside the range"),
    ("5000,5001", "one VXLAN id"),
    ("x", "one VXLAN id"),
    ("²", "one VXLAN id"),
])
def test_bad_vxlanid_options_are_refused(option, fragment):
    allocator = NetworkAllocator(LAB_POOL)
    opts = {"com.docker.network.driver.overlay.vxlanid_list": option}
    with pytest.raises(InvalidNetworkSpec, match=fragment):
        allocator.allocate_network(make_network("n1", opts=opts))
    assert allocator.snapshot().networks == {}


def test_a_requested_vni_is_used_and_cannot_be_taken_twice():
    allocator = NetworkAllocator(LAB_POOL)
    opts = {"com.docker.network.driver.overlay.vxlanid_list": "5000"}
    assert allocator.allocate_network(make_network("n1", "one", opts=opts)).vni == 5000
    with pytest.raises(InvalidNetworkSpec, match='already used by network "one"'):
        allocator.allocate_network(make_network("n2", opts=opts))


def test_vni_exhaustion_is_reported():
    vnis = VNIAllocator(4096, 4097)
    assert [vnis.allocate("a"), vnis.allocate("b")] == [4096, 4097]
    with pytest.raises(VNIExhausted, match="for c: all 2 ids"):
        vnis.allocate("c")


# ---- addresses: services, tasks, nodes ----------------------------------------------------------

@pytest.fixture
def lab() -> NetworkAllocator:
    allocator = NetworkAllocator(LAB_POOL)
    allocator.allocate_network(ingress())                                   # 198.18.0.0/24
    allocator.allocate_network(make_network("back", "backend", "198.18.9.0/29"))
    allocator.allocate_network(make_network("front", "frontend"))          # 198.18.1.0/24
    return allocator


def test_service_gets_a_vip_per_network_with_ingress_first_when_it_publishes(lab):
    service = make_service("s1", "web", ["front", "backend"], [(8080, 80, pb.PortConfig.INGRESS)])
    endpoint = lab.allocate_service(service)
    assert [(v.network_id, v.addr) for v in endpoint.virtual_ips] == [
        ("ing", "198.18.0.2/24"), ("front", "198.18.1.2/24"), ("back", "198.18.9.2/29")]
    assert endpoint.ports[0].published_port == 8080
    assert lab.allocate_service(service) == endpoint


def test_host_mode_ports_do_not_attach_to_ingress(lab):
    endpoint = lab.allocate_service(make_service("s1", "web", ["front"], [(8080, 80, pb.PortConfig.HOST)]))
    assert [v.network_id for v in endpoint.virtual_ips] == ["front"]


def test_dnsrr_services_get_no_vip_and_cannot_publish_ingress_ports(lab):
    assert not lab.allocate_service(make_service("s1", "db", ["front"], dnsrr=True)).virtual_ips
    with pytest.raises(InvalidEndpoint, match=r"service web \(s2\).*dnsrr"):
        lab.allocate_service(make_service("s2", "web", ["front"], [(80, 80, pb.PortConfig.INGRESS)], dnsrr=True))


def test_changing_a_services_networks_keeps_kept_vips_and_frees_the_others(lab):
    service = make_service("s1", "web", ["front", "back"])
    first = {v.network_id: v.addr for v in lab.allocate_service(service).virtual_ips}
    del service.spec.task.networks[1]
    second = {v.network_id: v.addr for v in lab.allocate_service(service).virtual_ips}
    assert second == {"front": first["front"]}
    assert first["back"].split("/")[0] in lab.free_addresses("back")


def test_unknown_networks_and_missing_ingress_are_named():
    allocator = NetworkAllocator(LAB_POOL)
    with pytest.raises(UnknownNetwork, match=r"service web \(s1\): network 'nowhere'"):
        allocator.allocate_service(make_service("s1", "web", ["nowhere"]))
    with pytest.raises(UnknownNetwork, match="no ingress network"):
        allocator.allocate_service(make_service("s1", "web", [], [(80, 80, pb.PortConfig.INGRESS)]))


def test_task_ips_skip_network_broadcast_and_gateway_and_exhaustion_names_the_task(lab):
    service = make_service("s1", "web", ["backend"])
    lab.allocate_service(service)                                   # VIP 198.18.9.2
    addresses = [lab.allocate_task(make_task(f"t{i}", service, slot=i), service)[0].addresses[0]
                 for i in range(1, 5)]
    assert addresses == ["198.18.9.3/29", "198.18.9.4/29", "198.18.9.5/29", "198.18.9.6/29"]
    before = lab.snapshot()
    with pytest.raises(SubnetExhausted) as info:
        lab.allocate_task(make_task("t5", service, slot=5), service)
    message = str(info.value)
    assert 'network "backend" (back)' in message and "task web.5 (t5)" in message
    assert "198.18.9.0/29 is full (5 of 5" in message
    assert lab.snapshot() == before


def test_service_vip_exhaustion_names_the_service(lab):
    for i in range(5):
        lab.allocate_node_ip("back", f"node{i}")
    with pytest.raises(SubnetExhausted, match=r"virtual IP for service api \(s9\) on network \"backend\""):
        lab.allocate_service(make_service("s9", "api", ["back"]))


def test_a_task_that_fails_on_its_second_network_holds_nothing(lab):
    service = make_service("s1", "web", ["front", "back"])
    for i in range(5):
        lab.allocate_node_ip("back", f"node{i}")
    before = lab.snapshot()
    with pytest.raises(SubnetExhausted):
        lab.allocate_task(make_task("t1", service), service)
    assert lab.snapshot() == before


def test_task_attachments_carry_aliases_and_are_idempotent(lab):
    service = make_service("s1", "web", ["front"], [(80, 80, pb.PortConfig.INGRESS)])
    task = make_task("t1", service, aliases={"front": ["web", "www"]})
    attachments = lab.allocate_task(task, service)
    assert [(a.network_id, list(a.aliases)) for a in attachments] == [("ing", []), ("front", ["web", "www"])]
    assert lab.allocate_task(task, service) == attachments


def test_released_addresses_are_reused_only_after_the_others(lab):
    service = make_service("s1", "web", ["front"])
    first = lab.allocate_task(make_task("t1", service), service)[0].addresses[0]
    lab.release_task("t1")
    second = lab.allocate_task(make_task("t2", service), service)[0].addresses[0]
    assert (first, second) == ("198.18.1.2/24", "198.18.1.3/24")


def test_node_ips_are_one_per_node_per_network(lab):
    a = lab.allocate_node_ip("front", "node-a")
    assert lab.allocate_node_ip("frontend", "node-a") == a
    b = lab.allocate_node_ip("front", "node-b")
    c = lab.allocate_node_ip("back", "node-a")
    assert len({a, b, c}) == 3
    lab.release_node("node-a")
    assert {a.split("/")[0], c.split("/")[0]} <= lab.free_addresses("front") | lab.free_addresses("back")


def test_a_network_in_use_cannot_be_released_until_its_holders_are(lab):
    service = make_service("s1", "web", ["front"])
    lab.allocate_service(service)
    lab.allocate_task(make_task("t1", service), service)
    lab.allocate_node_ip("front", "node-a")
    with pytest.raises(NetworkInUse, match=r'network "frontend" \(front\) is in use by service s1, task t1'):
        lab.release_network("front")
    lab.release_service("s1")
    lab.release_task("t1")
    lab.release_network("front")
    assert not lab.is_network_allocated("front")
    assert lab.allocate_network(make_network("again")).ipam[0].subnet == "198.18.1.0/24"


# ---- restore ------------------------------------------------------------------------------------

def test_restore_rebuilds_the_same_state_from_the_objects(lab):
    networks = [ingress(), make_network("back", "backend", "198.18.9.0/29"),
                make_network("front", "frontend")]
    networks = [lab.allocate_network(n) for n in networks]
    service = make_service("s1", "web", ["front"], [(80, 80, pb.PortConfig.INGRESS)])
    service.endpoint.CopyFrom(lab.allocate_service(service))
    task = make_task("t1", service)
    task.networks.extend(lab.allocate_task(task, service))
    node = pb.Node(id="node-a")
    node.attachments.add(network_id="front", addresses=[lab.allocate_node_ip("front", "node-a")])

    fresh = NetworkAllocator(LAB_POOL)
    report = fresh.restore(reversed(networks), [service], [task], [node])
    assert report.problems == [] and report.unallocated_networks == []
    assert fresh.snapshot() == lab.snapshot()
    for network_id in ("ing", "front", "back"):
        assert fresh.free_addresses(network_id) == lab.free_addresses(network_id)
    # the new leader continues without collisions, after the highest address in use
    other = make_service("s2", "api", ["front"])
    assert fresh.allocate_service(other).virtual_ips[0].addr == "198.18.1.5/24"


def test_restore_reports_conflicts_and_lets_the_older_object_win():
    allocator = NetworkAllocator(LAB_POOL)
    old = make_network("old", "a", created_at=1.0)
    old.vni = 4096
    old.ipam.add(subnet="198.18.4.0/24", gateway="198.18.4.1")
    new = make_network("new", "b", created_at=2.0)
    new.vni = 4097
    new.ipam.add(subnet="198.18.4.0/25", gateway="198.18.4.1")
    unallocated = make_network("later", "c", created_at=3.0)
    report = allocator.restore([new, unallocated, old], [], [])
    assert allocator.is_network_allocated("old") and not allocator.is_network_allocated("new")
    assert report.unallocated_networks == ["new", "later"]
    assert any("overlaps" in p for p in report.problems)


def test_restore_skips_dead_tasks_and_reports_duplicate_addresses():
    allocator = NetworkAllocator(LAB_POOL)
    network = allocator.allocate_network(make_network("n1"))
    service = make_service("s1", "web", ["n1"])

    def task_with(task_id: str, addr: str, created_at: float, dead: bool = False) -> pb.Task:
        task = make_task(task_id, service)
        task.meta.created_at = created_at
        task.networks.add(network_id="n1", addresses=[addr])
        if dead:
            task.desired_state = task.status.state = pb.SHUTDOWN
        return task

    tasks = [task_with("t1", "198.18.0.7/24", 1.0), task_with("t2", "198.18.0.7/24", 2.0),
             task_with("t3", "198.18.0.9/24", 3.0, dead=True)]
    assert not task_holds_addresses(tasks[2])
    report = allocator.restore([network], [], tasks)
    assert report.tasks_to_allocate == ["t2"]
    assert "task t2" in report.problems[0] and "held by task" in report.problems[0]
    assert allocator.snapshot().addresses["n1"] == {"198.18.0.7": ("task", "t1")}


def attachment_task(task_id: str, network: str, address: str = "") -> pb.Task:
    """A one-off container's attachment task (network connect [--ip ADDRESS])."""
    task = pb.Task(id=task_id)
    task.spec.attachment.container_id = f"ctr-{task_id}"
    task.spec.networks.add(target=network, addresses=[address] if address else [])
    return task


def test_a_requested_address_is_given_and_then_taken(lab):
    """network connect --ip: that address, or an error naming why (its holder, the subnet) with
    nothing held; a task's own requested address is kept when it is allocated again."""
    task = attachment_task("a1", "front", "198.18.1.77")
    assert [a.addresses[0] for a in lab.allocate_task(task)] == ["198.18.1.77/24"]
    assert lab.allocate_task(task)[0].addresses[0] == "198.18.1.77/24"
    before = lab.snapshot()
    with pytest.raises(InvalidEndpoint, match=r"Address already in use: 198.18.1.77 is already held by"):
        lab.allocate_task(attachment_task("a2", "front", "198.18.1.77"))
    with pytest.raises(InvalidEndpoint, match="no configured subnet contains the IP address 198.18.7.1"):
        lab.allocate_task(attachment_task("a2", "frontend", "198.18.7.1"))
    with pytest.raises(InvalidEndpoint, match="'bogus' is not an IPv4 address"):
        lab.allocate_task(attachment_task("a2", "front", "bogus"))
    assert lab.snapshot() == before
    assert lab.allocate_task(attachment_task("a3", "front"))[0].addresses[0] == "198.18.1.78/24"  # past it
