"""Supervised daemons (issue 11): a failing leader component is restarted with backoff and, if it
keeps failing, stops the manager instead of leaving a headless leader; a node's role tasks stop
together when one fails; the agent outlives any error of a session and reconnects with backoff.

Real gRPC on loopback (port 0 where the code under test allows it), a real single-node RaftNode,
no root needed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket

import grpc
import pytest

from manager.ca import (MANAGER_ROLE, WORKER_ROLE, RootCA, channel_credentials, channel_options,
                        make_node_key_and_csr, require_role, server_credentials)
from manager.dispatcher import Dispatcher
from manager.manager import LeaderSignal, Manager, ManagerConfig
from manager.scheduler.component import Scheduler
from manager.secretbox import SecretBox, new_key
from manager.state import LocalProposer, MemoryStore, RaftNode, Store
from manager.supervisor import ComponentFailed, RestartPolicy, supervise
from proto import cluster_pb2_grpc, control_pb2, objects_pb2
from proto.ports import MTLS_OFFSET, RAFT_OFFSET
from shoal.daemon import Daemon
from shoal.daemon.supervision import RoleFailed, RoleGroup
from tests.support.ports import reserve_port, reserve_ports
from common.backoff import Backoff
from worker.agent import Agent

pytestmark = pytest.mark.timeout(60)

CLUSTER = "cluster-s"


async def bounded(awaitable, what: str, timeout: float = 20.0):
    """Await ``awaitable``; a bound for a hung test, not a timing assert."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


# -- supervise --------------------------------------------------------------------------------

async def test_a_failing_component_is_restarted_with_backoff_and_logged(caplog):
    pauses: list[float] = []
    runs = 0
    steady = asyncio.Event()

    async def component() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise RuntimeError(f"boom {runs}")
        steady.set()
        await asyncio.Event().wait()

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    restarts: dict[str, int] = {}
    caplog.set_level(logging.ERROR, logger="manager.supervisor")
    task = asyncio.create_task(supervise("orchestrator", component, RestartPolicy(initial=0.5, maximum=1.5),
                                         restarts=restarts, sleep=sleep))
    await bounded(steady.wait(), "the fourth run")
    assert pauses == [0.5, 1.0, 1.5]
    assert restarts == {"orchestrator": 3}
    assert [r.getMessage() for r in caplog.records if "restarting" in r.getMessage()][0].startswith(
        "leader component orchestrator failed, restarting in 0.5s: RuntimeError('boom 1')")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_component_that_keeps_failing_gives_up():
    async def component() -> None:
        raise ValueError("store is gone")

    async def sleep(seconds: float) -> None:
        pass

    with pytest.raises(ComponentFailed, match="scheduler failed 3 times, last: ValueError"):
        await bounded(supervise("scheduler", component, RestartPolicy(budget=2), sleep=sleep), "give up")


async def test_failures_spread_beyond_the_window_restart_forever_from_the_first_pause():
    now = [0.0]
    pauses: list[float] = []
    runs = 0

    async def component() -> None:
        nonlocal runs
        runs += 1
        if runs > 10:
            await asyncio.Event().wait()
        raise OSError("transient")

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += 100.0  # every failure comes after the previous one has left the window

    task = asyncio.create_task(supervise("reaper", component, RestartPolicy(budget=1, window=50.0),
                                         clock=lambda: now[0], sleep=sleep))
    while runs <= 10:
        await asyncio.sleep(0)
    assert pauses == [0.5] * 10
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- the manager: no headless leader ---------------------------------------------------------

def _node_cert(ca: RootCA, node_id: str, role: str) -> tuple[bytes, bytes]:
    key, csr = make_node_key_and_csr()
    return ca.sign_node_csr(csr, node_id, role, dt.datetime.now(dt.timezone.utc)), key


