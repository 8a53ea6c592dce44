"""shoald: one per host. Composition root of the manager and worker roles.

It serves the ControlAPI on a root-only unix socket for the ``shoal`` CLI. Swarm
membership calls (init, join, leave, info) are handled here; cluster calls go to the
local Manager when this node is one. Membership survives restarts through the state
directory (see shoal.nodestate); containers live in shoal-runtimed and survive
shoald restarts.
"""

from __future__ import annotations

import os as _os

_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # grpc core logs failed handshakes to stderr otherwise

import argparse
import asyncio
import functools
import ipaddress
import logging
import os
import platform
import secrets
import signal
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import grpc

from agent_runtime import logformat
from manager.ca import (CAError, require_role, server_credentials, InvalidJoinToken, JoinTokens, RootCA, channel_credentials,
                        channel_options, fetch_root_ca, make_node_key_and_csr, parse_join_token)
from manager.controlapi import GRPC_STATUS, ControlError
from manager.ids import new_id
from manager.manager import Manager, ManagerConfig
from manager.roles import MANAGER_OU, role_name
from manager.secretbox import new_key as new_secrets_key
from manager.state import MemoryStore, RaftNode, Store, StoreError
from proto import cluster_pb2, cluster_pb2_grpc, control_pb2, control_pb2_grpc, objects_pb2
from proto.ports import DEFAULT_PORT, mtls_addr
from shoal import __version__
from shoal.metrics import observe_proposal, serve_metrics
from shoal.netattach import AttachmentServicer, attach_network, detach_network
from shoal.nodestate import NodeState, StateDir
from agent_runtime.api import AsyncRuntimeClient
from worker.agent import Agent
from worker.logs import NodeLogsServicer
from worker.reporter import Reporter
from worker.worker import Worker

log = logging.getLogger("shoald")

JOIN_TIMEOUT = 20.0

class DaemonError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def parse_addr(addr: str, default_port: int, what: str) -> tuple[str, int]:
    """Parse HOST[:PORT] where HOST is an IPv4/IPv6 literal; DaemonError names what is wrong."""
    text = addr.strip()
    host, port = text, default_port
    if text.count(":") == 1 or text.startswith("["):
        host, _, port_text = text.rpartition(":")
        host = host.strip("[]")
        try:
            port = int(port_text)
        except ValueError:
            raise DaemonError("invalid", f"invalid {what} {addr!r}: port {port_text!r} is not a number") from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise DaemonError("invalid", f"invalid {what} {addr!r}: expected IP[:PORT], e.g. 192.0.2.11:2377") from None
    if not 0 < port < 65535:
        raise DaemonError("invalid", f"invalid {what} {addr!r}: port out of range")
    return host, port


