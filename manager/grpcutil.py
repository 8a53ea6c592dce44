"""Small helpers shared by the manager's gRPC servicers (server edge only)."""

from __future__ import annotations

import grpc

LEADER_ADDR_KEY = "leader-addr"


def peer_host(context: grpc.aio.ServicerContext) -> str:
    """The caller's IP address as seen by the server ("" for a unix socket)."""
    peer = context.peer() or ""
    if peer.startswith("ipv4:"):
        return peer[5:].rsplit(":", 1)[0]
    if peer.startswith("ipv6:"):
        return peer[5:].rsplit(":", 1)[0].strip("[]")
    return ""


async def abort_not_leader(context: grpc.aio.ServicerContext, leader_addr: str | None, what: str) -> None:
    """Refuse a leader-only call on a follower, telling the caller where the leader is."""
    if leader_addr:
        context.set_trailing_metadata(((LEADER_ADDR_KEY, leader_addr),))
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                            f"{what}: this manager is not the leader; the leader is at {leader_addr}")
    await context.abort(grpc.StatusCode.UNAVAILABLE, f"{what}: the swarm has no leader right now (no quorum?)")
