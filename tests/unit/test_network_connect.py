"""docker network connect/disconnect for one-off containers: the pure parts (interface naming,
spec rules, runtimed's refusals, the worker's release of every attachment a container holds,
the CLI's and Docker API's requests). The kernel side is tests/privileged/test_network.py
(test_network_connect_and_disconnect_keep_the_other_interfaces)."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from agent_runtime.container_record import Runtime
from agent_runtime.errors import Forbidden, InvalidArgument
from agent_runtime.network.plan import LocalContainer, endpoints_for, free_interface, host_veth, wanted_veths
from agent_runtime.server import _connectable, _pinned
from agent_runtime.spec import ATTACHMENT_LABEL, ContainerSpec, NetworkAttachment, validate_spec
from proto import control_pb2
from shoal.cli import networks as cli_networks
from shoal.dockerapi import convert
from shoal.dockerapi.convert import BadRequest, Unsupported
from worker.attachments import Attachments
from worker.events import REMOVED, ContainerEvents, Observed

CID = "c" * 64


def test_interfaces_keep_their_names_and_new_ones_take_the_lowest_free():
    nets = [NetworkAttachment(network_id="b", address="198.18.2.5/24", interface="eth1"),
            NetworkAttachment(network_id="f", address="198.18.1.5/24", interface="eth3")]
    eps = endpoints_for(CID, nets)
    assert [(e.ifname, e.host_if) for e in eps] == [("eth1", host_veth(CID, 1)), ("eth3", host_veth(CID, 3))]
    plain = endpoints_for(CID, [NetworkAttachment(network_id="x", address="198.18.3.5/24")] * 2)
    assert [e.ifname for e in plain] == ["eth0", "eth1"]          # containers made before: by position
    assert free_interface({"eth1", "eth3"}) == "eth0" and free_interface({"eth0", "eth1"}) == "eth2"
    lc = LocalContainer(id=CID, name="c", hostname="c", netns="ns", endpoints=eps, gateway_ip="198.19.0.3")
    assert lc.egress_interface() == "eth2"                        # default: after the endpoints
    assert wanted_veths(lc) == {host_veth(CID, 1), host_veth(CID, 3), host_veth(CID, "g")}
    lc.gateway_ip = ""
    assert wanted_veths(lc) == {host_veth(CID, 1), host_veth(CID, 3)}


@pytest.mark.parametrize("interfaces, fragment", [
    (["eth16", ""], "'eth16' is not eth0 to eth15"),
    (["wlan0", ""], "'wlan0' is not eth0 to eth15"),
    (["eth01", ""], "'eth01' is not eth0 to eth15"),
    (["eth1", ""], "eth1 is given twice"),          # the second is eth1 by position
])
def test_bad_interface_names_are_refused(interfaces, fragment):
    spec = ContainerSpec(image="busybox", networks=[
        NetworkAttachment(network_id=f"n{i}", address=f"198.18.{i}.5/24", interface=name)
        for i, name in enumerate(interfaces)])
    with pytest.raises(InvalidArgument, match=fragment):
        validate_spec(spec)


def container(network="none", networks=(), labels=None, overlay=False):
    spec = ContainerSpec(image="busybox", network=network, networks=list(networks), labels=dict(labels or {}))
    runtime = Runtime(overlay=overlay)
    return SimpleNamespace(name="web", spec=spec, runtime=runtime,
                           on_overlay=lambda: bool(spec.networks) or runtime.overlay)


@pytest.mark.parametrize("c, error, fragment", [
    (container(), InvalidArgument, r"connected to multiple networks with one of the networks in private \(none\) mode"),
    (container("host"), InvalidArgument, "cannot be disconnected from host network or connected to host network"),
    (container("/run/netns/x"), InvalidArgument, "sharing network namespace with another container or host"),
    (container(labels={"com.docker.swarm.task.id": "t1"}), Forbidden, "service update --network-add"),
])
def test_docker_refuses_connecting_containers_not_on_swarm_networks(c, error, fragment):
    with pytest.raises(error, match=fragment):
        _connectable(c)


def test_containers_on_the_data_plane_can_connect_even_with_no_network_left():
    _connectable(container(networks=[NetworkAttachment(network_id="n", address="198.18.1.2/24")]))
    _connectable(container(overlay=True))


def test_pinned_fixes_interfaces_and_adopts_the_label_of_an_older_container():
    old = container(networks=[NetworkAttachment(network_id="n", address="198.18.1.2/24")],
                    labels={ATTACHMENT_LABEL: "att0"})
    assert [(a.interface, a.attachment_id) for a in _pinned(old)] == [("eth0", "att0")]
    assert old.spec.networks[0].interface == ""                    # a copy: the record is unchanged
    two = container(networks=[NetworkAttachment(network_id="n", address="198.18.1.2/24", attachment_id="a"),
                              NetworkAttachment(network_id="m", address="198.18.2.2/24", interface="eth4")],
                    labels={ATTACHMENT_LABEL: "a"})
    assert [(a.interface, a.attachment_id) for a in _pinned(two)] == [("eth0", "a"), ("eth4", "")]


async def test_a_removed_container_releases_every_attachment_it_holds():
    events = ContainerEvents(runtime=None)
    released = []
    done = asyncio.Event()

    async def detach(attachment_id):
        released.append(attachment_id)
        if len(released) == 2:
            done.set()

    keeper = Attachments(events, detach)
    events.apply(Observed("c1", attachment_id="att1,att2"))
    assert events.attached("att2") and not events.attached("att")
    events.apply(Observed("c1", status=REMOVED))
    await asyncio.wait_for(done.wait(), 10)
    assert sorted(released) == ["att1", "att2"]
    await keeper.close()


class Daemon:
    host, timeout = "unix:///fake.sock", 5.0

    def __init__(self):
        self.requests = []

    def call(self, method, request, timeout=None):
        self.requests.append((method, request))
        return getattr(control_pb2, f"{method}Response")()


def test_cli_connect_and_disconnect_send_what_docker_takes():
    daemon = Daemon()
    result = CliRunner().invoke(cli_networks.network, ["connect", "--alias", "db", "--alias", "pg", "--ip",
                                                       "198.18.1.9", "back", "web"], obj=daemon)
    assert result.exit_code == 0 and result.output == ""
    result = CliRunner().invoke(cli_networks.network, ["disconnect", "-f", "back", "web"], obj=daemon)
    assert result.exit_code == 0 and result.output == ""
    (m1, connect), (m2, disconnect) = daemon.requests
    assert (m1, connect.network_id, connect.connect_container, list(connect.aliases), connect.address) == \
        ("AttachNetwork", "back", "web", ["db", "pg"], "198.18.1.9")
    assert (m2, disconnect.network_id, disconnect.container, disconnect.force) == ("DetachNetwork", "back", "web", True)


@pytest.mark.parametrize("flag", [["--ip6", "2001:db8::33"], ["--link", "db:db"], ["--link-local-ip", "169.254.0.9"],
                                  ["--driver-opt", "a=b"]])
def test_cli_connect_refuses_what_overlays_cannot_do(flag):
    daemon = Daemon()
    result = CliRunner().invoke(cli_networks.network, ["connect", *flag, "back", "web"], obj=daemon)
    assert result.exit_code == 2 and f"{flag[0]} is not supported" in result.output and not daemon.requests


def test_docker_api_bodies():
    body = {"Container": "web", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "198.18.1.9", "IPv6Address": ""},
                                                   "Links": None, "Aliases": ["db"], "DriverOpts": None}}
    assert convert.parse_network_connect(body) == ("web", ["db"], "198.18.1.9")
    assert convert.parse_network_connect({"Container": "web"}) == ("web", [], "")
    with pytest.raises(Unsupported, match="IPv6Address"):
        convert.parse_network_connect({"Container": "web", "EndpointConfig": {"IPAMConfig": {"IPv6Address": "::1"}}})
    with pytest.raises(BadRequest, match="Container"):
        convert.parse_network_connect({"EndpointConfig": {}})
    assert convert.parse_network_disconnect({"Container": "web", "Force": True}) == ("web", True)
    with pytest.raises(BadRequest, match="Force: expected a boolean"):
        convert.parse_network_disconnect({"Container": "web", "Force": "yes"})