def default_advertise_addr() -> str:
    """The address of the interface that carries the default route (like Docker's guess)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
            return probe.getsockname()[0]
        except OSError:
            raise DaemonError("invalid", "could not choose an advertise address: "
                                         "please specify one with --advertise-addr") from None


def node_description(hostname: str, grpc_addr: str = "") -> objects_pb2.NodeDescription:
    desc = objects_pb2.NodeDescription(hostname=hostname, grpc_addr=grpc_addr)
    desc.platform.os = platform.system().lower()
    desc.platform.architecture = platform.machine()
    desc.resources.nano_cpus = (os.cpu_count() or 1) * 10**9
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    desc.resources.memory_bytes = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    desc.engine.engine_version = __version__
    return desc


class Daemon:
    def __init__(self, state_dir: Path, socket_path: Path, hostname: str,
                 runtime_socket: Path | None = None, insecure_registries: tuple[str, ...] = ()):
        self.state = StateDir(state_dir)
        self.socket_path = Path(socket_path)
        self.hostname = hostname
        self.runtime_socket = runtime_socket
        self.node: NodeState | None = None
        self.manager: Manager | None = None
        self.raft: RaftNode | None = None
        self.agent: Agent | None = None
        self.worker: Worker | None = None
        self.insecure_registries = tuple(insecure_registries)
        self.runtime = AsyncRuntimeClient(str(runtime_socket)) if runtime_socket else None
        self.reporter = Reporter()
        self._tasks: list[asyncio.Task] = []
        self._lock = asyncio.Lock()  # membership changes run one at a time
        self._stopping = asyncio.Event()
        self._rejoining = False

    # -- lifecycle ---------------------------------------------------------------
    async def run(self) -> None:
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
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        log.info("shoald %s listening on %s", __version__, self.socket_path)
        try:
            node = self.state.load()
            if node is not None:
                await self._start_node(node)
            await self._stopping.wait()
        finally:
            await self._stop_node()
            await server.stop(grace=0.5)
            self.socket_path.unlink(missing_ok=True)

    async def _start_node(self, node: NodeState, bootstrap=None) -> None:
        """Start the roles ``node`` says this host has. Raises on failure, leaving nothing running."""
        self.node = node
        cert, key, ca = self.state.load_certificates()
        try:
            if node.role == "manager":
                await self._start_manager(node, cert, key, ca, bootstrap)
            self._start_agent(node, cert, key, ca)
            if node.role != "manager":
                self._tasks.append(asyncio.create_task(self._serve_node(node, cert, key, ca), name="node-server"))
        except BaseException:
            await self._stop_node()
            raise

    async def _start_manager(self, node: NodeState, cert: bytes, key: bytes, ca: bytes, bootstrap) -> None:
        password = self.state.load_raft_password()
        self.state.raft_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        peers = [p for p in node.raft_peers if p != node.raft_addr]
        memory = MemoryStore()
        self.raft = RaftNode(node.raft_addr, peers, self.state.raft_dir, password, memory)
        store = Store(memory, self.raft, on_proposal=observe_proposal)
        if bootstrap is not None:
            await self.raft.wait_ready(timeout=10)
            await store.update(bootstrap)
        config = ManagerConfig(cluster_id=node.cluster_id, listen_addr=node.listen_addr, cert_chain_pem=cert,
                               key_pem=key, root_ca_pem=ca, raft_password=password,
                               secrets_key=self.state.load_secrets_key())
        self.manager = Manager(config, store, self.raft, register_node_services=self._register_node_services)
        self._tasks.append(asyncio.create_task(self.manager.run(), name="manager"))

    def _register_node_services(self, server: grpc.aio.Server) -> None:
        """Services every node offers on its mutual-TLS port (managers host them on theirs)."""
        if self.runtime is not None and self.node is not None:
            authorize = functools.partial(require_role, cluster_id=self.node.cluster_id)
            cluster_pb2_grpc.add_NodeLogsServicer_to_server(NodeLogsServicer(self.runtime, authorize), server)
        if self.manager is not None and self.node is not None:  # attachments for nodes without a manager
            AttachmentServicer(self.manager, self.node.cluster_id).register(server)

    async def _serve_node(self, node: NodeState, cert: bytes, key: bytes, ca: bytes) -> None:
        """A worker's own mutual-TLS server (managers serve these on the manager's server)."""
        server = grpc.aio.server()
        self._register_node_services(server)
        server.add_secure_port(mtls_addr(node.listen_addr), server_credentials(cert, key, ca, require_client_cert=True))
        await server.start()
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop(grace=0.2)

    def _start_agent(self, node: NodeState, cert: bytes, key: bytes, ca: bytes) -> None:
        creds = channel_credentials(ca, cert, key)
        managers = node.managers or [node.grpc_addr]
        self.worker = None
        if self.runtime is not None:
            self.worker = Worker(self.runtime, self.reporter, self.insecure_registries)
        self.agent = Agent(managers, creds, channel_options(), lambda: node_description(self.hostname, node.grpc_addr),
                           self._on_session, worker=self.worker, reporter=self.reporter)
        self._tasks.append(asyncio.create_task(self.agent.run(), name="agent"))

    async def _stop_node(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self.worker is not None:
            await self.worker.close()
        if self.raft is not None:
            await self.raft.close()
        self.raft = self.manager = self.agent = self.worker = None

    async def _on_session(self, message: cluster_pb2.SessionMessage) -> None:
        node = self.node
        if node is None:
            return
        managers = sorted(p.addr for p in message.managers if p.addr)
        if managers and managers != sorted(node.managers):
            node.managers = managers
            self.state.save(node)
        wanted = role_name(message.role)
        if wanted != node.role:
            self._background(self._change_role(wanted), "role change")
        elif node.role == "manager" and managers and node.grpc_addr not in managers and not self._rejoining:
            # The swarm lists no manager at our address although we are one: we were
            # removed from Raft (a quick demote + promote) and must ask to be added back.
            self._rejoining = True
            self._background(self._rejoin_raft(), "raft rejoin")

    def _background(self, coro, what: str) -> None:
        """Run a membership step on the side; log (not lose) its failure."""
        def done(task: asyncio.Task) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.warning("%s failed: %s", what, task.exception())
        asyncio.create_task(coro).add_done_callback(done)

    async def _rejoin_raft(self) -> None:
        try:
            async with self._lock:
                if self.node is not None and self.node.role == "manager" and self.raft is not None:
                    log.info("asking the leader to add this manager back to raft")
                    await self._join_raft(self.node)
        finally:
            self._rejoining = False

    async def _change_role(self, wanted: str) -> None:
        """Renew the certificate for the role the cluster assigned and restart the roles."""
        async with self._lock:
            node = self.node
            if node is None or node.role == wanted:
                return
            log.info("role change: %s -> %s", node.role, wanted)
            cert, key, ca = self.state.load_certificates()
            new_key, csr = make_node_key_and_csr()
            response = None
            for addr in ([self.agent.managers[0]] if self.agent and self.agent.managers else []) + node.managers:
                try:
                    async with grpc.aio.secure_channel(mtls_addr(addr), channel_credentials(ca, cert, key),
                                                       options=channel_options()) as channel:
                        response = await cluster_pb2_grpc.NodeCAStub(channel).RenewCertificate(
                            cluster_pb2.RenewCertificateRequest(csr=csr), timeout=5)
                    break
                except grpc.aio.AioRpcError as err:
                    log.warning("renew certificate at %s: %s", addr, err.details())
            if response is None or role_name(response.role) != wanted:
                return
            await self._stop_node()
            self.state.save_certificates(response.certificate, new_key, ca)
            node.role = wanted
            if wanted == "manager":
                self.state.forget_raft()
                self.state.save_raft_password(response.raft_password)
                self.state.save_secrets_key(response.secrets_key)
                node.raft_peers = list(response.raft_peers)
            else:
                self.state.forget_raft()
                node.raft_peers = []
            self.state.save(node)
            await self._start_node(node)
            if wanted == "manager":
                await self._join_raft(node)

    # -- membership calls ----------------------------------------------------------
    async def init(self, request: control_pb2.SwarmInitRequest) -> control_pb2.SwarmInitResponse:
        async with self._lock:
            if self.node is not None:
                raise DaemonError("precondition", "this node is already part of a swarm; "
                                                  "use \"shoal swarm leave\" to leave it first")
            listen_host, listen_port = parse_addr(request.listen_addr or f"0.0.0.0:{DEFAULT_PORT}",
                                                  DEFAULT_PORT, "listen address")
            if request.advertise_addr:
                advertise_host, _ = parse_addr(request.advertise_addr, listen_port, "advertise address")
            elif listen_host not in ("0.0.0.0", "::"):
                advertise_host = listen_host
            else:
                advertise_host = default_advertise_addr()
            if request.dispatcher_heartbeat < 0:
                raise DaemonError("invalid", "invalid dispatcher heartbeat: must be positive")
            now = datetime.now(timezone.utc)
            cluster_id, node_id = new_id(), new_id()
            root = RootCA.create(cluster_id, now)
            key, csr = make_node_key_and_csr()
            cert = root.sign_node_csr(csr, node_id, MANAGER_OU, now, ip_sans=[advertise_host])
            tokens = JoinTokens.create(root.digest)
            password = secrets.token_hex(32).encode()
            node = NodeState(node_id=node_id, role="manager", cluster_id=cluster_id,
                             advertise_addr=advertise_host, listen_addr=f"{listen_host}:{listen_port}")
            node.managers = [node.grpc_addr]

            cluster = objects_pb2.Cluster(id=cluster_id)
            cluster.spec.annotations.name = "default"
            cluster.spec.dispatcher.heartbeat_period = request.dispatcher_heartbeat or 5.0
            cluster.spec.orchestration.task_history_retention_limit = 5
            cluster.spec.default_addr_pool.extend(request.default_addr_pool or ["10.0.0.0/8"])
            cluster.spec.subnet_size = request.subnet_size or 24
            cluster.root_ca.ca_cert = root.cert_pem
            cluster.root_ca.ca_key = root.key_pem
            cluster.root_ca.ca_digest = root.digest
            cluster.root_ca.join_tokens.worker = tokens.worker
            cluster.root_ca.join_tokens.manager = tokens.manager
            cluster.raft_password = password
            me = objects_pb2.Node(id=node_id, role=objects_pb2.MANAGER,
                                  description=node_description(self.hostname, node.grpc_addr))
            me.spec.desired_role = objects_pb2.MANAGER
            me.spec.annotations.labels.update(request.labels)
            me.status.state = objects_pb2.NodeStatus.READY
            me.status.addr = advertise_host
            me.manager_status.addr = node.grpc_addr
            me.manager_status.raft_addr = node.raft_addr

            def bootstrap(tx):
                tx.create(cluster)
                tx.create(me)

            self.state.save_certificates(cert + root.cert_pem, key, root.cert_pem)
            self.state.save_raft_password(password)
            self.state.save_secrets_key(new_secrets_key())  # never in the store: see manager.secretbox
            self.state.save(node)
            try:
                await self._start_node(node, bootstrap=bootstrap)
            except BaseException:
                self.node = None
                self.state.wipe()
                raise
            log.info("swarm initialized: cluster %s, this node %s is a manager", cluster_id, node_id)
            return control_pb2.SwarmInitResponse(node_id=node_id, worker_token=tokens.worker,
                                                 manager_token=tokens.manager)

    async def join(self, request: control_pb2.SwarmJoinRequest) -> control_pb2.SwarmJoinResponse:
        async with self._lock:
            if self.node is not None:
                raise DaemonError("precondition", "this node is already part of a swarm; "
                                                  "use \"shoal swarm leave\" to leave it first")
            remote_host, remote_port = parse_addr(request.remote_addr, DEFAULT_PORT, "remote address")
            remote = f"{remote_host}:{remote_port}"
            try:
                token = parse_join_token(request.join_token)
            except InvalidJoinToken as err:
                raise DaemonError("invalid", str(err)) from err
            listen_host, listen_port = parse_addr(request.listen_addr or f"0.0.0.0:{DEFAULT_PORT}",
                                                  DEFAULT_PORT, "listen address")
            if request.advertise_addr:
                advertise_host, _ = parse_addr(request.advertise_addr, listen_port, "advertise address")
            elif listen_host not in ("0.0.0.0", "::"):
                advertise_host = listen_host
            else:
                advertise_host = default_advertise_addr()
            try:
                root_pem = await asyncio.to_thread(fetch_root_ca, remote, token.ca_digest_hex, 5.0)
            except (CAError, OSError) as err:
                raise DaemonError("unavailable", f"join {remote}: {err}") from err
            key, csr = make_node_key_and_csr()
            availability = {"": 0, "active": 0, "pause": 1, "drain": 2}.get(request.availability.lower())
            if availability is None:
                raise DaemonError("invalid", f"invalid availability {request.availability!r}: "
                                             "expected active, pause or drain")
            try:
                async with grpc.aio.secure_channel(remote, channel_credentials(root_pem),
                                                   options=channel_options()) as channel:
                    response = await cluster_pb2_grpc.NodeCAStub(channel).IssueNodeCertificate(
                        cluster_pb2.IssueNodeCertificateRequest(
                            csr=csr, token=request.join_token, hostname=self.hostname,
                            advertise_addr=f"{advertise_host}:{listen_port}", availability=availability),
                        timeout=JOIN_TIMEOUT)
            except grpc.aio.AioRpcError as err:
                code = {grpc.StatusCode.UNAUTHENTICATED: "invalid",
                        grpc.StatusCode.INVALID_ARGUMENT: "invalid"}.get(err.code(), "unavailable")
                raise DaemonError(code, f"join {remote}: {err.details()}") from err
            node = NodeState(node_id=response.node_id, role=role_name(response.role),
                             cluster_id=response.cluster_id, advertise_addr=advertise_host,
                             listen_addr=f"{listen_host}:{listen_port}",
                             managers=list(response.managers) or [remote],
                             raft_peers=list(response.raft_peers))
            self.state.save_certificates(response.certificate, key, response.root_ca)
            if node.role == "manager":
                self.state.save_raft_password(response.raft_password)
                self.state.save_secrets_key(response.secrets_key)
            self.state.save(node)
            try:
                await self._start_node(node)
                if node.role == "manager":
                    await self._join_raft(node)
                await asyncio.wait_for(self.agent.connected.wait(), JOIN_TIMEOUT)
            except BaseException as err:
                await self._stop_node()
                self.node = None
                self.state.wipe()
                if isinstance(err, (asyncio.TimeoutError, grpc.aio.AioRpcError, StoreError)):
                    raise DaemonError("unavailable", f"join {remote}: timed out waiting to join: {err}") from err
                raise
            log.info("joined swarm %s as %s %s", node.cluster_id, node.role, node.node_id)
            return control_pb2.SwarmJoinResponse(node_id=node.node_id, role=response.role)

    async def _join_raft(self, node: NodeState) -> None:
        """Ask the leader to add this manager's Raft endpoint, following redirects."""
        cert, key, ca = self.state.load_certificates()
        creds = channel_credentials(ca, cert, key)
        deadline = time.monotonic() + JOIN_TIMEOUT
        candidates = list(node.managers)
        last_error = "no manager reachable"
        while time.monotonic() < deadline:
            addr = candidates[0] if candidates else node.managers[0]
            try:
                async with grpc.aio.secure_channel(mtls_addr(addr), creds, options=channel_options()) as channel:
                    await cluster_pb2_grpc.RaftMembershipStub(channel).Join(
                        cluster_pb2.RaftJoinRequest(raft_addr=node.raft_addr), timeout=10)
                await self.raft.wait_ready(timeout=max(1.0, deadline - time.monotonic()))
                return
            except grpc.aio.AioRpcError as err:
                last_error = f"{addr}: {err.details()}"
                leader = dict(err.trailing_metadata() or ()).get("leader-addr")
                if leader:
                    candidates = [leader] + [c for c in candidates if c != leader]
                    continue
                candidates = candidates[1:] + candidates[:1]
            await asyncio.sleep(0.3)
        raise DaemonError("unavailable", f"could not join the raft cluster: {last_error}")

    async def leave(self, request: control_pb2.SwarmLeaveRequest) -> control_pb2.SwarmLeaveResponse:
        async with self._lock:
            node = self.node
            if node is None:
                raise DaemonError("precondition", "this node is not part of a swarm")
            if node.role == "manager" and not request.force:
                total = len(self.manager.raft_members()) if self.manager else 1
                raise DaemonError(
                    "precondition",
                    f"you are attempting to leave the swarm on a node that is participating as a manager; "
                    f"removing it leaves {total - 1} managers out of {total}. Demote it first "
                    "(shoal node demote), or use --force to ignore this message")
            if node.role == "manager" and self.manager is not None and len(self.manager.raft_members()) > 1:
                await self._leave_raft(node)
            await self._stop_node()
            self.node = None
            self.state.wipe()
            log.info("left the swarm")
            return control_pb2.SwarmLeaveResponse()

    async def _leave_raft(self, node: NodeState) -> None:
        cert, key, ca = self.state.load_certificates()
        creds = channel_credentials(ca, cert, key)
        if self.raft is not None and self.raft.is_leader():
            try:
                await self.raft.transfer_leadership()
            except StoreError as err:
                log.warning("leave: could not hand leadership over: %s", err)
        leader = self.manager.leader_addr()
        for addr in [a for a in [leader] + node.managers if a and a != node.grpc_addr]:
            try:
                async with grpc.aio.secure_channel(mtls_addr(addr), creds, options=channel_options()) as channel:
                    await cluster_pb2_grpc.RaftMembershipStub(channel).Leave(
                        cluster_pb2.RaftLeaveRequest(node_id=node.node_id), timeout=10)
                return
            except grpc.aio.AioRpcError as err:
                log.warning("raft leave via %s: %s", addr, err.details())

    def info(self) -> control_pb2.InfoResponse:
        node = self.node
        info = control_pb2.InfoResponse(hostname=self.hostname, engine_version=__version__,
                                        local_node_state="inactive")
        if node is None:
            return info
        info.node_id = node.node_id
        info.cluster_id = node.cluster_id
        info.node_addr = node.advertise_addr
        info.local_node_state = "active" if self.agent is not None and self.agent.connected.is_set() else "pending"
        info.remote_managers.extend(self.agent.managers if self.agent else node.managers)
        if self.manager is not None and self.raft is not None:
            info.control_available = True
            status = self.raft.status()
            info.raft_term = status.term
            info.raft_commit_index = status.commit_index
            info.leader_addr = self.manager.leader_addr() or ""
            reachable = {m.addr for m in status.members if m.reachable} | {status.self_addr}
            by_raft = {n.manager_status.raft_addr: n for n in self.manager.store.view().nodes()}
            for addr in self.manager.raft_members():
                member = by_raft.get(addr)
                info.managers.append(control_pb2.RaftMember(
                    node_id=member.id if member else "", raft_addr=addr,
                    leader=addr == status.leader_addr, reachable=addr in reachable))
            info.nodes, info.managers_count = self.manager.counts()
        return info


