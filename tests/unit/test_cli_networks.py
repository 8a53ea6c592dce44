"""`shoal network ...` against a fake ControlAPI: the ls table and JSON lines, inspect's Docker
shape, the CreateNetworkRequest that create's flags build, and rm/inspect exit codes."""

from __future__ import annotations

import json

import grpc
import pytest
from click.testing import CliRunner

from proto import control_pb2, objects_pb2 as pb
from shoal.cli import networks as cli_networks
from shoal.cli.main import cli as shoal_cli

CREATED = 1700000000.5


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


def make_network(network_id, name, vni=0, subnets=(), requested=(), **flags) -> pb.Network:
    network = pb.Network(id=network_id, vni=vni)
    network.meta.created_at = CREATED
    network.spec.annotations.name = name
    network.spec.driver = "overlay"
    for field, value in flags.items():
        setattr(network.spec, field, value)
    for subnet, gateway in subnets:
        network.ipam.add(subnet=subnet, gateway=gateway)
    for subnet, gateway in requested:
        network.spec.ipam.add(subnet=subnet, gateway=gateway)
    return network


class FakeClient:
    """Answers ControlAPI calls from a dict of networks; records the requests it got."""
    host = "unix:///fake.sock"
    timeout = 5.0

    def __init__(self, *networks):
        self.networks = {n.id: n for n in networks}
        self.requests = []
        self.stub = self
        self.in_use = {}

    def call(self, method, request, timeout=None):
        return getattr(self, method)(request)

    def _find(self, ref):
        for n in self.networks.values():
            if ref in (n.id, n.spec.annotations.name) or n.id.startswith(ref):
                return n
        raise FakeRpcError(grpc.StatusCode.NOT_FOUND, f"network {ref} not found")

    def CreateNetwork(self, request, timeout=None):
        self.requests.append(request)
        network = pb.Network(id="n" * 25, spec=request.spec, vni=4097)
        return control_pb2.CreateNetworkResponse(network=network)

    def ListNetworks(self, request, timeout=None):
        self.requests.append(request)
        return control_pb2.ListNetworksResponse(networks=list(self.networks.values()))

    def GetNetwork(self, request, timeout=None):
        return control_pb2.GetNetworkResponse(network=self._find(request.network_id))

    def RemoveNetwork(self, request, timeout=None):
        network = self._find(request.network_id)
        if network.id in self.in_use:
            raise FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, self.in_use[network.id])
        del self.networks[network.id]
        return control_pb2.RemoveNetworkResponse()


INGRESS = make_network("ingress0000000000000000000", "ingress", vni=4096,
                       subnets=[("198.18.0.0/24", "198.18.0.1")], ingress=True)
BACKEND = make_network("backend000000000000000000a", "backend", vni=4097,
                       subnets=[("198.18.1.0/24", "198.18.1.1")], attachable=True)


def run(client, *args):
    return CliRunner().invoke(cli_networks.network, list(args), obj=client)


def test_the_shoal_command_has_the_network_group():
    result = CliRunner().invoke(shoal_cli, ["network", "--help"])
    assert result.exit_code == 0
    for command in ("create", "ls", "inspect", "rm"):
        assert command in result.output


def test_ls_prints_a_table_with_short_ids_and_swarm_scope():
    result = run(FakeClient(INGRESS, BACKEND), "ls")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert lines[1].split() == ["ingress00000", "ingress", "overlay", "swarm"]
    assert lines[2].split() == ["backend00000", "backend", "overlay", "swarm"]


def test_ls_json_is_one_object_per_line_with_docker_fields():
    labelled = make_network("labels000000000000000000aa", "db", internal=True)
    labelled.spec.annotations.labels["tier"] = "db"
    labelled.spec.annotations.labels["env"] = "prod"
    result = run(FakeClient(INGRESS, labelled), "ls", "--format", "json")
    first, second = [json.loads(line) for line in result.output.splitlines()]
    assert first == {"ID": "ingress00000", "Name": "ingress", "Driver": "overlay", "Scope": "swarm",
                     "IPv6": "false", "Internal": "false", "Attachable": "false", "Ingress": "true",
                     "Labels": "", "CreatedAt": "2023-11-14T22:13:20.5Z"}
    assert second["Internal"] == "true" and second["Labels"] == "env=prod,tier=db"


