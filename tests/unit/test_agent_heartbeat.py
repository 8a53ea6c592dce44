"""The agent's heartbeats against a leader too busy to answer in time: sent again while the
leader's grace lasts (three periods), the session ended once it has run out or on any other
error. Before, the first unanswered heartbeat ended the session, and every node of a busy
leader reconnected at once (bench/scale.py at 300 simulated nodes)."""

from __future__ import annotations

import grpc
import pytest

from proto import cluster_pb2
from tests.support.clock import FakeClock
from worker.agent import Agent


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name)


class Stub:
    """Answers Heartbeat from a script: an error to raise, or a period to answer with. Each call
    takes ``takes`` seconds on the agent's clock (a timeout takes its time)."""

    def __init__(self, script, clock=None, takes=0.0):
        self.script = list(script)
        self.calls = 0
        self.clock, self.takes = clock, takes

    async def Heartbeat(self, request, timeout):
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.takes)
        step = self.script.pop(0)
        if isinstance(step, grpc.StatusCode):
            raise rpc_error(step)
        if step is None:
            raise StopHeartbeats()
        return cluster_pb2.HeartbeatResponse(period=step)


class StopHeartbeats(Exception):
    pass


def agent(period: float, clock=None) -> Agent:
    a = Agent(["192.0.2.1:2377"], grpc.ssl_channel_credentials(), [], cluster_pb2.SessionRequest, None,
              clock=clock or FakeClock())
    a._period = period
    return a


async def test_an_unanswered_heartbeat_is_sent_again_within_the_grace():
    stub = Stub([grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.DEADLINE_EXCEEDED, 0.01, None])
    with pytest.raises(StopHeartbeats):
        await agent(0.01)._heartbeat(stub, "s1")
    assert stub.calls == 4


async def test_the_session_ends_once_the_grace_has_run_out():
    clock = FakeClock()
    period = 1 / 64                 # exact in binary: three of them add up to the grace exactly
    stub = Stub([grpc.StatusCode.DEADLINE_EXCEEDED] * 100, clock, takes=period)
    a = agent(period, clock)
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await a._heartbeat(stub, "s1")
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert stub.calls == 3          # answered at 0; attempts end 1, 2, 3 periods later: the grace is over


async def test_other_errors_end_the_session_at_once():
    stub = Stub([grpc.StatusCode.NOT_FOUND])
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await agent(0.01)._heartbeat(stub, "s1")
    assert ended.value.code() == grpc.StatusCode.NOT_FOUND and stub.calls == 1
