"""Swarm membership: init, join and leave, and the calls a node makes to the managers for them.

Every call to "some manager" goes through ``call_managers``: it tries the known managers in turn,
follows the ``leader-addr`` a follower names, and gives up at a deadline with an error naming the
last failure. The daemon runs these under its membership lock (one change at a time).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

import grpc

from manager.ca import (CAError, InvalidJoinToken, JoinTokens, RootCA, channel_credentials, channel_options,
                        fetch_root_ca, make_node_key_and_csr, node_cert_validity, parse_join_token)
from manager.ids import new_id
from manager.rolenames import MANAGER_OU, role_name
from manager.secretbox import (CA_KEY_LABEL, RAFT_PASSWORD_LABEL, UNLOCK_KEY_LABEL, format_unlock_key, new_unlock_key,
                               seal_value)
from manager.secretbox import new_key as new_secrets_key
from manager.state import StoreError, raft_timings
from proto import cluster_pb2, cluster_pb2_grpc, control_pb2, objects_pb2
from proto.ports import DEFAULT_PORT, mtls_addr
from shoal.daemon.config import DaemonError, listen_and_advertise, node_description, parse_addr
from shoal.nodestate import NodeState

if TYPE_CHECKING:
    from shoal.daemon.roles import Daemon

log = logging.getLogger("shoald")

JOIN_TIMEOUT = 20.0
CALL_TIMEOUT = 10.0
RETRY_PAUSE = 0.3
LEADER_ADDR_KEY = "leader-addr"
AVAILABILITY = {"": objects_pb2.NodeSpec.ACTIVE, "active": objects_pb2.NodeSpec.ACTIVE,
                "pause": objects_pb2.NodeSpec.PAUSE, "drain": objects_pb2.NodeSpec.DRAIN}

T = TypeVar("T")


async def call_managers(addrs: list[str], credentials: grpc.ChannelCredentials,
                        call: Callable[[grpc.aio.Channel, float], Awaitable[T]], *,
                        what: str, timeout: float = CALL_TIMEOUT) -> T:
    """``call(channel, rpc_timeout)`` on the managers at ``addrs`` (mutual-TLS ports) until one answers.

    A manager that names the leader in its trailers sends the next try there. Raises DaemonError
    ("unavailable") naming ``what`` and the last failure once ``timeout`` has passed.
    """
    deadline = time.monotonic() + timeout
    candidates = list(dict.fromkeys(a for a in addrs if a))
    last = "no manager address known"
    while candidates:
        addr = candidates[0]
        pause = RETRY_PAUSE
        try:
            async with grpc.aio.secure_channel(mtls_addr(addr), credentials, options=channel_options()) as channel:
                return await call(channel, max(1.0, min(CALL_TIMEOUT, deadline - time.monotonic())))
        except grpc.aio.AioRpcError as err:
            last = f"{addr}: {err.details() or err.code().name}"
            leader = dict(err.trailing_metadata() or ()).get(LEADER_ADDR_KEY)
            if leader and leader != addr:
                candidates = [leader] + [c for c in candidates if c != leader]
                pause = 0.05
            else:
                candidates = candidates[1:] + candidates[:1]
        if time.monotonic() + pause >= deadline:
            break
        await asyncio.sleep(pause)
    raise DaemonError("unavailable", f"{what}: {last}")


def node_credentials(daemon: Daemon) -> grpc.ChannelCredentials:
    cert, key, ca = daemon.state.load_certificates()
    return channel_credentials(ca, cert, key)


async def init(daemon: Daemon, request: control_pb2.SwarmInitRequest) -> control_pb2.SwarmInitResponse:
    if daemon.node is not None:
        raise DaemonError("precondition", "this node is already part of a swarm; "
                                          "use \"shoal swarm leave\" to leave it first")
    listen_host, listen_port, advertise_host = listen_and_advertise(request.listen_addr, request.advertise_addr)
    if request.dispatcher_heartbeat < 0:
        raise DaemonError("invalid", "invalid dispatcher heartbeat: must be positive")
    ticks_problem = raft_timings.check_ticks(request.election_tick, request.heartbeat_tick)
    if ticks_problem:
        raise DaemonError("invalid", f"invalid raft settings: {ticks_problem}")
    try:
        validity = node_cert_validity(request.node_cert_expiry)
    except CAError as err:
        raise DaemonError("invalid", str(err)) from None
    now = datetime.now(timezone.utc)
    cluster_id, node_id = new_id(), new_id()
    root = RootCA.create(cluster_id, now)
    key, csr = make_node_key_and_csr()
    cert = root.sign_node_csr(csr, node_id, MANAGER_OU, now, ip_sans=[advertise_host], validity=validity)
    tokens = JoinTokens.create(root.digest)
    password = secrets.token_hex(32).encode()
    node = NodeState(node_id=node_id, role="manager", cluster_id=cluster_id,
                     advertise_addr=advertise_host, listen_addr=f"{listen_host}:{listen_port}")
    node.managers = [node.grpc_addr]

    secrets_key = new_secrets_key()  # never in the store (manager.secretbox); seals the CA key and more in it
    unlock_key = new_unlock_key() if request.autolock else None
    cluster = objects_pb2.Cluster(id=cluster_id)
    cluster.spec.annotations.name = "default"
    cluster.spec.dispatcher.heartbeat_period = request.dispatcher_heartbeat or 5.0
    cluster.spec.orchestration.task_history_retention_limit = 5
    pools, subnet_size = list(request.default_addr_pool), request.subnet_size or 24
    if not pools and daemon.default_address_pools:    # daemon.json's default-address-pools
        pools = [pool["base"] for pool in daemon.default_address_pools]
        subnet_size = daemon.default_address_pools[0]["size"]
    cluster.spec.default_addr_pool.extend(pools or ["10.0.0.0/8"])
    cluster.spec.subnet_size = subnet_size
    cluster.spec.ca_config.node_cert_expiry = request.node_cert_expiry
    cluster.spec.raft.election_tick = request.election_tick or raft_timings.DEFAULT_ELECTION_TICK
    cluster.spec.raft.heartbeat_tick = request.heartbeat_tick or raft_timings.DEFAULT_HEARTBEAT_TICK
    cluster.root_ca.ca_cert = root.cert_pem
    assert root.key_pem is not None  # a CA created here holds its key
    cluster.root_ca.ca_key = seal_value(secrets_key, CA_KEY_LABEL, root.key_pem)
    cluster.root_ca.ca_digest = root.digest
    cluster.root_ca.join_tokens.worker = tokens.worker
    cluster.root_ca.join_tokens.manager = tokens.manager
    cluster.raft_password = seal_value(secrets_key, RAFT_PASSWORD_LABEL, password)
    if unlock_key is not None:
        cluster.spec.encryption_config.auto_lock_managers = True
        cluster.unlock_key = seal_value(secrets_key, UNLOCK_KEY_LABEL, unlock_key)
    me = objects_pb2.Node(id=node_id, role=objects_pb2.MANAGER,
                          description=node_description(daemon.hostname, node.grpc_addr))
    me.spec.desired_role = objects_pb2.MANAGER
    me.spec.annotations.labels.update(request.labels)
    me.status.state = objects_pb2.NodeStatus.READY
    me.status.addr = advertise_host
    me.manager_status.addr = node.grpc_addr
    me.manager_status.raft_addr = node.raft_addr

    def bootstrap(tx: Any) -> None:
        tx.create(cluster)
        tx.create(me)

    if unlock_key is not None:
        daemon.state.set_unlock_key(unlock_key)      # the key files below are written encrypted
    daemon.state.save_certificates(cert + root.cert_pem, key, root.cert_pem)
    daemon.state.save_raft_password(password)
    daemon.state.save_secrets_key(secrets_key)
    daemon.state.save(node)
    try:
        await daemon.start_node(node, bootstrap=bootstrap)
    except BaseException:
        daemon.node = None
        daemon.state.wipe()
        raise
    log.info("swarm initialized: cluster %s, this node %s is a manager", cluster_id, node_id)
    return control_pb2.SwarmInitResponse(node_id=node_id, worker_token=tokens.worker, manager_token=tokens.manager,
                                         unlock_key=format_unlock_key(unlock_key) if unlock_key else "")


async def join(daemon: Daemon, request: control_pb2.SwarmJoinRequest) -> control_pb2.SwarmJoinResponse:
    if daemon.node is not None:
        raise DaemonError("precondition", "this node is already part of a swarm; "
                                          "use \"shoal swarm leave\" to leave it first")
    remote_host, remote_port = parse_addr(request.remote_addr, DEFAULT_PORT, "remote address")
    remote = f"{remote_host}:{remote_port}"
    try:
        token = parse_join_token(request.join_token)
    except InvalidJoinToken as err:
        raise DaemonError("invalid", str(err)) from err
    listen_host, listen_port, advertise_host = listen_and_advertise(request.listen_addr, request.advertise_addr,
                                                                    toward=remote_host)
    availability = AVAILABILITY.get(request.availability.lower())
    if availability is None:
        raise DaemonError("invalid", f"invalid availability {request.availability!r}: "
                                     "expected active, pause or drain")
    try:
        root_pem = await asyncio.to_thread(fetch_root_ca, remote, token.ca_digest_hex, 5.0)
    except (CAError, OSError) as err:
        raise DaemonError("unavailable", f"join {remote}: {err}") from err
    key, csr = make_node_key_and_csr()
    try:
        async with grpc.aio.secure_channel(remote, channel_credentials(root_pem), options=channel_options()) as channel:
            response = await cluster_pb2_grpc.NodeCAStub(channel).IssueNodeCertificate(
                cluster_pb2.IssueNodeCertificateRequest(
                    csr=csr, token=request.join_token, hostname=daemon.hostname,
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
    daemon.state.save_certificates(response.certificate, key, response.root_ca)
    if node.role == "manager":
        daemon.state.save_raft_password(response.raft_password)
        daemon.state.save_secrets_key(response.secrets_key)
    daemon.state.save(node)
    try:
        await daemon.start_node(node)
        if node.role == "manager":
            await join_raft(daemon, node)
        assert daemon.agent is not None
        await asyncio.wait_for(daemon.agent.connected.wait(), JOIN_TIMEOUT)
    except BaseException as err:
        await daemon.stop_node()
        daemon.node = None
        daemon.state.wipe()
        if isinstance(err, (asyncio.TimeoutError, grpc.aio.AioRpcError, StoreError)):
            raise DaemonError("unavailable", f"join {remote}: timed out waiting to join: {err}") from err
        raise
    log.info("joined swarm %s as %s %s", node.cluster_id, node.role, node.node_id)
    return control_pb2.SwarmJoinResponse(node_id=node.node_id, role=response.role)


async def join_raft(daemon: Daemon, node: NodeState) -> None:
    """Ask the leader to add this manager's Raft endpoint, then wait until the local node is in."""
    deadline = time.monotonic() + JOIN_TIMEOUT

    async def add(channel: grpc.aio.Channel, timeout: float) -> None:
        await cluster_pb2_grpc.RaftMembershipStub(channel).Join(
            cluster_pb2.RaftJoinRequest(raft_addr=node.raft_addr), timeout=timeout)

    await call_managers(node.managers, node_credentials(daemon), add,
                        what="could not join the raft cluster", timeout=JOIN_TIMEOUT)
    assert daemon.raft is not None
    await daemon.raft.wait_ready(timeout=max(1.0, deadline - time.monotonic()))


