"""The lab's naming and address plan (pure; needs no root)."""
from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from shoal.lab.errors import LabError
from shoal.lab.plan import (
    LabPlan,
    allocate_network,
    block_prefix_for,
    lab_cgroup_pattern,
    lab_netns_pattern,
    validate_lab_name,
)

net = ipaddress.IPv4Network


def make_plan(managers: int = 3, workers: int = 2, network: str = "192.0.2.16/28", name: str = "lab") -> LabPlan:
    return LabPlan(name, net(network), managers, workers, Path("/var/lib/shoal-lab"))


def test_hosts_get_dense_addresses_after_the_registry():
    plan = make_plan()
    assert plan.registry == "192.0.2.17:5000"
    assert [(h.name, h.role, str(h.address)) for h in plan.hosts] == [
        ("manager1", "manager", "192.0.2.18"),
        ("manager2", "manager", "192.0.2.19"),
        ("manager3", "manager", "192.0.2.20"),
        ("worker1", "worker", "192.0.2.21"),
        ("worker2", "worker", "192.0.2.22"),
    ]
    assert {h.prefixlen for h in plan.hosts} == {28}


def test_host_names_paths_and_sockets():
    host = make_plan(name="demo").host("worker2")
    assert host.netns == "shoal-demo-worker2"
    assert host.cgroup_parent == "shoal-lab-demo-worker2"
    assert host.underlay_link == "v-worker2"
    assert host.socket == Path("/var/lib/shoal-lab/demo/worker2/run/shoal.sock")
    assert host.runtime_socket == Path("/var/lib/shoal-lab/demo/worker2/run/runtimed.sock")
    assert host.metrics_addr == "192.0.2.22:9323"


@pytest.mark.parametrize("host", ["worker3", "manager0", "manager4", "node1", "worker01", ""])
def test_unknown_host_is_refused_with_its_name(host):
    with pytest.raises(LabError, match="no host"):
        make_plan().host(host)


@pytest.mark.parametrize(("hosts", "prefix"), [(1, 28), (13, 28), (14, 27), (29, 27), (30, 26), (253, 24)])
def test_block_is_the_smallest_that_fits(hosts, prefix):
    assert block_prefix_for(hosts) == prefix


def test_too_many_hosts_for_the_supernet():
    with pytest.raises(LabError, match="does not fit"):
        block_prefix_for(254)


def test_allocation_is_first_fit_and_aligned():
    assert allocate_network([], 5) == net("192.0.2.0/28")
    assert allocate_network([net("192.0.2.0/28")], 5) == net("192.0.2.16/28")
    assert allocate_network([net("192.0.2.16/28")], 5) == net("192.0.2.0/28")
    # a /27 cannot start at .0 when .16/28 is taken
    assert allocate_network([net("192.0.2.16/28")], 20) == net("192.0.2.32/27")


def test_allocation_fails_when_full_and_names_the_blocks():
    used = list(net("192.0.2.0/24").subnets(new_prefix=28))
    with pytest.raises(LabError, match="no free /28.*192.0.2.240/28"):
        allocate_network(used, 3)


@pytest.mark.parametrize("name", ["lab", "a", "demo-2", "t-cluster-0a1b2c", "x" * 24])
def test_valid_lab_names(name):
    assert validate_lab_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "Lab", "a_b", "a.b", "x" * 25, "a/b"])
def test_invalid_lab_names(name):
    with pytest.raises(LabError, match="invalid"):
        validate_lab_name(name)


def test_patterns_match_only_this_labs_names():
    netns = lab_netns_pattern("a")
    assert netns.match("shoal-a-ul") and netns.match("shoal-a-manager1") and netns.match("shoal-a-worker12")
    assert not netns.match("shoal-a-b-manager1")  # lab "a-b"
    assert not netns.match("shoal-ab-ul")
    groups = lab_cgroup_pattern("a")
    assert groups.match("shoal-lab-a-worker1")
    assert not groups.match("shoal-lab-a-b-worker1") and not groups.match("shoal-lab-a-worker1x")


def test_plan_rejects_bad_shapes():
    with pytest.raises(LabError, match="at least 1 manager"):
        make_plan(managers=0)
    with pytest.raises(LabError, match="too small"):
        make_plan(managers=10, workers=10)
