"""shoald's remote listener (shoal.daemon.remote) over real TLS on loopback, in front of real
backends on unix sockets: an aiohttp app (the Docker API's place) and a gRPC server (the
ControlAPI's). Who gets in, who does not and why, and hostile clients."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from pathlib import Path

import click
import grpc
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import REGISTRY

from manager.ca import (MANAGER_ROLE, WORKER_ROLE, CertificateError, NodeIdentity, NodeTLS, RootCA,
                        make_node_key_and_csr)
from manager.ca.clients import client_identity
from shoal.daemon.config import DaemonError
from shoal.daemon.remote import RemoteAPI, parse_hosts

NOW = dt.datetime.now(dt.timezone.utc)


class Pki:
    def __init__(self, tmp: Path, cluster: str = "cluster-a"):
        self.tmp = tmp
        self.root = RootCA.create(cluster, NOW)
        key, csr = make_node_key_and_csr()
        cert = self.root.sign_node_csr(csr, "node1", MANAGER_ROLE, NOW, ip_sans=["127.0.0.1"])
        self.node_tls = NodeTLS(cert + self.root.cert_pem, key, self.root.cert_pem)

    def client(self, name: str = "alice", now: dt.datetime = NOW, validity: dt.timedelta = dt.timedelta(days=1)
               ) -> tuple[bytes, bytes]:
        key, csr = make_node_key_and_csr()
        return self.root.sign_client_csr(csr, name, now, validity), key

    def node_cert(self, role: str = WORKER_ROLE) -> tuple[bytes, bytes]:
        key, csr = make_node_key_and_csr()
        return self.root.sign_node_csr(csr, "worker7", role, NOW), key

    def files(self, cert: bytes, key: bytes, name: str) -> tuple[str, str]:
        (self.tmp / f"{name}.pem").write_bytes(cert)
        (self.tmp / f"{name}-key.pem").write_bytes(key)
        return str(self.tmp / f"{name}.pem"), str(self.tmp / f"{name}-key.pem")

    def client_context(self, cert: bytes | None = None, key: bytes | None = None, alpn: str = "http/1.1"
                       ) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.root.cert_pem.decode())
        if cert is not None and key is not None:
            context.load_cert_chain(*self.files(cert, key, f"c{id(cert)}"))
        context.set_alpn_protocols([alpn])
        return context


@pytest.fixture
async def backends(tmp_path):
    """An HTTP app on docker.sock answering /_ping, a gRPC echo on shoal.sock; yields their paths
    and the list of HTTP requests the app saw."""
    seen: list[str] = []

    async def ping(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get("/_ping", ping)
    runner = web.AppRunner(app)
    await runner.setup()
    docker_sock, control_sock = tmp_path / "docker.sock", tmp_path / "shoal.sock"
    await web.UnixSite(runner, str(docker_sock)).start()

    async def echo(request: bytes, context) -> bytes:
        return b"echo:" + request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "t.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})])
    server.add_insecure_port(f"unix:{control_sock}")
    await server.start()
    yield docker_sock, control_sock, seen
    await server.stop(0)
    await runner.cleanup()


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path)


async def start(pki: Pki, backends, **kwargs) -> tuple[RemoteAPI, int]:
    docker_sock, control_sock, _ = backends
    api = RemoteAPI(lambda: pki.node_tls, control_sock, docker_sock, **kwargs)
    await api.start([("127.0.0.1", 0)])
    return api, api.addresses[0][1]


async def http_get(port: int, context: ssl.SSLContext, path: str = "/_ping") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = await reader.read()
    finally:
        writer.close()
    if not answer:
        return 0, b""           # closed without an answer
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def refused_in_handshake(port: int, context: ssl.SSLContext, alert: str) -> None:
    """The server fails the handshake: the client gets the TLS alert that says why, never an answer."""
    with pytest.raises(ssl.SSLError, match=alert):
        await http_get(port, context)


def count(result: str) -> float:
    return REGISTRY.get_sample_value("shoal_remote_connections_total", {"result": result}) or 0.0


async def test_a_client_certificate_reaches_both_apis(pki, backends):
    api, port = await start(pki, backends)
    try:
        cert, key = pki.client()
        assert await http_get(port, pki.client_context(cert, key)) == (200, b"OK")
        root = pki.root.cert_pem
        credentials = grpc.ssl_channel_credentials(root, key, cert)
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            assert await channel.unary_unary("/t.Echo/Echo")(b"hi", timeout=10) == b"echo:hi"
    finally:
        await api.close()


async def test_no_certificate_another_ca_and_expired_are_refused_in_the_handshake(pki, backends, tmp_path):
    api, port = await start(pki, backends)
    before = count("handshake_failed")
    try:
        await refused_in_handshake(port, pki.client_context(), "CERTIFICATE_REQUIRED")
        other = Pki(tmp_path / "other", "cluster-a")
        (tmp_path / "other").mkdir()
        cert, key = other.client()
        await refused_in_handshake(port, pki.client_context(cert, key), "UNKNOWN_CA")
        expired, key = pki.client(now=NOW - dt.timedelta(days=3), validity=dt.timedelta(hours=1))
        await refused_in_handshake(port, pki.client_context(expired, key), "CERTIFICATE_EXPIRED")
        assert backends[2] == []
        assert count("handshake_failed") == before + 3
    finally:
        await api.close()


async def test_a_node_certificate_is_not_a_client_certificate(pki, backends):
    api, port = await start(pki, backends)
    try:
        for role in (WORKER_ROLE, MANAGER_ROLE):
            cert, key = pki.node_cert(role)
            status, body = await http_get(port, pki.client_context(cert, key))
            assert status == 403
            assert "node certificates are not accepted" in json.loads(body)["message"]
        cert, key = pki.node_cert()
        credentials = grpc.ssl_channel_credentials(pki.root.cert_pem, key, cert)
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await channel.unary_unary("/t.Echo/Echo")(b"hi", timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "node certificates are not accepted" in err.value.details()
        assert backends[2] == []
    finally:
        await api.close()


async def test_the_trusted_roots_follow_the_node(pki, backends, tmp_path):
    """A CA rotation replaces the node's roots: the next handshake refuses the old CA's clients."""
    api, port = await start(pki, backends)
    try:
        cert, key = pki.client()
        assert (await http_get(port, pki.client_context(cert, key)))[0] == 200
        (tmp_path / "new").mkdir()
        new = Pki(tmp_path / "new", "cluster-a")
        pki.node_tls.update(new.node_tls.cert_pem, new.node_tls.key_pem, new.root.cert_pem)
        await refused_in_handshake(port, new.client_context(cert, key), "UNKNOWN_CA")
        cert, key = new.client()
        assert (await http_get(port, new.client_context(cert, key)))[0] == 200
    finally:
        await api.close()


async def test_garbage_and_half_open_handshakes_do_not_block_other_clients(pki, backends):
    api, port = await start(pki, backends, handshake_timeout=0.5)
    before, failed = count("handshake_timeout"), count("handshake_failed")
    try:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        partial_r, partial_w = await asyncio.open_connection("127.0.0.1", port)
        partial_w.write(b"\x16\x03\x01\x02\x00\x01")     # the start of a ClientHello, never finished
        garbage_r, garbage_w = await asyncio.open_connection("127.0.0.1", port)
        garbage_w.write(b"GET / HTTP/1.1\r\n\r\n" + bytes(range(256)) * 8)
        await garbage_r.read()                            # closed (perhaps after an alert)
        assert count("handshake_failed") == failed + 1
        cert, key = pki.client()
        assert await http_get(port, pki.client_context(cert, key)) == (200, b"OK")   # while the rest hang
        for reader, _ in idle + [(partial_r, partial_w)]:
            assert await reader.read() == b""           # cut off by the deadline
        for _, writer in idle + [(partial_r, partial_w), (garbage_r, garbage_w)]:
            writer.close()
        assert count("handshake_timeout") >= before + 6
    finally:
        await api.close()


async def test_connections_beyond_the_limit_are_closed_at_accept(pki, backends):
    api, port = await start(pki, backends, max_connections=2)
    before = count("busy")
    try:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.read() == b""
        writer.close()
        assert count("busy") == before + 1
        for _, w in held:
            w.close()
    finally:
        await api.close()


async def test_outside_a_swarm_every_connection_is_closed(tmp_path, backends):
    docker_sock, control_sock, _ = backends
    api = RemoteAPI(lambda: None, control_sock, docker_sock)
    await api.start([("127.0.0.1", 0)])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.addresses[0][1])
        assert await reader.read() == b""
        writer.close()
    finally:
        await api.close()


async def test_a_port_in_use_is_named(pki, backends):
    api, port = await start(pki, backends)
    try:
        other = RemoteAPI(lambda: pki.node_tls, backends[1], backends[0])
        with pytest.raises(OSError, match=f"cannot listen on tcp://127.0.0.1:{port}"):
            await other.start([("127.0.0.1", port)])
    finally:
        await api.close()


def test_client_identity_decisions(pki):
    cert, _ = pki.client("bob@laptop")
    der = x509.load_pem_x509_certificate(cert).public_bytes(serialization.Encoding.DER)
    assert client_identity(der, "cluster-a").name == "bob@laptop"
    with pytest.raises(CertificateError, match="for cluster 'cluster-a', not this cluster 'cluster-b'"):
        client_identity(der, "cluster-b")
    with pytest.raises(CertificateError, match="no client certificate"):
        client_identity(None, "cluster-a")
    with pytest.raises(CertificateError, match="not valid DER"):
        client_identity(b"\x30\x03garbage", "cluster-a")
    root_der = x509.load_pem_x509_certificate(pki.root.cert_pem).public_bytes(serialization.Encoding.DER)
    with pytest.raises(CertificateError, match="CA certificate"):
        client_identity(root_der, "cluster-a")


def test_client_names_are_checked():
    root = RootCA.create("c", NOW)
    _, csr = make_node_key_and_csr()
    for bad in ("", "-x", "a b", "x" * 65, "a/b"):
        with pytest.raises(Exception, match="invalid client name"):
            root.sign_client_csr(csr, bad, NOW)
    with pytest.raises(Exception, match="shorter than the minimum"):
        root.sign_client_csr(csr, "ok", NOW, dt.timedelta(minutes=5))


def test_parse_hosts():
    assert parse_hosts(["tcp://0.0.0.0:2376", "unix:///run/x.sock"]) == ([("0.0.0.0", 2376)], "/run/x.sock")
    assert parse_hosts(["tcp://:2377", "tcp://192.0.2.5", "tcp://[::1]:2376"]) == (
        [("0.0.0.0", 2377), ("192.0.2.5", 2376), ("::1", 2376)], None)
    for bad, what in (("ssh://h", "expected tcp://"), ("tcp://host.example:2376", "expected IP"),
                      ("tcp://1.2.3.4:99999", "port out of range"), ("unix://rel", "absolute"),
                      ("fd://", "expected tcp://")):
        with pytest.raises(DaemonError, match=what):
            parse_hosts([bad])
    with pytest.raises(DaemonError, match="one unix socket"):
        parse_hosts(["unix:///a.sock", "unix:///b.sock"])


def test_shoald_takes_hosts_from_flags_or_daemon_json(tmp_path):
    from shoal.daemon.main import parse_args
    config = tmp_path / "daemon.json"
    config.write_text('{"hosts": ["tcp://192.0.2.9:2376", "unix:///run/x/docker.sock"]}')
    args = parse_args(["--config-file", str(config)])
    assert args.tcp_hosts == [("192.0.2.9", 2376)] and args.docker_socket == "/run/x/docker.sock"
    args = parse_args(["--config-file", str(config), "-H", "tcp://0.0.0.0:2377"])
    assert args.tcp_hosts == [("0.0.0.0", 2377)] and args.docker_socket is None
    config.write_text('{"hosts": ["http://x"]}')
    with pytest.raises(SystemExit):
        parse_args(["--config-file", str(config)])
    for argv in (["-H", "ssh://x"], ["-H", "unix:///a.sock", "--docker-socket", "/b.sock"]):
        with pytest.raises(SystemExit):
            parse_args(argv)


def test_the_cli_picks_its_daemon_as_dockers_client_does(monkeypatch):
    from shoal.cli.client import DEFAULT_HOST, host_url, tcp_target
    for name in ("SHOAL_HOST", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    assert host_url(None) == DEFAULT_HOST
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")    # a Docker API socket: not shoald's
    assert host_url(None) == DEFAULT_HOST
    monkeypatch.setenv("DOCKER_HOST", "tcp://192.0.2.7:2376")
    assert host_url(None) == "tcp://192.0.2.7:2376"
    monkeypatch.setenv("SHOAL_HOST", "unix:///run/x.sock")
    assert host_url(None) == "unix:///run/x.sock" and host_url("tcp://h:1") == "tcp://h:1"
    assert tcp_target("tcp://192.0.2.7") == "192.0.2.7:2376"
    assert tcp_target("tcp://manager1:2377/") == "manager1:2377"
    assert tcp_target("tcp://[2001:db8::1]:2376") == "[2001:db8::1]:2376"
    for bad in ("tcp://", "tcp://h:0", "tcp://h:x", "tcp://h/path", "tcp://h:99999"):
        with pytest.raises(click.UsageError, match="expected tcp://HOST"):
            tcp_target(bad)


def test_the_cli_finds_certificates_as_dockers_client_does(tmp_path, monkeypatch):
    from shoal.cli.client import TLSOptions
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    with pytest.raises(click.UsageError, match="could not read CA certificate"):
        TLSOptions(True).files()
    (tmp_path / "ca.pem").write_text("ca")
    assert TLSOptions(True).files() == (tmp_path / "ca.pem", None, None)   # no client cert: the daemon refuses
    (tmp_path / "cert.pem").write_text("cert")
    with pytest.raises(click.UsageError, match="needs its key"):
        TLSOptions(True).files()
    (tmp_path / "key.pem").write_text("key")
    assert TLSOptions(True).files() == (tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    with pytest.raises(click.UsageError, match="could not read --tlscert"):
        TLSOptions(True, cert=str(tmp_path / "nope.pem")).files()
    monkeypatch.delenv("DOCKER_CERT_PATH")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(click.UsageError, match=r"home/\.docker"):
        TLSOptions(True).files()


@pytest.mark.timeout(60, method="thread")   # a frozen loop swallows the signal method
async def test_a_client_that_closes_first_ends_its_connection_only(pki, backends):
    """The client's close_notify ends its connection: the server answers it and closes (it once
    made the session spin on the loop, freezing every other client and the daemon)."""
    api, port = await start(pki, backends)
    try:
        cert, key = pki.client()
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context(cert, key),
                                                       ssl_shutdown_timeout=3600)   # waits for the server's close
        writer.write(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")           # keep-alive: the server waits
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and await reader.readexactly(2) == b"OK"
        writer.close()                                                   # close_notify, then FIN
        await writer.wait_closed()
        assert await http_get(port, pki.client_context(cert, key)) == (200, b"OK")
        assert backends[2] == ["/_ping", "/_ping"]
    finally:
        await api.close()


async def test_a_listener_certificate_names_the_host(pki, backends):
    """A manager's listener presents a certificate of its own that names its host, so clients
    may dial it by name; it is neither a node's nor a client's certificate."""
    key, csr = make_node_key_and_csr()
    own = pki.root.sign_server_csr(csr, ["manager1", "localhost"], ["127.0.0.1"], NOW, dt.timedelta(days=1))
    api, port = await start(pki, backends, own_certificate=lambda tls: (own, key))
    try:
        cert, client_key = pki.client()
        context = pki.client_context(cert, client_key)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="manager1")
        writer.write(b"GET /_ping HTTP/1.1\r\nHost: manager1\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).endswith(b"\r\n\r\nOK")
        writer.close()
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="manager2")
    finally:
        await api.close()
    der = x509.load_pem_x509_certificate(own).public_bytes(serialization.Encoding.DER)
    with pytest.raises(CertificateError, match="not a Shoal client certificate"):
        client_identity(der, "cluster-a")
    with pytest.raises(CertificateError, match="not a node certificate"):
        NodeIdentity.from_der(der)


async def test_a_refused_grpc_client_sending_junk_is_closed(pki, backends):
    """After the handshake, a refused h2 client is read frame by frame: a wrong preface, or a frame
    announcing more than the default maximum size, closes the connection without reading on."""
    api, port = await start(pki, backends)
    try:
        cert, key = pki.node_cert()
        for junk in (b"GET / HTTP/1.1\r\n\r\n" + b"x" * 100,
                     b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff\xff\xff\x01\x00\x00\x00\x00\x01"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context(cert, key, "h2"))
            writer.write(junk)
            answer = await reader.read()          # the server closes (after its SETTINGS, for the second)
            assert b"grpc-status" not in answer
            writer.close()
        assert backends[2] == []
    finally:
        await api.close()


def test_own_certificate_is_retried_with_backoff_until_issued(pki):
    """A manager whose store is not ready cannot issue its listener a certificate: the next
    handshakes retry after 1 s, 2 s, 4 s... (common.backoff); once issued it is kept until the
    node's TLS material changes, which tries again at once."""
    key, csr = make_node_key_and_csr()
    own = pki.root.sign_server_csr(csr, ["manager1"], ["127.0.0.1"], NOW, dt.timedelta(days=1))
    clock, attempts, ready = [0.0], [], [False]

    def issue(tls):
        attempts.append(clock[0])
        return (own, key) if ready[0] else None

    tls = [pki.node_tls]
    api = RemoteAPI(lambda: tls[0], Path("/nonexistent"), None, own_certificate=issue, clock=lambda: clock[0])
    for t in (0.0, 0.5, 1.0, 2.0, 3.0, 6.9, 7.0):
        clock[0] = t
        api._context()
    assert attempts == [0.0, 1.0, 3.0, 7.0]
    ready[0] = True
    clock[0] = 15.0
    api._context()
    clock[0] = 1000.0
    api._context()
    assert attempts == [0.0, 1.0, 3.0, 7.0, 15.0]
    tls[0] = NodeTLS(pki.node_tls.cert_pem, pki.node_tls.key_pem, pki.node_tls.ca_pem)   # renewed material
    api._context()
    assert attempts[-1] == 1000.0 and len(attempts) == 6