async def leave(daemon: Daemon, request: control_pb2.SwarmLeaveRequest) -> control_pb2.SwarmLeaveResponse:
    node = daemon.node
    if node is None:
        raise DaemonError("precondition", "this node is not part of a swarm")
    manager = daemon.manager
    if node.role == "manager" and not request.force:
        total = len(manager.raft_members()) if manager else 1
        raise DaemonError(
            "precondition",
            f"you are attempting to leave the swarm on a node that is participating as a manager; "
            f"removing it leaves {total - 1} managers out of {total}. Demote it first "
            "(shoal node demote), or use --force to ignore this message")
    if node.role == "manager" and manager is not None and len(manager.raft_members()) > 1:
        await _leave_raft(daemon, node)
    await daemon.stop_node()
    daemon.node = None
    daemon.state.wipe()
    log.info("left the swarm")
    return control_pb2.SwarmLeaveResponse()


async def _leave_raft(daemon: Daemon, node: NodeState) -> None:
    """Hand leadership over if we hold it, then ask the others to drop us (best effort: logged)."""
    if daemon.raft is not None and daemon.raft.is_leader():
        try:
            await daemon.raft.transfer_leadership()
        except StoreError as err:
            log.warning("leave: could not hand leadership over: %s", err)
    leader = daemon.manager.leader_addr() if daemon.manager else None
    others = [a for a in [leader or ""] + node.managers if a and a != node.grpc_addr]

    async def remove(channel: grpc.aio.Channel, timeout: float) -> None:
        await cluster_pb2_grpc.RaftMembershipStub(channel).Leave(
            cluster_pb2.RaftLeaveRequest(node_id=node.node_id), timeout=timeout)

    try:
        await call_managers(others, node_credentials(daemon), remove, what="raft leave")
    except DaemonError as err:
        log.warning("%s", err)
