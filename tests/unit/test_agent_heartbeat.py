"""The agent's heartbeats against a leader too busy to answer in time: each call waits for the
leader's whole grace (three periods) and is sent once; the session ends once the grace has run out
or on any other error. Before, the first unanswered heartbeat ended the session, and every node of
a busy leader reconnected at once (bench/scale.py at 300 simulated nodes); then it was sent again
each period, queueing two or three of every node's heartbeats on a busy leader."""

from __future__ import annotations

import grpc
import pytest

from proto import cluster_pb2
from common.heartbeat import call_timeout
from worker.agent import Agent


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name)


class Stub:
    """Answers Heartbeat from a script: an error to raise, or a period to answer with."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0
        self.timeouts: list[float] = []

    async def Heartbeat(self, request, timeout):
        self.calls += 1
        self.timeouts.append(timeout)
        step = self.script.pop(0)
        if isinstance(step, grpc.StatusCode):
            raise rpc_error(step)
        if step is None:
            raise StopHeartbeats()
        return cluster_pb2.HeartbeatResponse(period=step)


class StopHeartbeats(Exception):
    pass


def agent(period: float) -> Agent:
    a = Agent(["192.0.2.1:2377"], grpc.ssl_channel_credentials(), [], cluster_pb2.SessionRequest, None)
    a._period = period
    return a


async def test_each_heartbeat_may_wait_for_the_whole_grace_and_is_sent_once():
    """A busy leader answers late: the call waits three periods (the leader's grace) for it and
    is not sent again meanwhile (a resend queued a second heartbeat behind the first); the
    answer's period is used from then on."""
    stub = Stub([0.02, 0.03, None])
    with pytest.raises(StopHeartbeats):
        await agent(0.01)._heartbeat(stub, "s1")
    assert stub.timeouts == [call_timeout(0.01), call_timeout(0.02), call_timeout(0.03)]
    assert call_timeout(5.0) == 3 * 5.0


async def test_a_heartbeat_not_answered_within_the_grace_ends_the_session():
    stub = Stub([grpc.StatusCode.DEADLINE_EXCEEDED, 0.01])
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await agent(0.01)._heartbeat(stub, "s1")
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and stub.calls == 1


async def test_other_errors_end_the_session_at_once():
    stub = Stub([grpc.StatusCode.NOT_FOUND])
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await agent(0.01)._heartbeat(stub, "s1")
    assert ended.value.code() == grpc.StatusCode.NOT_FOUND and stub.calls == 1
