"""`shoal swarm ca --rotate` on a lab: every node ends on the new root, the old one is refused."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=1)


def spki(pem: bytes) -> str:
    key = x509.load_pem_x509_certificate(pem).public_key()
    return base64.b64encode(key.public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def heartbeat_with(lab, host: str, cert: bytes, key: bytes, ca: bytes) -> str:
    """Call the manager's Dispatcher from `host` with this certificate: the gRPC status it gets."""
    script = (
        "import grpc\n"
        "from manager.ca import channel_credentials, channel_options\n"
        "from proto import cluster_pb2, cluster_pb2_grpc\n"
        f"creds = channel_credentials({ca!r}, {cert!r}, {key!r})\n"
        f"ch = grpc.secure_channel('{lab.address('manager1')}:2379', creds, options=channel_options())\n"
        "try:\n"
        "    cluster_pb2_grpc.DispatcherStub(ch).Heartbeat(cluster_pb2.HeartbeatRequest(session_id='x'), timeout=5)\n"
        "except grpc.RpcError as e:\n"
        "    print(e.code().name)\n"
    )
    import sys
    return lab.exec(host, [sys.executable, "-c", script]).stdout.strip()


def test_rotate_moves_every_node_to_the_new_root_and_refuses_the_old(lab):
    certs = lab.host("worker1").state_dir / "certificates"
    old = {name: (certs / name).read_bytes() for name in ("node.crt", "node.key", "ca.crt")}
    old_root = lab.shoal("manager1", "swarm", "ca").stdout.encode()
    assert old_root == old["ca.crt"]

    result = lab.shoal("manager1", "swarm", "ca", "--rotate", timeout=180)
    assert "rotated TLS certificates" in result.stdout and "rotated CA certificates" in result.stdout
    assert "2/2 nodes" in result.stdout.splitlines()[-3] or "2/2 nodes" in result.stdout
    new_root = lab.shoal("manager1", "swarm", "ca").stdout.encode()
    assert new_root != old_root and result.stdout.endswith(new_root.decode())

    nodes = json.loads(lab.shoal("manager1", "node", "inspect", *lab.hosts).stdout)
    for n in nodes:
        tls = n["Description"]["TLSInfo"]
        assert n["Status"]["State"] == "ready", n
        assert tls["TrustRoot"].encode() == new_root, n["Description"]["Hostname"]
        assert tls["CertIssuerPublicKey"] == spki(new_root)
    for host in lab.hosts:
        assert (lab.host(host).state_dir / "certificates" / "ca.crt").read_bytes() == new_root
    token = lab.shoal("manager1", "swarm", "join-token", "-q", "worker").stdout.strip()
    assert token                                                   # tokens were re-made for the new root

    current = {name: (certs / name).read_bytes() for name in ("node.crt", "node.key")}
    # the worker's current certificate passes TLS (the call is then refused for its session id) ...
    assert heartbeat_with(lab, "worker1", current["node.crt"], current["node.key"], new_root) == "NOT_FOUND"
    # ... the certificate it held before the rotation, from the old root, is refused at the handshake
    assert heartbeat_with(lab, "worker1", old["node.crt"], old["node.key"], new_root) == "UNAVAILABLE"
    assert heartbeat_with(lab, "worker1", old["node.crt"], old["node.key"], old_root) == "UNAVAILABLE"


def test_rotate_to_an_external_root(lab, tmp_path):
    import datetime as dt

    from manager.ca import RootCA

    external = RootCA.create("example-org", dt.datetime.now(dt.timezone.utc))
    (tmp_path / "ca.pem").write_bytes(external.cert_pem)
    (tmp_path / "ca.key").write_bytes(external.key_pem)
    result = lab.shoal("manager1", "swarm", "ca", "--rotate", "-q", "--ca-cert", str(tmp_path / "ca.pem"),
                       "--ca-key", str(tmp_path / "ca.key"), timeout=180)
    assert result.stdout.encode() == external.cert_pem              # -q: only the new root
    wait_for(lambda: all(n["Status"]["State"] == "ready" and n["Description"]["TLSInfo"]["TrustRoot"].encode()
                         == external.cert_pem
                         for n in json.loads(lab.shoal("manager1", "node", "inspect", *lab.hosts).stdout)),
             30, 0.5, "every node on the external root")
    assert "--rotate" in lab.shoal("manager1", "swarm", "ca", "--ca-cert", str(tmp_path / "ca.pem"),
                                   check=False).stderr