class LocalControl(control_pb2_grpc.ControlServicer):
    """The gRPC edge of the unix socket: errors become status codes here and only here."""

    def __init__(self, daemon: Daemon):
        self.d = daemon

    async def _call(self, context, fn, *args):
        try:
            return await fn(*args)
        except (DaemonError, ControlError) as err:
            await context.abort(GRPC_STATUS.get(err.code, grpc.StatusCode.UNKNOWN), str(err))
        except StoreError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))

    async def _manager(self, context) -> Manager:
        if self.d.manager is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "this node is not a swarm manager. Worker nodes can't be used to view or modify "
                                "cluster state. Please run this command on a manager node or promote the "
                                "current node to a manager." if self.d.node else
                                "this node is not a swarm manager. Use \"shoal swarm init\" or "
                                "\"shoal swarm join\" to connect this node to swarm and try again.")
        return self.d.manager

    async def Info(self, request, context):
        return self.d.info()

    async def SwarmInit(self, request, context):
        return await self._call(context, self.d.init, request)

    async def SwarmJoin(self, request, context):
        return await self._call(context, self.d.join, request)

    async def SwarmLeave(self, request, context):
        return await self._call(context, self.d.leave, request)

    async def ServiceLogs(self, request, context):
        manager = await self._manager(context)
        try:
            async for message in manager.logs.service_logs(request):
                yield message
        except (DaemonError, ControlError) as err:
            await context.abort(GRPC_STATUS.get(err.code, grpc.StatusCode.UNKNOWN), str(err))

    async def AttachNetwork(self, request, context):
        """A one-off container on this node joins an attachable network (shoal/netattach.py)."""
        return await self._call(context, attach_network, self.d, request)

    async def DetachNetwork(self, request, context):
        return await self._call(context, detach_network, self.d, request)







