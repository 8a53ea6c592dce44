"""The Daemon: this host's node, its roles, and changes between them.

A node runs its roles as one supervised task group (``RoleGroup``): a manager runs the Manager
(node-to-node gRPC server, Raft-driven leader components) and the agent; a worker runs the agent
and its own mutual-TLS server. The agent never ends by itself (it reconnects forever). If any
other member of the group fails, the whole node is stopped and ``Daemon.run`` returns the failure
so shoald exits non-zero and its supervisor (systemd) restarts it: a manager never keeps leading
Raft without the server that makes it useful.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
from pathlib import Path
from typing import Any, Callable, Coroutine

import grpc

from agent_runtime import sdnotify
from agent_runtime.api import AsyncRuntimeClient
from manager.ca import NodeTLS, channel_options, require_role
from manager.manager import LeaderSignal, Manager, ManagerConfig
from manager.supervisor import RestartPolicy
from manager.rolenames import role_name
from manager.state import MemoryStore, RaftNode, Store
from proto import cluster_pb2, cluster_pb2_grpc, control_pb2, control_pb2_grpc, objects_pb2
from proto.ports import mtls_addr
from shoal import __version__
from shoal.daemon import info, membership, recovery, rolechange
from shoal.daemon.config import node_description
from shoal.daemon.control import LocalControl
from shoal.daemon.supervision import RoleGroup, RoleTask
from shoal.metrics import observe_proposal
from shoal.netattach import AttachmentServicer, detach_network
from shoal.autolock import follow_unlock_key, unlock
from shoal.nodecerts import NodeCertificates
from shoal.nodestate import NodeState, StateDir
from worker.agent import Agent
from worker.logs import NodeLogsServicer
from worker.reporter import Reporter
from worker.worker import Worker

log = logging.getLogger("shoald")

Bootstrap = Callable[[Any], None]  # writes the first objects into the store (swarm init): fn(tx)


class Daemon:
    def __init__(self, state_dir: Path, socket_path: Path, hostname: str,
                 runtime_socket: Path | None = None, insecure_registries: tuple[str, ...] = (),
                 restart_policy: RestartPolicy = RestartPolicy()):
        self.state = StateDir(state_dir)
        self.socket_path = Path(socket_path)
        self.hostname = hostname
        self.node: NodeState | None = None
        self.manager: Manager | None = None
        self.raft: RaftNode | None = None
        self.agent: Agent | None = None
        self.worker: Worker | None = None
        self.certs: NodeCertificates | None = None
        self.locked = False                 # autolock: started with encrypted keys, waiting for the key
        self.insecure_registries = tuple(insecure_registries)
        self.default_address_pools: list[dict[str, Any]] = []   # daemon.json: what `swarm init` uses without --default-addr-pool
        self.generic_resources: tuple[objects_pb2.GenericResource, ...] = ()   # --node-generic-resource, reported with the node's description
        self.runtime = AsyncRuntimeClient(str(runtime_socket)) if runtime_socket else None
        self.reporter = Reporter()
        self.lock = asyncio.Lock()  # membership changes run one at a time
        self._roles: RoleGroup | None = None
        self._background_tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.serving = asyncio.Event()      # set once run() serves its socket
        self._failure: BaseException | None = None
        self._rejoining = False
        self.on_reload = lambda: None   # SIGHUP (shoal.daemon.main.reloader)
        self.restart_policy = restart_policy  # of the leader components (manager.supervisor)

    def set_insecure_registries(self, registries: tuple[str, ...]) -> None:
        """Registries pulled over plain HTTP from now on (SIGHUP reload); running tasks keep theirs."""
        self.insecure_registries = tuple(registries)
        if self.worker is not None:
            self.worker.set_insecure_registries(self.insecure_registries)

    # -- lifecycle ---------------------------------------------------------------
    async def run(self) -> BaseException | None:
        """Serve until SIGTERM/SIGINT (returns None) or until a role fails (returns the failure)."""
        # Signals first: the socket exists from add_insecure_port on, and whoever sees it may send
        # SIGHUP at once (a SIGHUP during server.start() used to kill shoald, its default action).
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.on_reload())
        server = grpc.aio.server()
        control_pb2_grpc.add_ControlServicer_to_server(LocalControl(self), server)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        old_umask = os.umask(0o177)
        try:
            server.add_insecure_port(f"unix:{self.socket_path}")
            await server.start()
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
        self.serving.set()
        log.info("shoald %s listening on %s", __version__, self.socket_path)
        try:
            node = self.state.load()
            if node is not None and self.state.locked():   # autolock: wait for `shoal swarm unlock`
                self.node, self.locked = node, True
                log.warning("this manager is locked (autolock): run `shoal swarm unlock` to start it")
            elif node is not None:
                await self.start_node(node)
            sdnotify.ready(f"listening on {self.socket_path}")
            await self._stopping.wait()
            sdnotify.stopping()
        finally:
            for task in list(self._background_tasks):
                task.cancel()
            await self.stop_node()
            await server.stop(grace=0.5)
            self.socket_path.unlink(missing_ok=True)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        return self._failure

    def _role_failed(self, failure: BaseException) -> None:
        self._failure = failure
        self._stopping.set()

    async def start_node(self, node: NodeState, bootstrap: Bootstrap | None = None) -> None:
        """Start the roles ``node`` says this host has. Raises on failure, leaving nothing running."""
        self.node = node
        tasks: dict[str, RoleTask] = {}
        try:
            self.certs = NodeCertificates(self.state, self._known_managers, self._restart_session, self.lock)
            tls = self.certs.tls
            if node.role == "manager":
                tasks["manager"] = await self._start_manager(node, tls, bootstrap)
            tasks["agent"] = self._start_agent(node, tls)
            tasks["certificates"] = self.certs.run()
            if self.manager is not None:  # keep the key files locked with the swarm's unlock key (or not)
                tasks["autolock"] = follow_unlock_key(self.state, self.manager.store, self.state.load_secrets_key())
            if node.role != "manager":
                tasks["node-server"] = self._serve_node(node, tls)
        except BaseException:
            for coro in tasks.values():
                coro.close()
            await self.stop_node()
            raise
        self._roles = RoleGroup(tasks, self._role_failed)

    def _known_managers(self) -> list[str]:   # to ask for a certificate: the agent's (leader first)
        return self.agent.managers if self.agent else list(self.node.managers) if self.node else []

    def _restart_session(self) -> None:
        """The certificate or the trusted roots changed: a new session reports them to the leader."""
        if self.agent is not None:
            self.agent.restart_session()

    async def _start_manager(self, node: NodeState, tls: NodeTLS, bootstrap: Bootstrap | None) -> RoleTask:
        password = self.state.load_raft_password()
        self.state.raft_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        peers = [p for p in node.raft_peers if p != node.raft_addr]
        memory = MemoryStore()
        leadership = LeaderSignal(asyncio.get_running_loop())
        self.raft = RaftNode(node.raft_addr, peers, self.state.raft_dir, password, memory,
                             on_leader_change=leadership.notify)
        store = Store(memory, self.raft, on_proposal=observe_proposal)
        if bootstrap is not None:
            await self.raft.wait_ready(timeout=10)
            await store.update(bootstrap)
        config = ManagerConfig(cluster_id=node.cluster_id, listen_addr=node.listen_addr,
                               cert_chain_pem=tls.cert_pem, key_pem=tls.key_pem, root_ca_pem=tls.ca_pem,
                               raft_password=password, secrets_key=self.state.load_secrets_key(), tls=tls)
        self.manager = Manager(config, store, self.raft, leadership,
                               register_node_services=self._register_node_services,
                               restart_policy=self.restart_policy)
        return self.manager.run()

    def _register_node_services(self, server: grpc.aio.Server) -> None:
        """Services every node offers on its mutual-TLS port (managers host them on theirs)."""
        if self.runtime is not None and self.node is not None:
            authorize = functools.partial(require_role, cluster_id=self.node.cluster_id)
            cluster_pb2_grpc.add_NodeLogsServicer_to_server(NodeLogsServicer(self.runtime, authorize), server)
        if self.manager is not None and self.node is not None:  # attachments for nodes without a manager
            AttachmentServicer(self.manager, self.node.cluster_id).register(server)

    async def _serve_node(self, node: NodeState, tls: NodeTLS) -> None:
        """A worker's own mutual-TLS server (managers serve these on the manager's server)."""
        server = grpc.aio.server()
        self._register_node_services(server)
        server.add_secure_port(mtls_addr(node.listen_addr), tls.server_credentials(require_client_cert=True))
        await server.start()
        try:
            await server.wait_for_termination()
        finally:
            await server.stop(grace=0.2)

    def _start_agent(self, node: NodeState, tls: NodeTLS) -> RoleTask:
        managers = node.managers or [node.grpc_addr]
        self.worker = None
        if self.runtime is not None:
            self.worker = Worker(self.runtime, self.reporter, self.insecure_registries, hostname=self.hostname,
                                 detach=self._release_attachment)
        self.agent = Agent(managers, tls.channel_credentials, channel_options(),
                           lambda: node_description(self.hostname, node.grpc_addr, tls.tls_info(),
                                                    self.generic_resources),
                           self._on_session, worker=self.worker, reporter=self.reporter)
        return self.agent.run()

    async def _release_attachment(self, attachment_id: str) -> None:
        """The worker's way to release a one-off container's network attachment (its container went)."""
        await detach_network(self, control_pb2.DetachNetworkRequest(attachment_id=attachment_id))

    async def stop_node(self) -> None:
        roles, self._roles = self._roles, None
        if roles is not None:
            await roles.stop()
        if self.worker is not None:
            await self.worker.close()
        if self.raft is not None:
            await self.raft.close()
        self.raft = self.manager = self.agent = self.worker = self.certs = None

    # -- what the swarm tells this node --------------------------------------------
    async def _on_session(self, message: cluster_pb2.SessionMessage) -> None:
        node = self.node
        if node is None:
            return
        managers = sorted(p.addr for p in message.managers if p.addr)
        if managers and managers != sorted(node.managers):
            node.managers = managers
            self.state.save(node)
        if self.certs is not None:
            self.certs.on_session(message)          # trusted roots, renewal requests (CA rotation)
        wanted = role_name(message.role)
        if wanted != node.role:
            self._background(rolechange.change_role(self, wanted), "role change")
        elif node.role == "manager" and managers and node.grpc_addr not in managers and not self._rejoining:
            # The swarm lists no manager at our address although we are one: we were
            # removed from Raft (a quick demote + promote) and must ask to be added back.
            self._rejoining = True
            self._background(self._rejoin_raft(), "raft rejoin")

    def _background(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Run a membership step on the side; log (not lose) its failure."""
        def done(task: asyncio.Task[None]) -> None:
            self._background_tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.warning("%s failed: %s", what, task.exception())
        task = asyncio.create_task(coro, name=what)
        self._background_tasks.add(task)
        task.add_done_callback(done)

    async def _rejoin_raft(self) -> None:
        try:
            async with self.lock:
                if self.node is not None and self.node.role == "manager" and self.raft is not None:
                    log.info("asking the leader to add this manager back to raft")
                    await membership.join_raft(self, self.node)
        finally:
            self._rejoining = False

    # -- the calls LocalControl serves ------------------------------------------------
    async def init(self, request: control_pb2.SwarmInitRequest) -> control_pb2.SwarmInitResponse:
        async with self.lock:
            if request.force_new_cluster or request.restore_file:
                return await recovery.init(self, request)
            return await membership.init(self, request)

    async def unlock(self, request: control_pb2.SwarmUnlockRequest) -> control_pb2.SwarmUnlockResponse:
        async with self.lock:
            return await unlock(self, request)

    async def backup(self, request: control_pb2.SwarmBackupRequest) -> control_pb2.SwarmBackupResponse:
        async with self.lock:
            return await recovery.backup(self, request)

    async def join(self, request: control_pb2.SwarmJoinRequest) -> control_pb2.SwarmJoinResponse:
        async with self.lock:
            return await membership.join(self, request)

    async def leave(self, request: control_pb2.SwarmLeaveRequest) -> control_pb2.SwarmLeaveResponse:
        async with self.lock:
            return await membership.leave(self, request)

    def info(self) -> control_pb2.InfoResponse:
        return info.info(self)
