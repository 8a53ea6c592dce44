"""Mutual TLS between nodes over real grpc.aio connections on loopback.

One server listens as a manager will: a mutual-TLS port for node RPCs and a join port that does
not ask for client certificates. A generic handler with raw-bytes methods stands in for the real
services, so no proto is needed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from dataclasses import dataclass, field

import grpc
import pytest

from manager.ca import (
    MANAGER_ROLE,
    WORKER_ROLE,
    CAError,
    InvalidJoinToken,
    RootCA,
    channel_credentials,
    channel_options,
    fetch_root_ca,
    make_node_key_and_csr,
    peer_identity,
    require_role,
    server_credentials,
)

pytestmark = pytest.mark.timeout(60)

SERVICE = "shoal.test.Probe"


@dataclass(frozen=True)
class NodeCert:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class Pki:
    ca: RootCA
    manager: NodeCert
    worker: NodeCert
    foreign_ca: RootCA
    foreign_worker: NodeCert


def _issue(ca: RootCA, node_id: str, role: str, now: dt.datetime) -> NodeCert:
    key_pem, csr_pem = make_node_key_and_csr()
    # No IP SANs: managers are reached by IP, so the name check must use the "swarm-manager" SAN.
    return NodeCert(ca.sign_node_csr(csr_pem, node_id, role, now), key_pem)


@pytest.fixture(scope="module")
def pki() -> Pki:
    now = dt.datetime.now(dt.timezone.utc)
    ca = RootCA.create("cluster-a", now)
    foreign = RootCA.create("cluster-a", now)  # same name, different key: an impostor
    return Pki(
        ca=ca,
        manager=_issue(ca, "mgr1", MANAGER_ROLE, now),
        worker=_issue(ca, "wrk1", WORKER_ROLE, now),
        foreign_ca=foreign,
        foreign_worker=_issue(foreign, "wrk1", WORKER_ROLE, now),
    )


@dataclass
class Manager:
    node_port: int
    join_port: int
    leaf_only_port: int
    handled: list[str] = field(default_factory=list)

    @property
    def node_addr(self) -> str:
        return f"127.0.0.1:{self.node_port}"

    @property
    def join_addr(self) -> str:
        return f"127.0.0.1:{self.join_port}"


@pytest.fixture
async def manager(pki: Pki):
    handled: list[str] = []

    async def join(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        handled.append("Join")
        return b"joined"

    async def worker_call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        identity = await require_role(context, MANAGER_ROLE, WORKER_ROLE, cluster_id="cluster-a")
        handled.append("WorkerCall")
        return identity.node_id.encode()

    async def manager_call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        identity = await require_role(context, MANAGER_ROLE)
        handled.append("ManagerCall")
        return identity.node_id.encode()

    async def who_am_i(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        identity = peer_identity(context)
        return b"anonymous" if identity is None else identity.node_id.encode()

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(method)
            for name, method in {
                "Join": join,
                "WorkerCall": worker_call,
                "ManagerCall": manager_call,
                "WhoAmI": who_am_i,
            }.items()
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    cert, key, root = pki.manager.cert_pem, pki.manager.key_pem, pki.ca.cert_pem
    node_port = server.add_secure_port("127.0.0.1:0", server_credentials(cert, key, root, True))
    join_port = server.add_secure_port("127.0.0.1:0", server_credentials(cert, key, root, False))
    # A misconfigured server presenting only its leaf, for fetch_root_ca's error.
    leaf_only_port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    await server.start()
    try:
        yield Manager(node_port, join_port, leaf_only_port, handled)
    finally:
        await server.stop(None)


async def call(
    addr: str,
    method: str,
    root_ca_pem: bytes,
    client: NodeCert | None = None,
    options: list | None = None,
) -> bytes:
    credentials = channel_credentials(
        root_ca_pem,
        client.cert_pem if client else None,
        client.key_pem if client else None,
    )
    async with grpc.aio.secure_channel(
        addr, credentials, options=channel_options() if options is None else options
    ) as channel:
        return await channel.unary_unary(f"/{SERVICE}/{method}")(b"", timeout=10)


async def call_error(*args, **kwargs) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(*args, **kwargs)
    return caught.value


async def test_worker_cert_can_call_a_worker_rpc(pki: Pki, manager: Manager) -> None:
    assert await call(manager.node_addr, "WorkerCall", pki.ca.cert_pem, pki.worker) == b"wrk1"


async def test_manager_cert_can_call_a_manager_rpc(pki: Pki, manager: Manager) -> None:
    assert await call(manager.node_addr, "ManagerCall", pki.ca.cert_pem, pki.manager) == b"mgr1"


async def test_worker_cert_on_a_manager_rpc_is_refused(pki: Pki, manager: Manager) -> None:
    error = await call_error(manager.node_addr, "ManagerCall", pki.ca.cert_pem, pki.worker)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == (
        "this RPC needs a manager certificate; the caller presented a worker certificate "
        "(node wrk1)"
    )
    assert "ManagerCall" not in manager.handled


async def test_no_client_cert_is_unauthenticated_but_may_join(pki: Pki, manager: Manager) -> None:
    error = await call_error(manager.join_addr, "WorkerCall", pki.ca.cert_pem)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details().startswith("no client certificate presented")
    assert await call(manager.join_addr, "Join", pki.ca.cert_pem) == b"joined"
    assert manager.handled == ["Join"]


async def test_mtls_port_refuses_a_client_without_cert_at_the_tls_layer(
    pki: Pki, manager: Manager
) -> None:
    error = await call_error(manager.node_addr, "Join", pki.ca.cert_pem)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert manager.handled == []


async def test_a_cert_from_another_ca_is_refused_at_the_tls_layer(
    pki: Pki, manager: Manager
) -> None:
    error = await call_error(manager.node_addr, "Join", pki.ca.cert_pem, pki.foreign_worker)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert manager.handled == []


async def test_a_client_trusting_another_ca_refuses_the_manager(pki: Pki, manager: Manager) -> None:
    error = await call_error(manager.join_addr, "Join", pki.foreign_ca.cert_pem)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert manager.handled == []


async def test_managers_are_checked_by_their_swarm_manager_san(pki: Pki, manager: Manager) -> None:
    # The certificate names no IP, so dialling 127.0.0.1 without the override fails the name check.
    error = await call_error(manager.join_addr, "Join", pki.ca.cert_pem, options=[])
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert await call(manager.join_addr, "Join", pki.ca.cert_pem) == b"joined"


async def test_join_port_does_not_see_a_presented_client_cert(pki: Pki, manager: Manager) -> None:
    """grpc python's require_client_auth=False never asks for a client certificate.

    This pins the behaviour the two-port design rests on: if a grpc upgrade starts asking, this
    fails and the join port could carry node RPCs too.
    """
    assert await call(manager.join_addr, "WhoAmI", pki.ca.cert_pem, pki.worker) == b"anonymous"
    assert await call(manager.node_addr, "WhoAmI", pki.ca.cert_pem, pki.worker) == b"wrk1"


@pytest.mark.parametrize("port", ["join_port", "node_port"])
async def test_fetch_root_ca_returns_the_pinned_ca(pki: Pki, manager: Manager, port: str) -> None:
    addr = f"127.0.0.1:{getattr(manager, port)}"
    pem = await asyncio.to_thread(fetch_root_ca, addr, pki.ca.digest, 5.0)
    assert pem == pki.ca.cert_pem
    assert RootCA.load(pem, None).digest == pki.ca.digest
    # The fetched CA is enough to talk to the manager with full verification.
    assert await call(manager.join_addr, "Join", pem) == b"joined"


async def test_fetch_root_ca_rejects_a_wrong_digest(pki: Pki, manager: Manager) -> None:
    with pytest.raises(InvalidJoinToken) as caught:
        await asyncio.to_thread(fetch_root_ca, manager.join_addr, pki.foreign_ca.digest, 5.0)
    assert str(caught.value).startswith(
        f"the manager at {manager.join_addr} presented a CA whose digest does not match the join token"
    )


async def test_fetch_root_ca_needs_the_root_in_the_chain(pki: Pki, manager: Manager) -> None:
    addr = f"127.0.0.1:{manager.leaf_only_port}"
    with pytest.raises(CAError, match="presented no CA certificate in its TLS chain"):
        await asyncio.to_thread(fetch_root_ca, addr, pki.ca.digest, 5.0)


def test_fetch_root_ca_names_an_unreachable_manager(pki: Pki) -> None:
    with socket.socket() as probe:  # bound but not listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        addr = "127.0.0.1:%d" % probe.getsockname()[1]
        with pytest.raises(CAError, match=f"cannot fetch the root CA from the manager at {addr}"):
            fetch_root_ca(addr, pki.ca.digest, 5.0)
