"""A manager node: the node-to-node gRPC server (mutual TLS), the ControlAPI, and the
components that run only while this manager leads (dispatcher liveness, roles, allocator,
orchestrator, scheduler, task reaper, network key manager).

Built from a store, its RaftNode and the node's certificates; ``run()`` serves until
cancelled and stops everything it started in ``finally``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import Callable

import grpc

from manager.ca import channel_credentials, channel_options, require_role, server_credentials
from manager.allocator.component import Allocator
from manager.controlapi import ControlAPI
from manager.controlapi.logs import LogBroker
from manager.dispatcher import Dispatcher
from manager.keymanager import KeyManager
from manager.membership import NodeCAServicer, RaftMembershipServicer, RoleReconciler
from manager.orchestrator.component import Orchestrator
from manager.reaper import TaskReaper
from manager.scheduler.component import Scheduler
from manager.secretbox import SecretBox
from manager.state import Kind
from proto import cluster_pb2_grpc, objects_pb2
from proto.ports import grpc_addr_of_raft, mtls_addr

log = logging.getLogger(__name__)

LEADER_POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class ManagerConfig:
    cluster_id: str
    listen_addr: str          # host:port to bind the gRPC server to
    cert_chain_pem: bytes     # node certificate followed by the root CA
    key_pem: bytes
    root_ca_pem: bytes
    raft_password: bytes
    secrets_key: bytes = b""  # seals secrets at rest (manager.secretbox); never in the store


class Manager:
    def __init__(self, config: ManagerConfig, store, raft, clock: Callable[[], float] = time.time,
                 register_node_services: Callable[[grpc.aio.Server], None] | None = None):
        self.config = config
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

    def _dial_node(self, addr: str, server_role: str) -> grpc.aio.Channel:
        creds = channel_credentials(self.config.root_ca_pem, self.config.cert_chain_pem, self.config.key_pem)
        return grpc.aio.secure_channel(addr, creds, options=channel_options(server_role))

    # -- leadership ------------------------------------------------------------
    def is_leader(self) -> bool:
        return self.raft.is_leader()

    def leader_addr(self) -> str | None:
        """The leader's gRPC address, or None while there is no leader."""
        raft_leader = self.raft.status().leader_addr
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
            creds = server_credentials(self.config.cert_chain_pem, self.config.key_pem,
                                       self.config.root_ca_pem, require_client_cert=require)
            server.add_secure_port(addr, creds)
        await server.start()
        log.info("manager serving node-to-node gRPC on %s (join) and %s (mutual TLS)",
                 self.config.listen_addr, mtls_addr(self.config.listen_addr))
        leader_tasks: list[asyncio.Task] = []
        try:
            while True:
                leading = self.is_leader()
                if leading and not leader_tasks:
                    log.info("this manager is now the leader")
                    leader_tasks = [asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
                                    asyncio.create_task(self._roles.run(), name="roles"),
                                    asyncio.create_task(Allocator(self.store, self._clock).run(), name="allocator"),
                                    asyncio.create_task(Orchestrator(self.store, self._clock).run(), name="orchestrator"),
                                    asyncio.create_task(Scheduler(self.store, self._clock).run(), name="scheduler"),
                                    asyncio.create_task(TaskReaper(self.store, self._clock).run(), name="reaper"),
                                    asyncio.create_task(KeyManager(self.store, self._clock).run(), name="keymanager")]
                elif not leading and leader_tasks:
                    log.info("this manager is no longer the leader")
                    await _cancel(leader_tasks)
                    leader_tasks = []
                for task in leader_tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        log.error("leader component %s failed: %r", task.get_name(), task.exception())
                        raise task.exception()
                await asyncio.sleep(LEADER_POLL_INTERVAL)
        finally:
            await _cancel(leader_tasks)
            await server.stop(grace=0.2)

    # -- read helpers for the daemon's Info --------------------------------------
    def counts(self) -> tuple[int, int]:
        nodes = self.store.view().nodes()
        return len(nodes), sum(1 for n in nodes if n.role == objects_pb2.MANAGER)

    def cluster(self) -> objects_pb2.Cluster | None:
        return self.store.view().cluster()

    def node(self, node_id: str) -> objects_pb2.Node | None:
        return self.store.view().get(Kind.NODE, node_id)


async def _cancel(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
