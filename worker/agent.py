"""The agent: keeps one session open with the leader's dispatcher and heartbeats on it.

It tries the managers it knows, follows FAILED_PRECONDITION redirects to the leader,
and reconnects after a failover without touching anything running on the node. What
the session says (the managers' addresses, this node's role, the heartbeat period) is
handed to ``on_session`` so the daemon can persist it and react to role changes.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Awaitable, Callable

import grpc

from common.backoff import Backoff
from common.heartbeat import call_timeout
from proto import cluster_pb2, cluster_pb2_grpc, objects_pb2
from proto.ports import mtls_addr

log = logging.getLogger(__name__)

LEADER_ADDR_KEY = "leader-addr"


class _Redirect(Exception):
    def __init__(self, leader_addr: str):
        super().__init__(leader_addr)
        self.leader_addr = leader_addr


def _leader_from(err: grpc.aio.AioRpcError) -> str | None:
    for key, value in (err.trailing_metadata() or ()):
        if key == LEADER_ADDR_KEY:
            return value
    return None


class Agent:
    """``run()`` until cancelled; safe to cancel at any point."""

    def __init__(self, managers: list[str],
                 credentials: grpc.ChannelCredentials | Callable[[], grpc.ChannelCredentials],
                 channel_options: list, description: Callable[[], objects_pb2.NodeDescription],
                 on_session: Callable[[cluster_pb2.SessionMessage], Awaitable[None]],
                 worker=None, reporter=None, backoff: Backoff | None = None):
        self._managers = list(dict.fromkeys(managers))
        self._credentials = credentials
        self._options = channel_options
        self._description = description
        self._on_session = on_session
        self._worker = worker
        self._reporter = reporter
        self._preferred: str | None = None
        self.connected = asyncio.Event()
        self._period = 1.0
        self.session_id: str | None = None
        self._backoff = backoff or Backoff(0.1, 10.0, jitter="full")  # a fleet reconnecting: spread it
        self._restart = asyncio.Event()

    def restart_session(self) -> None:
        """End the current session (if any) and open a new one at once: after the node's
        certificate changed, so the new one is used and its TLS info reported to the leader."""
        self._restart.set()

    def _channel_credentials(self) -> grpc.ChannelCredentials:
        """Credentials for a new channel: made afresh each time when given as a callable (the
        node's certificate is renewed while the agent runs)."""
        return self._credentials() if callable(self._credentials) else self._credentials

    @property
    def managers(self) -> list[str]:
        return list(self._managers)

    def _candidates(self) -> list[str]:
        order = list(self._managers)
        random.shuffle(order)
        if self._preferred:
            order = [self._preferred] + [m for m in order if m != self._preferred]
        return order

    async def run(self) -> None:
        """Keep a session open until cancelled: any failure (gRPC or not) is logged and the next
        known manager tried at once; only when every one of them failed is there a pause, after
        ``Backoff``. A redirect to the leader is followed at once. So after a failover (or a
        `--force-new-cluster` that left one manager of three) a node finds the manager that leads
        within one round of connection attempts, not after one pause per dead manager."""
        while True:
            for addr in self._candidates():
                try:
                    await self._session(addr)
                except _Redirect as redirect:
                    log.info("manager %s says the leader is %s", addr, redirect.leader_addr)
                    self._preferred = redirect.leader_addr
                    if redirect.leader_addr not in self._managers:
                        self._managers.append(redirect.leader_addr)
                    break
                except grpc.aio.AioRpcError as err:
                    log.info("session with %s ended: %s %s", addr, err.code().name, err.details())
                    if err.code() == grpc.StatusCode.PERMISSION_DENIED:
                        log.error("refused by the swarm: %s", err.details())
                except (OSError, asyncio.TimeoutError) as err:
                    log.info("session with %s ended: %r", addr, err)
                except Exception as err:  # noqa: BLE001 - a bug in a session helper must not end the agent
                    log.error("session with %s failed: %r", addr, err, exc_info=err)
                finally:
                    if self.session_id is not None:
                        self._backoff.reset()   # it worked for a while: retry the next one at once
                    self.connected.clear()
                    self.session_id = None
                if self._restart.is_set():
                    self._restart.clear()
                    break                   # at once, to the same manager (still preferred)
                if self._preferred == addr:
                    self._preferred = None
            else:
                await asyncio.sleep(self._backoff.next())   # a whole round failed

    async def _session(self, addr: str) -> None:
        """One session with the manager at ``addr``; returns or raises when it ends.

        The session stream, the heartbeats and the session helpers (assignments,
        status reports) run as sibling tasks: the first to end ends them all, and
        its error (if any) is what this raises.
        """
        self._restart.clear()
        async with grpc.aio.secure_channel(mtls_addr(addr), self._channel_credentials(),
                                           options=self._options) as channel:
            stub = cluster_pb2_grpc.DispatcherStub(channel)
            first = asyncio.get_running_loop().create_future()
            reader = asyncio.create_task(self._read_session(stub, addr, first))
            tasks = [reader, asyncio.create_task(self._restart.wait(), name="restart")]
            try:
                await asyncio.wait([reader, first], return_when=asyncio.FIRST_COMPLETED)
                if first.done():
                    session_id = first.result()
                    tasks.append(asyncio.create_task(self._heartbeat(stub, session_id)))
                    if self._worker is not None:
                        tasks.append(asyncio.create_task(self._assignments(stub, session_id)))
                        tasks.append(asyncio.create_task(self._report(stub, session_id)))
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                ended = next(t for t in tasks if t.done())
                error = ended.exception()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if isinstance(error, grpc.aio.AioRpcError):
                leader = _leader_from(error)
                if error.code() == grpc.StatusCode.FAILED_PRECONDITION and leader:
                    raise _Redirect(leader) from error
            if error is not None:
                raise error

    async def _read_session(self, stub, addr: str, first: asyncio.Future) -> None:
        call = stub.Session(cluster_pb2.SessionRequest(description=self._description()))
        try:
            async for message in call:
                self.session_id = message.session_id
                self._period = message.heartbeat_period or self._period
                managers = [p.addr for p in message.managers if p.addr]
                if managers:
                    self._managers = list(dict.fromkeys(managers + [m for m in self._managers if m in managers]))
                self._preferred = addr
                self.connected.set()
                await self._on_session(message)
                if not first.done():
                    first.set_result(message.session_id)
        finally:
            call.cancel()

    async def _assignments(self, stub, session_id: str) -> None:
        stream = stub.Assignments(cluster_pb2.AssignmentsRequest(session_id=session_id))
        try:
            async for message in stream:
                await self._worker.apply(message)
        finally:
            stream.cancel()

    async def _report(self, stub, session_id: str) -> None:
        async def send(updates):
            await stub.UpdateTaskStatus(cluster_pb2.UpdateTaskStatusRequest(session_id=session_id, updates=updates),
                                        timeout=10)
        await self._reporter.run(send)

    async def _heartbeat(self, stub, session_id: str) -> None:
        """Heartbeat every period. Each call may wait for the leader's whole grace
        (common/heartbeat.call_timeout): a busy leader answers late, and what is left of the
        deadline tells it how late (the dispatcher adds that to every node's grace). A heartbeat
        not answered within a period used to be sent again, so a busy leader had two or three
        of every node's heartbeats queued, and could measure no wait longer than a period. Not
        answered within the grace, or any other error: the session ends."""
        while True:
            await asyncio.sleep(self._period)
            message = self._worker.status_message() if self._worker is not None else ""
            response = await stub.Heartbeat(
                cluster_pb2.HeartbeatRequest(session_id=session_id, status_message=message),
                timeout=call_timeout(self._period))
            self._period = response.period or self._period
