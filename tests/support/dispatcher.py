"""Doubles for calling the Dispatcher's servicer methods directly (no gRPC server): a context that
names a peer and fails the test on abort, a leader that always leads, and an authorizer that
admits node "n1"."""
from __future__ import annotations

from types import SimpleNamespace


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
