"""`docker swarm init|join|leave|update|unlock` on shoald's Docker API: the bodies docker CLI 28 sends,
read into Shoal's requests; refusals name the field; a daemon in no swarm answers Docker's texts."""
from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proto import objects_pb2 as pb
from shoal.daemon.config import listen_and_advertise
from shoal.daemon.roles import Daemon
from shoal.dockerapi import make_app
from shoal.dockerapi.convert import BadRequest, Unsupported
from shoal.dockerapi.swarm import NOT_IN_A_SWARM, parse_cluster_spec, parse_init, parse_join

# `docker swarm init --advertise-addr 192.0.2.10 --task-history-limit 3 --dispatcher-heartbeat 2s` (CLI 28)
CLI_INIT = {"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "192.0.2.10", "DataPathAddr": "", "DataPathPort": 0,
            "DefaultAddrPool": None, "SubnetSize": 0, "ForceNewCluster": False, "AutoLockManagers": False,
            "Availability": "", "Spec": {"Labels": None, "Orchestration": {"TaskHistoryRetentionLimit": 3},
                                         "Raft": {"ElectionTick": 0, "HeartbeatTick": 0},
                                         "Dispatcher": {"HeartbeatPeriod": 2_000_000_000}, "CAConfig": {},
                                         "TaskDefaults": {}, "EncryptionConfig": {"AutoLockManagers": False}}}


def test_init_body_translates():
    request, history = parse_init(CLI_INIT)
    assert request.listen_addr == "0.0.0.0:2377" and request.advertise_addr == "192.0.2.10"
    assert request.dispatcher_heartbeat == 2.0 and request.election_tick == 0 and not request.autolock
    assert history == 3
    request, history = parse_init(CLI_INIT | {"AutoLockManagers": True, "Spec": {}})
    assert request.autolock and history is None
    assert parse_init({"Spec": {"EncryptionConfig": {"AutoLockManagers": True}}})[0].autolock   # the SDK's place


@pytest.mark.parametrize("change, error, message", [
    ({"DataPathAddr": "192.0.2.11"}, Unsupported, "InitRequest.DataPathAddr is not supported"),
    ({"DataPathPort": 5000}, Unsupported, "DataPathPort 5000 is not supported"),
    ({"Availability": "drain"}, Unsupported, "Availability 'drain' is not supported by Shoal at init"),
    ({"SubnetSize": 40}, BadRequest, "SubnetSize: must be at most 32"),
    ({"ListenAddr": 2377}, BadRequest, "InitRequest.ListenAddr: expected a string, got number"),
    ({"Spec": {"CAConfig": {"ExternalCAs": [{"URL": "https://ca"}]}}}, Unsupported, "ExternalCAs is not supported"),
    ({"Spec": {"TaskDefaults": {"LogDriver": {"Name": "syslog"}}}}, Unsupported, "LogDriver is not supported"),
    ({"Spec": {"Name": "prod"}}, Unsupported, "always named"),
    ({"Bogus": 1}, Unsupported, "InitRequest.Bogus is not supported by Shoal"),
])
def test_init_refusals_name_the_field(change, error, message):
    with pytest.raises(error, match=message):
        parse_init(CLI_INIT | change)


def test_join_body_translates_and_needs_a_token_and_a_manager():
    request = parse_join({"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "", "DataPathAddr": "",
                          "RemoteAddrs": ["192.0.2.10:2377"], "JoinToken": "SHTKN-1-a-b", "Availability": ""})
    assert request.remote_addr == "192.0.2.10:2377" and request.join_token == "SHTKN-1-a-b"
    assert request.availability == "active" and request.advertise_addr == ""
    with pytest.raises(BadRequest, match="RemoteAddrs: at least one"):
        parse_join({"JoinToken": "t"})
    with pytest.raises(BadRequest, match="JoinToken must not be empty"):
        parse_join({"RemoteAddrs": ["192.0.2.10"]})


def test_update_spec_round_trips_and_keeps_what_docker_has_no_field_for():
    current = pb.ClusterSpec(default_addr_pool=["198.18.0.0/15"], subnet_size=24)
    current.annotations.name = "default"
    current.orchestration.task_history_retention_limit = 5
    current.raft.election_tick, current.raft.heartbeat_tick = 10, 1
    current.dispatcher.heartbeat_period = 5.0
    spec = pb.ClusterSpec()
    spec.CopyFrom(current)
    # `docker swarm update --task-history-limit 2 --cert-expiry 48h`: the spec as read, changed
    parse_cluster_spec({"Name": "default", "Labels": {}, "Orchestration": {"TaskHistoryRetentionLimit": 2},
                        "Raft": {"ElectionTick": 10, "HeartbeatTick": 1},
                        "Dispatcher": {"HeartbeatPeriod": 5_000_000_000},
                        "CAConfig": {"NodeCertExpiry": 48 * 3600 * 10**9, "ForceRotate": 1}, "TaskDefaults": {},
                        "EncryptionConfig": {"AutoLockManagers": True}}, spec)
    assert spec.orchestration.task_history_retention_limit == 2 and spec.ca_config.node_cert_expiry == 48 * 3600
    assert spec.ca_config.force_rotate == 1 and spec.encryption_config.auto_lock_managers
    assert list(spec.default_addr_pool) == ["198.18.0.0/15"] and spec.subnet_size == 24
    with pytest.raises(BadRequest, match=r"Spec\.Raft\.ElectionTick: expected an integer"):
        parse_cluster_spec({"Raft": {"ElectionTick": "10"}}, spec)


def test_join_advertises_the_address_it_reaches_the_manager_from():
    assert listen_and_advertise("0.0.0.0:2377", "", toward="127.0.0.1") == ("0.0.0.0", 2377, "127.0.0.1")
    assert listen_and_advertise("", "192.0.2.9", toward="127.0.0.1")[2] == "192.0.2.9"


@pytest.fixture
async def client(tmp_path):
    daemon = Daemon(tmp_path / "state", tmp_path / "shoal.sock", "h1")
    async with TestClient(TestServer(make_app(daemon))) as c:
        yield c


@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/v1.50/swarm/leave", None, 503, NOT_IN_A_SWARM),
    ("POST", "/v1.50/swarm/update?version=1", b"{}", 503, "This node is not a swarm manager"),
    ("GET", "/v1.50/swarm/unlockkey", None, 503, "This node is not a swarm manager"),
    ("POST", "/v1.50/swarm/init", b'{"ListenAddr":', 400, "invalid JSON in the init request"),
    ("POST", "/v1.50/swarm/init", b'{"DataPathAddr": "eth1"}', 501, "DataPathAddr is not supported"),
    ("POST", "/v1.50/swarm/join", b'{"RemoteAddrs": []}', 400, "at least one manager address"),
    ("POST", "/v1.50/swarm/update", b"{}", 400, "invalid version"),
])
async def test_swarm_endpoints_refuse_in_dockers_shape(client, method, path, body, status, message):
    r = await client.request(method, path, data=body)
    assert r.status == status
    assert r.headers["Content-Type"] == "application/json"
    assert message in (await r.json())["message"]