# ControlAPI calls answered by the local manager: RPC name -> method path under Manager.control.
_MANAGER_CALLS = {
    "GetCluster": "get_cluster",
    "UpdateCluster": "update_cluster",
    "ListNodes": "list_nodes",
    "GetNode": "get_node",
    "UpdateNode": "update_node",
    "RemoveNode": "remove_node",
    "CreateService": "services.create_service",
    "GetService": "services.get_service",
    "UpdateService": "services.update_service",
    "RemoveService": "services.remove_service",
    "ListServices": "services.list_services",
    "ListTasks": "services.list_tasks",
    "GetTask": "services.get_task",
    "CreateNetwork": "networks.create_network",
    "GetNetwork": "networks.get_network",
    "ListNetworks": "networks.list_networks",
    "RemoveNetwork": "networks.remove_network",
    "CreateSecret": "secrets.create_secret",
    "GetSecret": "secrets.get_secret",
    "ListSecrets": "secrets.list_secrets",
    "RemoveSecret": "secrets.remove_secret",
    "CreateConfig": "secrets.create_config",
    "GetConfig": "secrets.get_config",
    "ListConfigs": "secrets.list_configs",
    "RemoveConfig": "secrets.remove_config",
}


def _delegate(rpc: str, path: str):
    async def call(self, request, context):
        target = (await self._manager(context)).control
        for name in path.split("."):
            target = getattr(target, name)
        return await self._call(context, target, request)
    call.__name__ = rpc
    return call


