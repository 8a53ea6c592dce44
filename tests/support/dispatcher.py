"""Doubles for calling the Dispatcher's servicer methods directly (no gRPC server): a context that
names a peer and fails the test on abort, a leader that always leads, and an authorizer that
admits node "n1"; for several nodes, a context per node and an authorizer that admits its node."""
from __future__ import annotations

from types import SimpleNamespace

from common.heartbeat import call_timeout


class Context:
    def peer(self) -> str:
        return "ipv4:192.0.2.11:40000"

    async def abort(self, code, details):
        raise AssertionError(f"aborted: {code} {details}")


class Leader:
    def is_leader(self) -> bool:
        return True

    def leader_addr(self) -> None:
        return None


async def authorize(context, *roles):
    return SimpleNamespace(node_id="n1")


class NodeContext(Context):
    """A call from ``node_id`` (see authorize_node) that waited ``waited`` seconds of its deadline
    before being handled."""

    def __init__(self, node_id: str, timeout: float = call_timeout(5.0), waited: float = 0.0) -> None:
        self.node_id, self.timeout, self.waited = node_id, timeout, waited

    def time_remaining(self) -> float:
        return self.timeout - self.waited


async def authorize_node(context, *roles):
    return SimpleNamespace(node_id=context.node_id)
