"""NetworkState: JSON round trip, validation messages, and the pure plan decisions."""

from __future__ import annotations

import pytest

from agent_runtime.api import InvalidArgument, NetworkAttachment, NetworkState, Peer, PortConfig, Service, mac_from_ip
from agent_runtime.network.model import validate_state
from agent_runtime.network.plan import (active_networks, allocate_gateway_ip, host_veth, is_veth_of_ours, needs_egress,
                                        neighbours, netns_name, vni_of_device)
from agent_runtime.spec import ContainerSpec, validate_spec
from tests.support.network_model import local, make_state


def test_json_round_trip_uses_docker_style_names():
    state = make_state()
    data = state.to_json()
    assert data["UnderlayIP"] == "192.0.2.11"
    assert data["Networks"][0]["VNI"] == 4096 and data["Networks"][0]["HostGatewayIP"] == "198.18.0.241"
    assert data["Services"][0]["VirtualIPs"] == [{"NetworkID": "front", "Addr": "198.18.1.100/24"}]
    assert data["Services"][0]["Backends"][0]["Addresses"] == {"front": "198.18.1.11", "ing": "198.18.0.11"}
    assert NetworkState.from_json(data) == state
    validate_state(state)


def test_unknown_fields_are_refused():
    with pytest.raises(InvalidArgument, match="unknown field"):
        NetworkState.from_json({"UnderlayIP": "192.0.2.1", "Netwerks": []})


@pytest.mark.parametrize("change, message", [
    (lambda s: setattr(s, "underlay_ip", "nope"), "UnderlayIP"),
    (lambda s: setattr(s.networks[1], "subnet", "198.18.0.128/25"), "overlaps network ing"),
    (lambda s: setattr(s.networks[1], "subnet", "198.18.1.1/24"), "not an IPv4 subnet"),
    (lambda s: setattr(s.networks[1], "vni", 4096), "VNI"),
    (lambda s: setattr(s.networks[1], "host_gateway_ip", ""), "HostGatewayIP: required"),
    (lambda s: setattr(s.networks[1], "host_gateway_ip", "198.18.9.1"), "not a host address of 198.18.1.0/24"),
    (lambda s: setattr(s, "gateway_bridge_subnet", "198.18.1.0/25"), "overlaps the gateway bridge"),
    (lambda s: s.peers.append(Peer("nope", "198.18.1.5", "192.0.2.12")), "unknown network 'nope'"),
    (lambda s: setattr(s.services[0].ports[0], "protocol", "icmp"), "Protocol"),
    (lambda s: setattr(s.services[0].ports[0], "published_port", 0), "outside 1-65535"),
    (lambda s: setattr(s.services[0], "endpoint_mode", "rr"), "EndpointMode"),
    (lambda s: s.services.append(Service(id="s2", name="web")), "already used by service s1"),
    (lambda s: s.services.append(Service(id="s2", name="other", ports=[PortConfig(81, 8080)])),
     "8080/tcp is already published by service shop_web"),
    (lambda s: setattr(s.networks[0], "ingress", False), "needs a network with Ingress set"),
])
def test_bad_state_is_refused_naming_the_field(change, message):
    state = make_state()
    change(state)
    with pytest.raises(InvalidArgument, match=message):
        validate_state(state)


def test_container_network_attachments_are_validated():
    ok = ContainerSpec(image="x", networks=[NetworkAttachment("front", "198.18.1.5/24", aliases=["api"])])
    validate_spec(ok)
    assert ContainerSpec.from_json(ok.to_json()) == ok
    for bad, message in [
        (ContainerSpec(image="x", network="host", networks=[NetworkAttachment("a", "198.18.1.5/24")]), "NetworkMode"),
        (ContainerSpec(image="x", networks=[NetworkAttachment("a", "198.18.1.5")]), "with a prefix"),
        (ContainerSpec(image="x", networks=[NetworkAttachment("a", "198.18.1.0/24")]), "not a host address"),
        (ContainerSpec(image="x", networks=[NetworkAttachment("a", "198.18.1.5/24"),
                                            NetworkAttachment("a", "198.18.1.6/24")]), "duplicate"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            validate_spec(bad)


def test_names_are_short_and_recognisable():
    cid = "0123456789abcdef" * 4
    assert netns_name("cafe1234", cid) == "shoal-cafe1234-0123456789ab"
    assert len(host_veth(cid, 14)) <= 15
    assert is_veth_of_ours(host_veth(cid, 14)) and is_veth_of_ours(host_veth(cid, "g"))
    assert not is_veth_of_ours("shov4097") and not is_veth_of_ours("shvx4097")
    assert vni_of_device("shvx4097") == 4097 and vni_of_device("shoal_gwbridge") is None
    assert mac_from_ip("198.18.0.5") == "02:42:c6:12:00:05"


def test_networks_live_only_where_needed():
    state = make_state()
    c = local("c1", NetworkAttachment("front", "198.18.1.12/24"))
    assert [n.id for n in active_networks(state, [c])] == ["ing", "front"]   # ingress: a port is published
    state.services[0].ports = []
    assert [n.id for n in active_networks(state, [c])] == ["front"]
    assert active_networks(state, []) == []
    assert needs_egress(state, ["front"]) and not needs_egress(state, ["priv"])


def test_peers_behind_this_host_are_not_programmed():
    state = make_state()
    entries = neighbours(state, active_networks(state, [local("c1", NetworkAttachment("front", "198.18.1.12/24"))]))
    assert entries["front"] == {("198.18.1.21", "02:42:c6:12:01:15", "192.0.2.12"),
                                ("198.18.1.242", "02:42:c6:12:01:f2", "192.0.2.12")}
    assert entries["ing"] == set()


def test_gateway_addresses_skip_the_bridge_and_taken_ones():
    state = make_state()
    assert allocate_gateway_ip(state, set()) == "198.19.200.2"
    assert allocate_gateway_ip(state, {"198.19.200.2", "198.19.200.3"}) == "198.19.200.4"
    with pytest.raises(ValueError, match="full"):
        allocate_gateway_ip(make_state(gateway_bridge_subnet="198.19.200.0/30"), {"198.19.200.2"})
