"""A one-manager swarm: the rules that protect the last manager."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1)


def test_demoting_the_last_manager_is_refused_and_changes_nothing(lab):
    before = lab.nodes("manager1")
    result = lab.shoal("manager1", "node", "demote", "manager1", check=False)
    assert result.returncode == 1
    assert "last manager" in result.stderr
    after = lab.nodes("manager1")
    assert [(n["ID"], n["ManagerStatus"]) for n in after] == [(n["ID"], n["ManagerStatus"]) for n in before]
    inspect = json.loads(lab.shoal("manager1", "node", "inspect", "self").stdout)[0]
    assert inspect["Spec"]["Role"] == "manager"


def test_a_manager_must_force_leave(lab):
    result = lab.shoal("manager1", "swarm", "leave", check=False)
    assert result.returncode == 1 and "--force" in result.stderr
    assert lab.nodes("manager1")


def test_init_twice_is_refused(lab):
    result = lab.shoal("manager1", "swarm", "init", "--advertise-addr", lab.address("manager1"), check=False)
    assert result.returncode == 1 and "already part of a swarm" in result.stderr


def test_node_without_certificate_is_refused_on_the_node_port(lab):
    """A client that presents no certificate gets a clear refusal on node RPCs."""
    script = (
        "import grpc,sys\n"
        "from manager.ca import channel_credentials, channel_options\n"
        "from proto import cluster_pb2, cluster_pb2_grpc\n"
        f"ca=open('{lab.host('manager1').state_dir}/certificates/ca.crt','rb').read()\n"
        f"ch=grpc.secure_channel('{lab.address('manager1')}:2377', channel_credentials(ca), options=channel_options())\n"
        "try:\n"
        "    cluster_pb2_grpc.DispatcherStub(ch).Heartbeat(cluster_pb2.HeartbeatRequest(session_id='x'), timeout=5)\n"
        "except grpc.RpcError as e:\n"
        "    print(e.code().name, e.details())\n"
    )
    import sys
    out = lab.exec("manager1", [sys.executable, "-c", script]).stdout
    assert out.startswith("UNAUTHENTICATED no client certificate presented"), out
