"""Remote access end to end, without a lab: shoald (shoal.daemon.main.run, in this process, no
runtime) in a swarm on loopback with ``-H tcp://127.0.0.1:PORT``; the real ``shoal`` CLI issues a
client certificate over the unix socket, then the real ``shoal`` and ``docker`` CLIs reach the
daemon over TCP with it, and are refused without it. tests/cluster/test_remote_access.py does the
same from another network namespace of a lab."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import ssl
import time
import sys
from pathlib import Path

import pytest

from manager.ca import RootCA, make_node_key_and_csr
from proto.ports import MTLS_OFFSET, RAFT_OFFSET
from shoal.daemon import Daemon
from shoal.daemon.main import run
from tests.support.ports import reserve_port, reserve_ports

pytestmark = pytest.mark.timeout(180)
SHOAL = [sys.executable, "-m", "shoal.cli.main"]


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "SHOAL_"))}, **(env or {})})
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode()


@pytest.fixture
async def remote_daemon(tmp_path: Path):
    daemon = Daemon(tmp_path / "state", tmp_path / "run" / "shoal.sock", hostname="m1")
    port = reserve_port()
    served = asyncio.create_task(run(daemon, tmp_path / "run" / "docker.sock", None, (("127.0.0.1", port),)))
    await asyncio.wait_for(daemon.serving.wait(), 30)
    local = f"unix://{daemon.socket_path}"
    listen = f"127.0.0.1:{reserve_ports(RAFT_OFFSET, MTLS_OFFSET)}"
    code, out = await cli(*SHOAL, "-H", local, "swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", listen)
    assert code == 0, out
    try:
        yield local, f"tcp://127.0.0.1:{port}", tmp_path
    finally:
        daemon._stopping.set()              # what SIGTERM does
        assert await asyncio.wait_for(served, 60) is None


async def test_shoal_and_docker_over_tcp_with_a_client_certificate(remote_daemon):
    local, tcp, tmp = remote_daemon
    certs = tmp / "certs"
    code, out = await cli(*SHOAL, "-H", local, "swarm", "client-cert", "--out", str(certs), "--name", "ops")
    assert code == 0, out
    assert sorted(p.name for p in certs.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    assert (certs / "key.pem").stat().st_mode & 0o777 == 0o600
    code, out = await cli(*SHOAL, "-H", local, "swarm", "client-cert", "--out", str(certs))
    assert code == 1 and "already has ca.pem, cert.pem, key.pem" in out

    code, out = await cli(*SHOAL, "service", "create", "--name", "web", "--replicas", "0", "-d", "busybox",
                          env={"DOCKER_HOST": tcp, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)})
    assert code == 0, out
    code, out = await cli(*SHOAL, "-H", tcp, "--tlsverify", "--tlscacert", str(certs / "ca.pem"),
                          "--tlscert", str(certs / "cert.pem"), "--tlskey", str(certs / "key.pem"), "service", "ls")
    assert code == 0 and "web" in out, out
    if shutil.which("docker"):
        code, out = await cli("docker", "service", "ls", "--format", "{{.Name}}",
                              env={"DOCKER_HOST": tcp, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs),
                                   "HOME": str(tmp)})
        assert code == 0 and out.split() == ["web"], out


async def test_refused_without_a_client_certificate_or_with_another_cas(remote_daemon):
    local, tcp, tmp = remote_daemon
    certs = tmp / "certs"
    assert (await cli(*SHOAL, "-H", local, "swarm", "client-cert", "--out", str(certs)))[0] == 0
    bare = tmp / "ca-only"
    bare.mkdir()
    shutil.copy(certs / "ca.pem", bare / "ca.pem")
    other = tmp / "other-ca"
    other.mkdir()
    root = RootCA.create("another-cluster", dt.datetime.now(dt.timezone.utc))
    key, csr = make_node_key_and_csr()
    (other / "cert.pem").write_bytes(root.sign_client_csr(csr, "mallory", dt.datetime.now(dt.timezone.utc)))
    (other / "key.pem").write_bytes(key)
    shutil.copy(certs / "ca.pem", other / "ca.pem")
    for path, alert in ((bare, "certificate required"), (other, "unknown certificate authority")):
        env = {"DOCKER_HOST": tcp, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(path), "HOME": str(tmp)}
        code, out = await cli(*SHOAL, "service", "ls", env=env)
        assert code == 1 and "Cannot connect to the Shoal daemon at tcp://" in out and "TLS refused" in out, out
        if shutil.which("docker"):
            code, out = await cli("docker", "service", "ls", env=env)
            # refused in the handshake with the TLS alert that says why, as dockerd would
            assert code == 1 and f"remote error: tls: {alert}" in out, out
    code, out = await cli(*SHOAL, "-H", tcp, "service", "ls", env={"HOME": str(tmp)})
    assert code == 125 and "served only with mutual TLS: add --tlsverify" in out, out


async def test_a_manager_listener_is_dialled_by_its_host_name(remote_daemon):
    """The manager signs its listener a certificate naming its host (m1) and localhost."""
    local, tcp, tmp = remote_daemon
    certs = tmp / "certs"
    assert (await cli(*SHOAL, "-H", local, "swarm", "client-cert", "--out", str(certs)))[0] == 0
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    context.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    port = int(tcp.rsplit(":", 1)[1])
    for name in ("m1", "localhost"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=name)
        writer.write(b"GET /_ping HTTP/1.1\r\nHost: m1\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200"), name
        writer.close()
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="m2")
    code, out = await cli(*SHOAL, "service", "ls", env={"DOCKER_HOST": f"tcp://localhost:{port}", "DOCKER_TLS_VERIFY": "1",
                                                        "DOCKER_CERT_PATH": str(certs)})
    assert code == 0, out


async def test_the_docker_sdk_over_tls_streams_events(remote_daemon, monkeypatch):
    """The docker SDK (requests/urllib3, ALPN http/1.1) over the remote API, a streamed answer
    (events, spliced through) included."""
    docker_sdk = pytest.importorskip("docker")
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):   # requests lets these override the SDK's ca_cert
        monkeypatch.delenv(name, raising=False)
    local, tcp, tmp = remote_daemon
    certs = tmp / "certs"
    assert (await cli(*SHOAL, "-H", local, "swarm", "client-cert", "--out", str(certs)))[0] == 0
    tls = docker_sdk.tls.TLSConfig(client_cert=(str(certs / "cert.pem"), str(certs / "key.pem")),
                                   ca_cert=str(certs / "ca.pem"), verify=True)

    def drive() -> list[dict]:
        client = docker_sdk.DockerClient(base_url=tcp.replace("tcp://", "https://"), tls=tls, timeout=60)
        try:
            assert client.ping()
            start = int(time.time()) - 1
            client.services.create("busybox", name="sdk-web", mode={"Replicated": {"Replicas": 0}})
            assert [s.name for s in client.services.list()] == ["sdk-web"]
            return list(client.events(since=start, until=int(time.time()) + 1, decode=True,
                                      filters={"type": "service"}))
        finally:
            client.close()

    events = await asyncio.to_thread(drive)
    assert any(e.get("Action") == "create" and e.get("Actor", {}).get("Attributes", {}).get("name") == "sdk-web"
               for e in events), events