def _refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def test_a_component_that_gives_up_stops_the_manager_server(tmp_path, caplog):
    ca = RootCA.create(CLUSTER, dt.datetime.now(dt.timezone.utc))
    cert, key = _node_cert(ca, "m1", MANAGER_ROLE)
    port = reserve_ports(MTLS_OFFSET)
    memory = MemoryStore()
    leadership = LeaderSignal(asyncio.get_running_loop())
    raft = RaftNode(f"127.0.0.1:{reserve_port()}", [], tmp_path / "raft", "password", memory, on_leader_change=leadership.notify)
    failures = 0

    async def broken() -> None:
        nonlocal failures
        failures += 1
        raise RuntimeError("cannot work")

    class ManagerWithABrokenComponent(Manager):
        def leader_components(self):
            return {**super().leader_components(), "broken": broken}

    config = ManagerConfig(cluster_id=CLUSTER, listen_addr=f"127.0.0.1:{port}", cert_chain_pem=cert + ca.cert_pem,
                           key_pem=key, root_ca_pem=ca.cert_pem, raft_password=b"password", secrets_key=new_key())
    manager = ManagerWithABrokenComponent(config, Store(memory, raft), raft, leadership,
                                          restart_policy=RestartPolicy(initial=0.01, budget=2))
    try:
        run = asyncio.create_task(manager.run())
        with pytest.raises(ComponentFailed, match="broken failed 3 times"):
            await bounded(asyncio.shield(run), "the manager to give up")
        assert raft.is_leader(), "the test meant a leader (woken by Raft's leader-change callback)"
        assert failures == 3 and manager.component_restarts["broken"] == 2
        assert _refuses(port) and _refuses(port + 2), "the manager's gRPC server still answers"
    finally:
        await raft.close()


# -- the daemon's role group -----------------------------------------------------------------

async def test_a_failed_role_task_stops_the_others_and_is_reported():
    reported: list[BaseException] = []
    agent_cancelled = asyncio.Event()

    async def manager() -> None:
        await asyncio.sleep(0)
        raise ComponentFailed("allocator", 6, RuntimeError("x"))

    async def agent() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            agent_cancelled.set()

    done = asyncio.Event()
    group = RoleGroup({"manager": manager(), "agent": agent()}, lambda err: (reported.append(err), done.set()))
    await bounded(done.wait(), "the failure report")
    assert agent_cancelled.is_set()
    assert isinstance(reported[0], RoleFailed) and "role task manager failed" in str(reported[0])
    await group.stop()


async def test_stopping_a_role_group_reports_nothing():
    reported: list[BaseException] = []
    started = asyncio.Event()

    async def agent() -> None:
        started.set()
        await asyncio.Event().wait()

    group = RoleGroup({"agent": agent()}, reported.append)
    await bounded(started.wait(), "the agent task")
    await group.stop()
    assert reported == [] and group.failed is None


# -- the agent --------------------------------------------------------------------------------

def test_backoff_grows_exponentially_to_its_cap_with_full_jitter_and_resets():
    backoff = Backoff(0.1, 1.0, jitter="full", random=lambda: 1.0)
    assert [backoff.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert Backoff(0.1, 1.0, jitter="full", random=lambda: 0.0).next() == 0.0
    backoff.reset()
    assert backoff.next() == 0.1


class _Leading:
    def is_leader(self) -> bool:
        return True

    def leader_addr(self) -> str | None:
        return None


async def _dispatcher_server(ca: RootCA) -> tuple[grpc.aio.Server, int]:
    """A leading manager's dispatcher on 127.0.0.1 with mutual TLS; returns (server, mTLS port)."""
    manager_cert, manager_key = _node_cert(ca, "m1", MANAGER_ROLE)
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory))
    await store.update(lambda tx: (tx.create(objects_pb2.Cluster(id=CLUSTER)),
                                   tx.create(objects_pb2.Node(id="w1"))))
    authorize = lambda context, *roles: require_role(context, *roles, cluster_id=CLUSTER)  # noqa: E731
    dispatcher = Dispatcher(store, _Leading(), authorize, secrets=SecretBox(new_key()))
    server = grpc.aio.server()
    cluster_pb2_grpc.add_DispatcherServicer_to_server(dispatcher, server)
    mtls_port = server.add_secure_port("127.0.0.1:0", server_credentials(
        manager_cert + ca.cert_pem, manager_key, ca.cert_pem, require_client_cert=True))
    await server.start()
    return server, mtls_port


