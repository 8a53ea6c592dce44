"""shoald's recovery calls in process, on loopback, without a container runtime.

A one-manager swarm moved to a new address with ``swarm init --force-new-cluster
--advertise-addr`` (new certificate for the new IP, new Raft address, one member, every object
kept, restart-proof), and ``--restore`` refusing a damaged backup without writing anything.
"""

from __future__ import annotations

import asyncio

import pytest
from cryptography import x509

from manager.secretbox import SecretBox
from manager.state import Kind
from proto import control_pb2, objects_pb2
from shoal.daemon.config import DaemonError
from shoal.daemon.roles import Daemon
from tests.support.ports import reserve_port

pytestmark = pytest.mark.timeout(90)

OLD, NEW = "127.0.0.2", "127.0.0.3"


def free_base_port() -> int:
    """A port P with P, P+1 and P+2 reserved on both test addresses (join, Raft, mutual TLS)."""
    for _ in range(100):
        base = reserve_port(OLD)
        if base + 2 >= 65536:
            continue
        try:
            for host, port in [(OLD, base + 1), (OLD, base + 2), (NEW, base), (NEW, base + 1), (NEW, base + 2)]:
                reserve_port(host, port)
        except OSError:
            continue
        return base
    raise OSError("no free port triple on loopback")


@pytest.fixture
async def daemons(tmp_path):
    made: list[Daemon] = []

    def make(name: str) -> Daemon:
        daemon = Daemon(tmp_path / name / "state", tmp_path / name / "shoal.sock", name)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        await daemon.stop_node()


async def wait_connected(daemon: Daemon) -> None:
    assert daemon.agent is not None
    await asyncio.wait_for(daemon.agent.connected.wait(), 20)


def cert_ips(daemon: Daemon) -> list[str]:
    cert = x509.load_pem_x509_certificate(daemon.state.load_certificates()[0])
    return [str(ip) for ip in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            .value.get_values_for_type(x509.IPAddress)]


async def test_force_new_cluster_moves_a_single_manager_to_a_new_address(daemons):
    port = free_base_port()
    daemon = daemons("a")
    made = await daemon.init(control_pb2.SwarmInitRequest(listen_addr=f"{OLD}:{port}", advertise_addr=OLD))
    await wait_connected(daemon)
    spec = objects_pb2.SecretSpec(data=b"moved-but-secret")
    spec.annotations.name = "db_pass"
    secret_id = (await daemon.manager.control.secrets.create_secret(control_pb2.CreateSecretRequest(spec=spec))).secret.id
    version_before = daemon.manager.store.view().version

    again = await daemon.init(control_pb2.SwarmInitRequest(force_new_cluster=True, listen_addr=f"{NEW}:{port}",
                                                           advertise_addr=NEW))
    assert (again.node_id, again.worker_token, again.manager_token) == (
        made.node_id, made.worker_token, made.manager_token)
    await wait_connected(daemon)              # mutual TLS to the new address with the new certificate
    assert cert_ips(daemon) == [NEW]
    assert daemon.node.grpc_addr == f"{NEW}:{port}" and daemon.node.managers == [f"{NEW}:{port}"]
    assert daemon.raft.member_addrs() == [f"{NEW}:{port + 1}"]
    view = daemon.manager.store.view()
    assert view.version > version_before
    me = view.get(Kind.NODE, made.node_id)
    assert (me.manager_status.addr, me.manager_status.raft_addr) == (f"{NEW}:{port}", f"{NEW}:{port + 1}")
    sealed = view.get(Kind.SECRET, secret_id).spec.data
    assert SecretBox(daemon.state.load_secrets_key()).open(secret_id, sealed) == b"moved-but-secret"
    info = daemon.info()
    assert info.leader_addr == f"{NEW}:{port}" and not info.error
    assert list(daemon.state.root.glob("raft.old-*"))      # the old Raft state is kept aside

    # A restart comes back at the new address, alone, with the secret.
    await daemon.stop_node()
    restarted = daemons("a")
    await restarted.start_node(restarted.state.load())
    await restarted.raft.wait_ready(10)
    assert restarted.raft.member_addrs() == [f"{NEW}:{port + 1}"]
    assert restarted.manager.store.view().get(Kind.SECRET, secret_id) is not None


async def test_force_new_cluster_needs_a_manager_and_restore_refuses_a_damaged_backup(daemons, tmp_path):
    daemon = daemons("fresh")
    with pytest.raises(DaemonError, match="not part of a swarm"):
        await daemon.init(control_pb2.SwarmInitRequest(force_new_cluster=True))
    bad = tmp_path / "swarm.bak"
    bad.write_bytes(b"SHOALBACKUP1\n" + b"\x00" * 20)
    with pytest.raises(DaemonError, match="is damaged"):
        await daemon.init(control_pb2.SwarmInitRequest(restore_file=str(bad), listen_addr=f"{OLD}:2377",
                                                       advertise_addr=OLD))
    with pytest.raises(DaemonError, match="absolute path"):
        await daemon.init(control_pb2.SwarmInitRequest(restore_file="swarm.bak"))
    assert daemon.node is None and daemon.state.load() is None
    assert not daemon.state.raft_dir.exists()
