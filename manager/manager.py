"""A manager node: the node-to-node gRPC server (mutual TLS), the ControlAPI, and the
components that run only while this manager leads (dispatcher sessions, roles, allocator,
orchestrator, scheduler, task reaper, network key manager).

Built from a store, its RaftNode, the ``LeaderSignal`` the RaftNode calls on leadership
changes, and the node's certificates; ``run()`` serves until cancelled and stops everything
it started in ``finally``. The leader components are supervised (manager.supervisor): one that
fails is restarted with backoff; one that keeps failing makes ``run()`` raise, so the daemon
stops this manager instead of leading Raft without it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import grpc

from manager.ca import NodeTLS, channel_options, require_role
from manager.allocator.component import Allocator
from manager.controlapi import ControlAPI
from manager.controlapi.logs import LogBroker
from manager.dispatcher import Dispatcher
from manager.events import TYPES as EVENT_KINDS, EventLog, from_store_event as event_of, leader_event
from manager.keymanager import KeyManager
from manager.membership.carotation import CARotation
from manager.membership import NodeCAServicer, RaftMembershipServicer, RoleReconciler
from manager.orchestrator.component import Orchestrator
from manager import stats
from manager.quorum import quorum_view
from manager.reaper import TaskReaper
from manager.scheduler.component import Scheduler
from manager.secretbox import SecretBox
from manager.state import WatchOverflow
from manager.supervisor import RestartPolicy, supervise
from proto import cluster_pb2_grpc, objects_pb2
from proto.ports import grpc_addr_of_raft, mtls_addr

log = logging.getLogger(__name__)


class LeaderSignal:
    """Wakes the manager when Raft leadership changes; ``notify`` may be called from any thread.

    Pass ``notify`` as the RaftNode's ``on_leader_change``: it runs on Raft's tick thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self.changed = asyncio.Event()

    def notify(self, is_leader: bool = True) -> None:
        self._loop.call_soon_threadsafe(self.changed.set)


@dataclass(frozen=True)
class ManagerConfig:
    cluster_id: str
    listen_addr: str          # host:port to bind the gRPC server to
    cert_chain_pem: bytes     # node certificate followed by the root CA
    key_pem: bytes
    root_ca_pem: bytes
    raft_password: bytes
    secrets_key: bytes = b""  # seals secrets at rest (manager.secretbox); never in the store
    tls: NodeTLS | None = None  # the node's live TLS material (renewed while running); else the PEMs above