for _rpc, _path in _MANAGER_CALLS.items():
    setattr(LocalControl, _rpc, _delegate(_rpc, _path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="shoald", description="The Shoal node daemon.")
    parser.add_argument("--state-dir", default="/var/lib/shoal/state", type=Path)
    parser.add_argument("--socket", default="/run/shoal/shoal.sock", type=Path)
    parser.add_argument("--runtime-socket", default=None, type=Path)
    parser.add_argument("--hostname", default=socket.gethostname())
    parser.add_argument("--metrics-addr", default="", help="IP:PORT for /metrics (Prometheus); off if empty")
    parser.add_argument("--insecure-registry", action="append", default=[],
                        help="registry (HOST:PORT or CIDR) to reach over plain HTTP; repeatable")
    parser.add_argument("--log-level", default=os.environ.get("SHOAL_LOG_LEVEL", "warning"),
                        help="debug, info, warning or error")
    parser.add_argument("--log-format", default=os.environ.get("SHOAL_LOG_FORMAT", "text"),
                        choices=logformat.FORMATS, help="text (logfmt) or json")
    args = parser.parse_args(argv)
    try:
        logformat.configure(args.log_level, args.log_format)
    except ValueError as exc:
        parser.error(str(exc))
    daemon = Daemon(args.state_dir, args.socket, args.hostname, args.runtime_socket,
                    tuple(args.insecure_registry))
    if args.metrics_addr:
        host, port = parse_addr(args.metrics_addr, 9323, "metrics address")
        serve_metrics(daemon, host, port)
    asyncio.run(daemon.run())


if __name__ == "__main__":
    main()
