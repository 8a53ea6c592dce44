"""Remote access from another machine (issue 13): from the lab's underlay namespace, which is not a
manager host, the stock docker CLI and the shoal CLI reach manager1's remote API
(``shoal-lab status --json``: remote_api, tcp://ADDRESS:2376) with a client certificate from
``shoal swarm client-cert``, and are refused without one, with another CA's, and with a node's."""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

from manager.ca import RootCA, make_node_key_and_csr
from shoal.lab import procs

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(managers=1, workers=0)


@pytest.fixture(scope="module")
def remote(lab) -> str:
    return {h["name"]: h for h in lab.status()["hosts"]}["manager1"]["remote_api"]


@pytest.fixture(scope="module")
def certs(lab, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("client-cert")
    lab.shoal("manager1", "swarm", "client-cert", "--out", str(out), "--name", "ops@underlay")
    return out


def from_underlay(lab, argv: list[str], cert_path: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """Run `argv` in the underlay namespace with docker's client environment and no shoald socket."""
    env = {"PATH": f"{procs.scripts_dir()}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
           "DOCKER_CERT_PATH": str(cert_path), "DOCKER_CONFIG": str(home / "docker-config")}
    return subprocess.run(procs.in_netns(lab.plan.underlay_netns, argv), env=env, capture_output=True, text=True,
                          timeout=120)


def test_docker_and_shoal_from_another_machine(lab, remote, certs, tmp_path):
    lab.shoal("manager1", "service", "create", "--name", "remote-web", "--replicas", "0", "-d", "busybox")
    shoal = from_underlay(lab, ["shoal", "-H", remote, "--tlsverify", "service", "ls"], certs, tmp_path)
    assert shoal.returncode == 0 and "remote-web" in shoal.stdout, shoal.stderr
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed (make install gets it)")
    docker = from_underlay(lab, ["env", f"DOCKER_HOST={remote}", "DOCKER_TLS_VERIFY=1", "docker", "service", "ls",
                                 "--format", "{{.Name}}"], certs, tmp_path)
    assert docker.returncode == 0 and docker.stdout.split() == ["remote-web"], docker.stderr


def test_refused_without_a_valid_client_certificate(lab, remote, certs, tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    ca_only, other_ca, node_cert = (tmp_path / d for d in ("ca-only", "other-ca", "node-cert"))
    for d in (ca_only, other_ca, node_cert):
        d.mkdir()
        shutil.copy(certs / "ca.pem", d / "ca.pem")
    key, csr = make_node_key_and_csr()
    (other_ca / "cert.pem").write_bytes(RootCA.create("another-cluster", now).sign_client_csr(csr, "mallory", now))
    (other_ca / "key.pem").write_bytes(key)
    node_certs = lab.host("manager1").state_dir / "certificates"   # manager1's own, misused as a client's
    shutil.copy(node_certs / "node.crt", node_cert / "cert.pem")
    shutil.copy(node_certs / "node.key", node_cert / "key.pem")
    alerts = {ca_only: "tls: certificate required", other_ca: "tls: unknown certificate authority"}
    for path, why in ((ca_only, None), (other_ca, None), (node_cert, "node certificates are not accepted")):
        shoal = from_underlay(lab, ["shoal", "-H", remote, "--tlsverify", "service", "ls"], path, tmp_path)
        assert shoal.returncode == 1 and f"Cannot connect to the Shoal daemon at {remote}" in shoal.stderr \
            if why is None else why in shoal.stderr, (path, shoal.stderr)
        if shutil.which("docker"):
            docker = from_underlay(lab, ["docker", "-H", remote, "--tlsverify", "service", "ls"], path, tmp_path)
            assert docker.returncode != 0 and "remote-web" not in docker.stdout, (path, docker.stderr)
            assert (why or alerts[path]) in docker.stderr, docker.stderr