def test_ls_quiet_and_no_trunc_and_filters_reach_the_request():
    client = FakeClient(INGRESS, BACKEND)
    result = run(client, "ls", "-q", "--no-trunc", "-f", "name=back", "-f", "name=ing", "-f", "driver=overlay")
    assert result.output.splitlines() == [INGRESS.id, BACKEND.id]
    assert dict(client.requests[-1].filters) == {"name": "back,ing", "driver": "overlay"}
    assert run(client, "ls", "-f", "name").exit_code != 0


def test_inspect_prints_docker_shaped_json_array():
    network = make_network("backend000000000000000000a", "backend", vni=4097,
                           subnets=[("198.18.1.0/24", "198.18.1.1")], attachable=True)
    network.spec.driver_opts["encrypted"] = ""
    network.spec.annotations.labels["tier"] = "db"
    result = run(FakeClient(network), "inspect", "backend")
    assert result.exit_code == 0
    [shown] = json.loads(result.output)
    assert shown == {
        "Name": "backend", "Id": network.id, "Created": "2023-11-14T22:13:20.5Z", "Scope": "swarm",
        "Driver": "overlay", "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None,
                 "Config": [{"Subnet": "198.18.1.0/24", "Gateway": "198.18.1.1"}]},
        "Internal": False, "Attachable": True, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": None,
        "Options": {"com.docker.network.driver.overlay.vxlanid_list": "4097", "encrypted": ""},
        "Labels": {"tier": "db"},
    }


def test_inspect_of_an_unallocated_network_shows_the_requested_subnet_and_no_vni():
    pending = make_network("pending00000000000000000aa", "pending", requested=[("198.19.0.0/24", "")])
    shown = cli_networks.network_inspect(pending)
    assert shown["IPAM"]["Config"] == [{"Subnet": "198.19.0.0/24"}]
    assert shown["Options"] == {}


def test_inspect_prints_what_it_found_and_fails_for_the_rest():
    result = CliRunner().invoke(cli_networks.network, ["inspect", "backend", "nope"], obj=FakeClient(BACKEND))
    assert result.exit_code == 1
    assert [n["Name"] for n in json.loads(result.stdout)] == ["backend"]
    assert "No such network: nope" in result.stderr


def test_create_builds_the_spec_from_docker_flags_and_prints_the_id():
    client = FakeClient()
    result = run(client, "create", "-d", "overlay", "--subnet", "198.18.8.0/24", "--gateway", "198.18.8.254",
                 "--attachable", "--internal", "--opt", "encrypted", "--label", "tier=db", "secure")
    assert result.exit_code == 0 and result.output == "n" * 25 + "\n"
    spec = client.requests[0].spec
    assert spec.annotations.name == "secure" and spec.driver == "overlay"
    assert [(c.subnet, c.gateway) for c in spec.ipam] == [("198.18.8.0/24", "198.18.8.254")]
    assert spec.attachable and spec.internal and not spec.ingress
    assert dict(spec.driver_opts) == {"encrypted": ""}
    assert dict(spec.annotations.labels) == {"tier": "db"}


def test_create_defaults_to_overlay_and_refuses_a_gateway_without_subnet():
    client = FakeClient()
    assert run(client, "create", "plain").exit_code == 0
    assert client.requests[0].spec.driver == "overlay" and not client.requests[0].spec.ipam
    result = run(client, "create", "--gateway", "198.18.8.1", "bad")
    assert result.exit_code != 0 and "--gateway" in result.output and len(client.requests) == 1


def test_rm_removes_what_it_can_prints_names_and_fails_for_networks_in_use():
    client = FakeClient(INGRESS, BACKEND)
    client.in_use[INGRESS.id] = "network ingress is in use by service web"
    result = CliRunner().invoke(cli_networks.network, ["rm", "backend", "ingress"], obj=client)
    assert result.exit_code == 1
    assert result.stdout == "backend\n"
    assert "Error response from daemon: network ingress is in use by service web" in result.stderr
    assert list(client.networks) == [INGRESS.id]


@pytest.mark.parametrize("args", [["inspect"], ["rm"], ["create"]])
def test_commands_need_their_arguments(args):
    assert run(FakeClient(), *args).exit_code == 2