class Manager:
    def __init__(self, config: ManagerConfig, store, raft, leadership: LeaderSignal,
                 clock: Callable[[], float] = time.time,
                 register_node_services: Callable[[grpc.aio.Server], None] | None = None,
                 restart_policy: RestartPolicy = RestartPolicy()):
        self.config = config
        self.tls = config.tls or NodeTLS(config.cert_chain_pem, config.key_pem, config.root_ca_pem)
        self.leadership = leadership
        self.restart_policy = restart_policy
        self.component_restarts: dict[str, int] = {}  # leader component -> restarts (for /metrics)
        self.store = store
        self.raft = raft
        self._clock = clock
        authorize = functools.partial(require_role, cluster_id=config.cluster_id)
        self.control = ControlAPI(store, raft, config.secrets_key)
        self.dispatcher = Dispatcher(store, self, authorize, clock, secrets=SecretBox(config.secrets_key))
        self._nodeca = NodeCAServicer(store, authorize, self.raft_members, config.raft_password, clock,
                                      secrets_key=config.secrets_key)
        self._raft_membership = RaftMembershipServicer(store, raft, self, authorize)
        self._roles = RoleReconciler(store, raft)
        self._register_node_services = register_node_services
        self.logs = LogBroker(store, self._dial_node)
        self.events = EventLog()          # `shoal events` on this manager (manager.events)
        self._leader_raft_addr: str | None = None

    def _dial_node(self, addr: str, server_role: str) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(addr, self.tls.channel_credentials(), options=channel_options(server_role))

    # -- leadership ------------------------------------------------------------
    def is_leader(self) -> bool:
        return self.raft.is_leader()

    def leader_addr(self) -> str | None:
        """The leader's gRPC address, or None while there is no leader."""
        raft_leader = quorum_view(self.raft.status()).leader
        if not raft_leader:
            return None
        for node in self.store.view().nodes():
            if node.manager_status.raft_addr == raft_leader and node.manager_status.addr:
                return node.manager_status.addr
        return grpc_addr_of_raft(raft_leader)

    def raft_members(self) -> list[str]:
        status = self.raft.status()
        return sorted({m.addr for m in status.members} | {status.self_addr})

    # -- running -----------------------------------------------------------------
    async def run(self) -> None:
        server = grpc.aio.server()
        cluster_pb2_grpc.add_NodeCAServicer_to_server(self._nodeca, server)
        cluster_pb2_grpc.add_DispatcherServicer_to_server(self.dispatcher, server)
        cluster_pb2_grpc.add_RaftMembershipServicer_to_server(self._raft_membership, server)
        if self._register_node_services is not None:
            self._register_node_services(server)
        # The join port asks for no client certificate (a joining node has none); the
        # mutual-TLS port requires one. Both serve every service; node RPCs check roles.
        for addr, require in ((self.config.listen_addr, False), (mtls_addr(self.config.listen_addr), True)):
            # dynamic: a renewed certificate (or new roots) is used from the next handshake on
            server.add_secure_port(addr, self.tls.server_credentials(require_client_cert=require))
        await server.start()
        log.info("manager serving node-to-node gRPC on %s (join) and %s (mutual TLS)",
                 self.config.listen_addr, mtls_addr(self.config.listen_addr))
        leading: asyncio.Task | None = None
        feed = asyncio.create_task(self._feed_events(), name="cluster-events")
        try:
            while True:
                self.leadership.changed.clear()
                self._note_leader()
                now_leading = self.is_leader()
                if now_leading and leading is None:
                    log.info("this manager is now the leader")
                    leading = asyncio.create_task(self._lead(), name="leader-components")
                elif not now_leading and leading is not None:
                    log.info("this manager is no longer the leader")
                    await _cancel(leading)
                    leading = None
                changed = asyncio.create_task(self.leadership.changed.wait())
                await asyncio.wait([changed] + ([leading] if leading else []), return_when=asyncio.FIRST_COMPLETED)
                await _cancel(changed)
                if leading is not None and leading.done():
                    leading.result()  # a component gave up: raise it (ComponentFailed)
                    raise RuntimeError("leader components ended")
        finally:
            await _cancel(feed)
            if leading is not None:
                await _cancel(leading)
            await server.stop(grace=0.2)

    async def _feed_events(self) -> None:
        """Every committed change this manager applies, as events (manager.events). A watch that
        overflows is reopened: the events it dropped are lost (logged), the stream goes on."""
        kinds = list(EVENT_KINDS)
        while True:
            watch = self.store.watch(kinds)
            try:
                async for change in watch:
                    ev = event_of(change)
                    if ev is not None:
                        self.events.publish(ev)
                        _observe_scheduling(ev, change)
            except WatchOverflow:
                log.warning("cluster events: the store watch fell behind; some events were not recorded")
            finally:
                watch.close()

    def _note_leader(self) -> None:
        """Publish a node event when the Raft leader this manager sees changes."""
        leader = quorum_view(self.raft.status()).leader or None
        if leader == self._leader_raft_addr:
            return
        previous, self._leader_raft_addr = self._leader_raft_addr, leader
        if leader:
            stats.COUNTERS["leader_changes"] += 1
        for node in self.store.view().nodes():
            raft_addr = node.manager_status.raft_addr
            if raft_addr and raft_addr in (leader, previous):
                self.events.publish(leader_event(node.id, node.description.hostname, raft_addr == leader))

    def leader_components(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """What runs while this manager leads; each is built afresh when (re)started."""
        store, clock = self.store, self._clock
        return {"dispatcher": self.dispatcher.run,
                "roles": self._roles.run,
                "allocator": lambda: Allocator(store, clock).run(),
                "orchestrator": lambda: Orchestrator(store, clock).run(),
                "scheduler": lambda: Scheduler(store, clock).run(),
                "reaper": lambda: TaskReaper(store, clock).run(),
                "keymanager": lambda: KeyManager(store, clock).run(),
                "carotation": lambda: CARotation(store, clock).run()}

    async def _lead(self) -> None:
        """The leader components under supervision; raises ComponentFailed when one gives up."""
        try:
            async with asyncio.TaskGroup() as group:
                for name, run in self.leader_components().items():
                    group.create_task(supervise(name, run, self.restart_policy, restarts=self.component_restarts),
                                      name=name)
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None

    # -- read helpers for the daemon's Info --------------------------------------
    def counts(self) -> tuple[int, int]:
        nodes = self.store.view().nodes()
        return len(nodes), sum(1 for n in nodes if n.role == objects_pb2.MANAGER)



def _observe_scheduling(ev: dict, change) -> None:
    """Scheduling delay: a task's creation to its assignment to a node, and to its running."""
    if ev["Type"] != "task" or ev["Action"] != "update":
        return
    stage = {"assigned": "assigned", "running": "running"}.get(ev["Actor"]["Attributes"].get("state.new", ""))
    created = change.obj.meta.created_at
    if stage and created:
        stats.SCHEDULING_SECONDS[stage].observe(max(0.0, ev["timeNano"] / 1e9 - created))


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
