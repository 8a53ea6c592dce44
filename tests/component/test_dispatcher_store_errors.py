"""A node's Session and Heartbeat when the leader cannot write (it lost its quorum): the call ends
with UNAVAILABLE and a message naming what was not written, not an unexpected error (gRPC's
UNKNOWN with an ERROR traceback in the manager's log), and the agent retries."""

from __future__ import annotations

from types import SimpleNamespace

import grpc
import pytest

from manager.dispatcher import Dispatcher
from manager.state import LocalProposer, MemoryStore, NoQuorum, Store
from proto import cluster_pb2, objects_pb2


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class Context:
    def peer(self) -> str:
        return "ipv4:192.0.2.11:40000"

    async def abort(self, code: grpc.StatusCode, details: str):
        raise Aborted(code, details)


class Leader:
    def is_leader(self) -> bool:
        return True

    def leader_addr(self) -> None:
        return None


class QuorumLost(LocalProposer):
    """Applies until ``lost``, then fails every proposal as a leader without a majority does."""
    lost = False

    async def propose(self, change, timeout):
        if self.lost:
            raise NoQuorum("raft 192.0.2.11:2378: no majority reachable within 5.0s")
        return await super().propose(change, timeout)


async def authorize(context, *roles):
    return SimpleNamespace(node_id="n1")


async def dispatcher_and_proposer(state: int) -> tuple[Dispatcher, QuorumLost]:
    memory = MemoryStore()
    proposer = QuorumLost(memory)
    store = Store(memory, proposer)
    node = objects_pb2.Node(id="n1")
    node.status.state = state
    await store.update(lambda tx: tx.create(node))
    return Dispatcher(store, Leader(), authorize), proposer


async def test_a_session_the_leader_cannot_record_ends_unavailable_naming_why():
    dispatcher, proposer = await dispatcher_and_proposer(objects_pb2.NodeStatus.DOWN)
    proposer.lost = True
    session = dispatcher.Session(cluster_pb2.SessionRequest(), Context())
    with pytest.raises(Aborted) as aborted:
        await anext(session)
    assert aborted.value.code == grpc.StatusCode.UNAVAILABLE
    assert "session of node n1" in aborted.value.details and "no majority" in aborted.value.details


async def test_a_heartbeat_whose_status_cannot_be_written_ends_unavailable_naming_why():
    dispatcher, proposer = await dispatcher_and_proposer(objects_pb2.NodeStatus.READY)
    session = dispatcher.Session(cluster_pb2.SessionRequest(), Context())
    try:
        session_id = (await anext(session)).session_id
        proposer.lost = True
        with pytest.raises(Aborted) as aborted:
            await dispatcher.Heartbeat(cluster_pb2.HeartbeatRequest(session_id=session_id,
                                                                    status_message="runtime down"), Context())
        assert aborted.value.code == grpc.StatusCode.UNAVAILABLE
        assert "heartbeat from node n1" in aborted.value.details and "no majority" in aborted.value.details
    finally:
        await session.aclose()
