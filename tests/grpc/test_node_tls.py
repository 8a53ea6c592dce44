"""NodeTLS over real grpc.aio connections: a renewed certificate is served without a restart."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest

from manager.ca import MANAGER_ROLE, WORKER_ROLE, NodeTLS, RootCA, channel_options, make_node_key_and_csr, require_role

pytestmark = pytest.mark.timeout(60)

SERVICE = "shoal.test.Probe"
NOW = dt.datetime.now(dt.timezone.utc)
CA = RootCA.create("cluster-t", NOW - dt.timedelta(days=200))


def issue(node_id: str, role: str, issued: dt.datetime, days: float = 90) -> tuple[bytes, bytes]:
    key, csr = make_node_key_and_csr()
    return CA.sign_node_csr(csr, node_id, role, issued, validity=dt.timedelta(days=days)) + CA.cert_pem, key


async def who(addr: str, client: NodeTLS) -> bytes:
    async with grpc.aio.secure_channel(addr, client.channel_credentials(), options=channel_options()) as channel:
        return await channel.unary_unary(f"/{SERVICE}/Who")(b"", timeout=10)


async def test_a_renewed_certificate_is_served_from_the_next_handshake() -> None:
    expired = issue("mgr1", MANAGER_ROLE, NOW - dt.timedelta(days=100))
    server_tls = NodeTLS(*expired, CA.cert_pem)
    client_tls = NodeTLS(*issue("wrk1", WORKER_ROLE, NOW), CA.cert_pem)

    async def handle(request: bytes, context) -> bytes:
        return (await require_role(context, WORKER_ROLE)).node_id.encode()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {"Who": grpc.unary_unary_rpc_method_handler(handle)}),))
    port = server.add_secure_port("127.0.0.1:0", server_tls.server_credentials(require_client_cert=True))
    await server.start()
    try:
        addr = f"127.0.0.1:{port}"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await who(addr, client_tls)                 # the server's certificate has expired
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        server_tls.update(*issue("mgr1", MANAGER_ROLE, NOW), CA.cert_pem)
        assert await who(addr, client_tls) == b"wrk1"   # same server, renewed certificate
        # and the client side: an expired client certificate is refused, a renewed one accepted
        client_tls.update(*issue("wrk1", WORKER_ROLE, NOW - dt.timedelta(days=100)), CA.cert_pem)
        with pytest.raises(grpc.aio.AioRpcError):
            await who(addr, client_tls)
        client_tls.update(*issue("wrk1", WORKER_ROLE, NOW), CA.cert_pem)
        assert await who(addr, client_tls) == b"wrk1"
    finally:
        await server.stop(None)