async def _no_session_hook(message) -> None:
    pass


async def test_the_agent_survives_a_non_grpc_error_and_reconnects(caplog):
    ca = RootCA.create(CLUSTER, dt.datetime.now(dt.timezone.utc))
    worker_cert, worker_key = _node_cert(ca, "w1", WORKER_ROLE)
    server, mtls_port = await _dispatcher_server(ca)

    calls = 0

    def description() -> objects_pb2.NodeDescription:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("a bug in the first session")
        return objects_pb2.NodeDescription(hostname="w1")

    backoff = Backoff(0.1, 10.0, jitter="full", random=lambda: 0.0)
    caplog.set_level(logging.ERROR, logger="worker.agent")
    agent = Agent([f"127.0.0.1:{mtls_port - MTLS_OFFSET}"], channel_credentials(ca.cert_pem, worker_cert, worker_key),
                  channel_options(), description, _no_session_hook, backoff=backoff)
    run = asyncio.create_task(agent.run())
    try:
        await bounded(agent.connected.wait(), "the second session")
        assert calls == 2 and backoff.attempt == 1   # one failed session, one pause
        assert any("ValueError('a bug in the first session')" in r.getMessage() for r in caplog.records)
        assert not run.done()
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await server.stop(grace=0)


async def test_the_agent_tries_every_known_manager_before_it_pauses(monkeypatch):
    """After a failover or `--force-new-cluster`, most managers a node knows are gone: it must
    reach the one that leads within one round, not after one backoff pause per dead manager
    (with a 10 s cap, that was 15 s and more before the node was Ready again)."""
    ca = RootCA.create(CLUSTER, dt.datetime.now(dt.timezone.utc))
    worker_cert, worker_key = _node_cert(ca, "w1", WORKER_ROLE)
    server, mtls_port = await _dispatcher_server(ca)
    dead = [f"127.0.0.1:{port - MTLS_OFFSET}" for port in (reserve_port(), reserve_port())]   # nothing listens
    monkeypatch.setattr("worker.agent.random.shuffle", lambda order: None)   # the dead ones first
    backoff = Backoff(5.0, 10.0)
    agent = Agent(dead + [f"127.0.0.1:{mtls_port - MTLS_OFFSET}"],
                  channel_credentials(ca.cert_pem, worker_cert, worker_key), channel_options(),
                  lambda: objects_pb2.NodeDescription(hostname="w1"), _no_session_hook, backoff=backoff)
    run = asyncio.create_task(agent.run())
    try:
        await bounded(agent.connected.wait(), "a session with the live manager")
        assert backoff.attempt == 0, "the agent paused before it had tried every manager"
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await server.stop(grace=0)


# -- shoald: a manager that cannot lead stops whole and reports it ----------------------------------

async def test_a_leader_component_that_keeps_failing_stops_shoald_with_the_failure(tmp_path, monkeypatch):
    """What main() turns into exit status 1 for systemd: the node is stopped (Raft included), so
    this manager does not stay the Raft leader without a scheduler (a headless leader)."""
    async def broken(self) -> None:
        raise RuntimeError("the scheduler cannot run")

    monkeypatch.setattr(Scheduler, "run", broken)
    socket_path = tmp_path / "shoal.sock"
    daemon = Daemon(tmp_path / "state", socket_path, "m1", restart_policy=RestartPolicy(initial=0.01, budget=2))
    run = asyncio.create_task(daemon.run())
    await bounded(daemon.serving.wait(), "shoald's socket")
    port = reserve_ports(RAFT_OFFSET, MTLS_OFFSET)
    await daemon.init(control_pb2.SwarmInitRequest(listen_addr=f"127.0.0.1:{port}", advertise_addr="127.0.0.1"))
    failure = await bounded(run, "shoald to stop")
    assert isinstance(failure, RoleFailed) and "scheduler failed 3 times" in str(failure)
    assert daemon.raft is None and daemon.manager is None and not socket_path.exists()
    assert all(_refuses(p) for p in (port, port + RAFT_OFFSET, port + MTLS_OFFSET))
